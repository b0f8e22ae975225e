//! Checks of every value that comes from the playbook before git sees it.
//!
//! Each check is stricter than git itself: a value that passes can only be read by
//! git as the kind of value it is (a ref, a revision, a path, a remote name, a
//! URL), never as an option. In particular nothing that passes starts with `-`,
//! and nothing contains a control character (so no value can smuggle a second line
//! into a message or a config value).

/// Longest ref name, revision, remote or path segment accepted.
const MAX_NAME: usize = 200;
/// Longest path accepted (`repo`, `paths`).
const MAX_PATH: usize = 4096;
/// Longest commit or tag message accepted (well below the kernel's argument limit).
pub const MAX_MESSAGE: usize = 64 * 1024;

fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// A branch or tag name as `git check-ref-format --branch` would accept it, and
/// stricter: no leading `-`, no `@{`, no control characters or spaces, no
/// `~ ^ : ? * [ \`, no `..`, no empty, `.`-led or `.lock`-ended component, no
/// leading, trailing or doubled `/`, no trailing `.`.
pub fn ref_name(what: &str, name: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "{what} `{}` is not a valid ref name: {why}",
            shown(name)
        ))
    };
    if name.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    if name.len() > MAX_NAME {
        return bad("too long");
    }
    if name.starts_with('-') {
        return bad("it starts with `-`, so git would read it as an option");
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return bad(&format!("it contains {}", describe_char(c)));
    }
    if name.contains("..") {
        return bad("it contains `..`");
    }
    if name.contains("@{") || name == "@" {
        return bad("it contains `@{` or is `@`");
    }
    if name.ends_with('.') {
        return bad("it ends with `.`");
    }
    for part in name.split('/') {
        if part.is_empty() {
            return bad("it has an empty path component (leading, trailing or doubled `/`)");
        }
        if part.starts_with('.') {
            return bad("a component starts with `.`");
        }
        if part.ends_with(".lock") {
            return bad("a component ends with `.lock`");
        }
    }
    Ok(())
}

/// A revision: a ref name (as [`ref_name`]) or an object name in hex, optionally
/// followed by `~N` / `^N` steps (`HEAD~2`, `v1.2.3^`). No ranges, no `@{...}`,
/// no `:path`, no `^{...}`.
pub fn revision(what: &str, rev: &str) -> Result<(), String> {
    let (base, steps) = rev.split_at(rev.find(['~', '^']).unwrap_or(rev.len()));
    if !steps
        .chars()
        .all(|c| c == '~' || c == '^' || c.is_ascii_digit())
    {
        return Err(format!(
            "{what} `{}` is not a revision: only `~N` and `^N` may follow the name",
            shown(rev)
        ));
    }
    if base.is_empty() {
        return Err(format!("{what} `{}` is not a revision", shown(rev)));
    }
    ref_name(what, base)?;
    if steps.len() > 32 {
        return Err(format!(
            "{what} `{}` has too many `~`/`^` steps",
            shown(rev)
        ));
    }
    Ok(())
}

/// A remote's name: `origin`, `upstream`, `fork-2`.
pub fn remote_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "remote `{}` is not a remote name (letters, digits, `.`, `_`, `-`, starting with a letter or digit)",
            shown(name)
        ))
    }
}

/// A path inside the working copy, for `git add` and `git log`: relative, no
/// `..` component, no leading `-`, no control characters.
pub fn repo_path(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("path `{}` {why}", shown(path)));
    if path.is_empty() {
        return Err("a path must not be empty".to_owned());
    }
    if path.len() > MAX_PATH {
        return bad("is too long");
    }
    if has_control(path) {
        return bad("contains a control character");
    }
    if path.starts_with('-') {
        return bad("starts with `-`");
    }
    if path.starts_with('/') {
        return bad("is absolute; give it relative to the repository");
    }
    if path.split('/').any(|p| p == "..") {
        return bad("contains `..`");
    }
    Ok(())
}

/// The working copy's location: absolute (inside a granted `fs` folder) or
/// relative. No `..` component, no leading `-`, no control characters. Returns it
/// without `.` components, doubled or trailing `/`.
pub fn location(path: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("`repo` `{}` {why}", shown(path)));
    if path.is_empty() {
        return Err("`repo` must not be empty".to_owned());
    }
    if path.len() > MAX_PATH {
        return bad("is too long");
    }
    if has_control(path) {
        return bad("contains a control character");
    }
    if path.starts_with('-') {
        return bad("starts with `-`");
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return bad("contains `..`; give a path inside a granted folder");
    }
    let joined = parts.join("/");
    Ok(match (path.starts_with('/'), joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    })
}

/// What a clone URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Url {
    /// `https://host/...`
    Https,
    /// A path on this machine (`/srv/git/app.git` or `file:///srv/git/app.git`).
    Local(String),
}

/// A remote URL: `https://` without credentials, `file:///abs/path` or an
/// absolute path. ssh, plain http, `git://` and transport helpers (`ext::`) are
/// refused.
pub fn url(url: &str) -> Result<Url, String> {
    let bad = |why: &str| Err(format!("remote URL `{}` {why}", shown(url)));
    if url.is_empty() {
        return Err("the remote URL must not be empty".to_owned());
    }
    if url.len() > 2048 {
        return bad("is too long");
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return bad("contains a space or a control character");
    }
    if url.starts_with('-') {
        return bad("starts with `-`");
    }
    if url.contains("::") {
        return bad("uses a transport helper (`helper::address`), which is refused");
    }
    if let Some(rest) = url.strip_prefix("https://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return bad(
                "carries credentials; they would be stored in .git/config and shown in logs",
            );
        }
        if authority.is_empty() {
            return bad("has no host");
        }
        return Ok(Url::Https);
    }
    let local = url.strip_prefix("file://").unwrap_or(url);
    if local.starts_with('/') {
        let path = location(local).map_err(|e| e.replace("`repo`", "remote path"))?;
        return Ok(Url::Local(path));
    }
    if url.starts_with("http://") {
        return bad("is plain http; use https");
    }
    if url.starts_with("ssh://") || url.starts_with("git://") || url.contains(':') {
        return bad("uses a protocol this plugin refuses (only https and local paths)");
    }
    bad("is not https://..., file:///... or an absolute path")
}

/// A person's name for commits and tags: no control characters, no `<` or `>`.
pub fn person(name: &str) -> Result<(), String> {
    if name.trim().is_empty() || name.len() > 200 || has_control(name) || name.contains(['<', '>'])
    {
        return Err(format!(
            "`author_name` `{}` must be a non-empty line without `<` or `>`",
            shown(name)
        ));
    }
    Ok(())
}

/// An e-mail address for commits and tags: no spaces, control characters, `<`, `>`.
pub fn email(email: &str) -> Result<(), String> {
    if email.is_empty()
        || email.len() > 254
        || email
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>')
    {
        return Err(format!(
            "`author_email` `{}` must be an address without spaces, `<` or `>`",
            shown(email)
        ));
    }
    Ok(())
}

/// A commit or tag message: not blank, no NUL (which an argument cannot carry),
/// at most [`MAX_MESSAGE`] bytes.
pub fn message(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("`message` must not be empty".to_owned());
    }
    if text.contains('\0') {
        return Err("`message` contains a NUL character".to_owned());
    }
    if text.len() > MAX_MESSAGE {
        return Err(format!("`message` is longer than {MAX_MESSAGE} bytes"));
    }
    Ok(())
}

/// A date for `git log --since`: `24 hours ago`, `2024-05-01`, `2024-05-01T10:00:00Z`.
pub fn date(text: &str) -> Result<(), String> {
    let ok = !text.trim().is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " :.,+-/_".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`since` `{}` is not a date git understands (e.g. `24 hours ago`, `2024-05-01`, `2024-05-01T10:00:00Z`)",
            shown(text)
        ))
    }
}

/// A value quoted in an error: control characters escaped, cut at 80 characters.
pub fn shown(text: &str) -> String {
    let mut out: String = text.chars().take(80).flat_map(char::escape_debug).collect();
    if text.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn describe_char(c: char) -> String {
    if c.is_control() || c.is_whitespace() {
        format!("the character {:?}", c)
    } else {
        format!("`{c}`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names() {
        for good in [
            "main",
            "hotfix/1.2.4",
            "v1.2.3",
            "release-2024.05",
            "HEAD",
            "a/b/c",
            "fix_ü",
        ] {
            assert_eq!(ref_name("branch", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "-c",
            "--upload-pack=touch /tmp/pwned",
            "a..b",
            "a b",
            "a\nb",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "@",
            "a@{1}",
            "/a",
            "a/",
            "a//b",
            "a.",
            ".a",
            "a/.b",
            "a.lock",
            "a/b.lock/c",
            "a\u{7f}",
        ] {
            assert!(ref_name("branch", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn revisions() {
        for good in [
            "HEAD",
            "HEAD~2",
            "v1.2.3^",
            "main~1^2",
            "0123abcd",
            "0123abcd~3",
            "origin/main",
            "v1.2.3",
        ] {
            assert_eq!(revision("from", good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "~1",
            "-p",
            "--output=/tmp/x",
            "a..b",
            "a...b",
            "HEAD@{1}",
            "HEAD:file",
            "v1^{tree}",
            "a b",
        ] {
            assert!(revision("from", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn remotes_paths_and_locations() {
        assert!(remote_name("origin").is_ok());
        assert!(remote_name("my-fork.2").is_ok());
        for bad in ["", "-x", "a/b", "a..b", "a b", ".x"] {
            assert!(remote_name(bad).is_err(), "{bad:?}");
        }
        assert!(repo_path("src/auth.js").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "-x", "a\nb"] {
            assert!(repo_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(location("/srv/work/app/").unwrap(), "/srv/work/app");
        assert_eq!(location("./workspace//app").unwrap(), "workspace/app");
        assert_eq!(location(".").unwrap(), ".");
        assert_eq!(location("/srv/./x").unwrap(), "/srv/x");
        for bad in ["", "/srv/../etc", "-C", "a\0b", "..", "a/../b"] {
            assert!(location(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(url("https://github.com/o/r.git"), Ok(Url::Https));
        assert_eq!(
            url("/srv/git/app.git"),
            Ok(Url::Local("/srv/git/app.git".into()))
        );
        assert_eq!(
            url("file:///srv/git/app.git/"),
            Ok(Url::Local("/srv/git/app.git".into()))
        );
        for bad in [
            "",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "--upload-pack=touch /tmp/pwned",
            "-u",
            "https://user:token@github.com/o/r",
            "https://",
            "http://example.com/r.git",
            "ssh://git@example.com/r.git",
            "git@example.com:o/r.git",
            "git://example.com/r.git",
            "relative/path",
            "/srv/../etc",
            "https://example.com/a b",
        ] {
            assert!(url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn identities_messages_dates() {
        assert!(person("Jane Doe").is_ok());
        assert!(person("Jane\nDoe").is_err());
        assert!(person("Jane <x@y>").is_err());
        assert!(person(" ").is_err());
        assert!(email("jane@example.com").is_ok());
        assert!(email("jane@example.com>\nx").is_err());
        assert!(message("fix: it\n\nbody").is_ok());
        assert!(message("  \n").is_err());
        assert!(message("a\0b").is_err());
        assert!(date("24 hours ago").is_ok());
        assert!(date("2024-05-01T10:00:00+09:00").is_ok());
        assert!(date("2 days ago; rm").is_err());
        assert!(date("").is_err());
    }
}
