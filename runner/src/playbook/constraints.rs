//! What an input's value may be, beyond its type: a pattern, a named format, a
//! length, one line, a range, and where a URL or an image may point.
//!
//! Why: inputs come from people in a hurry, environment files and soon alerts and
//! API callers, and they end up in queries, URLs, object names and chat. A value
//! that is data for one plugin can be syntax for another (`"` in a PromQL label,
//! `@` before a host, a newline in a mail subject), so the playbook says what a
//! value *is* and everything else is refused before the run starts — the same
//! rules for `-i`, environment files and defaults.
//!
//! Every check here is a pure function of the declaration and the value; the
//! semantic checks use it for defaults (so a playbook cannot ship a default its
//! own rules refuse) and the plan for given values.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use super::model::{Input, InputFormat};

/// Why a value breaks its input's rules, said so that the person who typed it
/// knows what to type instead.
pub fn check(input: &Input, value: &Value) -> Result<(), String> {
    if let Some(n) = value.as_f64().filter(|_| value.is_number()) {
        if let Some(min) = input.minimum
            && n < min
        {
            return Err(format!("{n} is below the minimum {min}"));
        }
        if let Some(max) = input.maximum
            && n > max
        {
            return Err(format!("{n} is above the maximum {max}"));
        }
        return Ok(());
    }
    let Some(text) = value.as_str() else {
        return Ok(());
    };
    text_rules(input, text)?;
    // An input whose default is `""` uses the empty text for "not given"
    // (`if: inputs.email_to != ''`); that value is the playbook's own.
    if text.is_empty() && input.default.as_ref().and_then(Value::as_str) == Some("") {
        return Ok(());
    }
    if let Some(pattern) = &input.pattern {
        let re = anchored(pattern).map_err(|e| format!("its pattern does not compile: {e}"))?;
        if !re.is_match(text) {
            return Err(format!(
                "{} does not match the pattern `{pattern}`",
                quoted(text)
            ));
        }
    }
    if let Some(format) = input.format {
        format_rules(format, text)
            .map_err(|why| format!("{} is not {}: {why}", quoted(text), format.describe()))?;
        allowlists(input, format, text)?;
    }
    Ok(())
}

/// `pattern` as the whole value must match it.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(1 << 20)
        .build()
}

/// The length and the characters every string input obeys.
fn text_rules(input: &Input, text: &str) -> Result<(), String> {
    if let Some(max) = input.max_length {
        let n = text.chars().count();
        if n > max as usize {
            return Err(format!(
                "it is {n} characters long; at most {max} are allowed"
            ));
        }
    }
    let single_line = input.single_line.unwrap_or(true);
    for c in text.chars() {
        let bad = match c {
            '\n' => single_line,
            '\t' => false,
            c if c.is_control() => true,
            // Bidirectional overrides and isolates make text read differently
            // from what it is (a branch or a name that looks like another).
            '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
            _ => false,
        };
        if bad {
            return Err(if c == '\n' {
                "it has a line break; this input is one line (declare `single_line: false` to allow several)".to_owned()
            } else {
                format!("it contains the control character U+{:04X}", c as u32)
            });
        }
    }
    Ok(())
}

fn quoted(text: &str) -> String {
    const SHOWN: usize = 80;
    let cut: String = text.chars().take(SHOWN).collect();
    let more = if text.chars().count() > SHOWN {
        "…"
    } else {
        ""
    };
    let shown: String = cut
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    format!("`{shown}{more}`")
}

fn format_rules(format: InputFormat, text: &str) -> Result<(), String> {
    match format {
        InputFormat::DnsLabel => dns_label(text),
        InputFormat::DnsSubdomain => dns_subdomain(text),
        InputFormat::ImageRef => image_ref(text).map(|_| ()),
        InputFormat::Url => url(text).map(|_| ()),
        InputFormat::UrlPath => url_path(text),
        InputFormat::GitRef => git_ref(text),
        InputFormat::Email => email(text),
    }
}

/// RFC 1123 label, as Kubernetes names namespaces and services.
fn dns_label(text: &str) -> Result<(), String> {
    static LABEL: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").expect("valid"));
    if text.len() > 63 {
        return Err("longer than 63 characters".into());
    }
    if !LABEL.is_match(text) {
        return Err(
            "use lower-case letters, digits and `-`, starting and ending with a letter or digit"
                .into(),
        );
    }
    Ok(())
}

/// RFC 1123 subdomain: labels joined by dots, as Kubernetes names most objects.
fn dns_subdomain(text: &str) -> Result<(), String> {
    if text.len() > 253 {
        return Err("longer than 253 characters".into());
    }
    for label in text.split('.') {
        dns_label(label).map_err(|e| format!("the part `{label}`: {e}"))?;
    }
    Ok(())
}

/// An OCI image reference split at its parts.
struct Image<'a> {
    /// `registry/path`, without tag or digest.
    repository: &'a str,
}

/// The OCI distribution reference grammar: `[host[:port]/]path[:tag][@digest]`.
fn image_ref(text: &str) -> Result<Image<'_>, String> {
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        let component = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*";
        let host = r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?";
        let tag = r"[\w][\w.-]{0,127}";
        let digest = r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[0-9a-fA-F]{32,}";
        Regex::new(&format!(
            r"^(?P<repo>(?:{host}/)?{component}(?:/{component})*)(?::{tag})?(?:@{digest})?$"
        ))
        .expect("valid")
    });
    if text.len() > 255 {
        return Err("longer than 255 characters".into());
    }
    let caps = REFERENCE
        .captures(text)
        .ok_or("expected `[registry/]name[:tag][@sha256:…]`, with a lower-case name")?;
    let repository = caps.name("repo").map_or("", |m| m.as_str());
    Ok(Image { repository })
}

/// An absolute `http`/`https` URL without user information.
fn url(text: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(text).map_err(|e| e.to_string())?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("the scheme `{}` is not http or https", u.scheme()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err("user information (`user@`) is not allowed in a URL; use a secret".into());
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("it has no host".into());
    }
    Ok(u)
}

/// The path (and query) part of a URL, to be joined to a base URL: it can never
/// name another host.
fn url_path(text: &str) -> Result<(), String> {
    static PATH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^/(?:[A-Za-z0-9._~!$&'()*+,;=:@/-]|%[0-9A-Fa-f]{2})*(?:\?(?:[A-Za-z0-9._~!$&'()*+,;=:@/?-]|%[0-9A-Fa-f]{2})*)?$")
            .expect("valid")
    });
    if !text.starts_with('/') {
        return Err("it must start with `/`".into());
    }
    if text.starts_with("//") {
        return Err("`//` at the start names a host".into());
    }
    if !PATH.is_match(text) {
        return Err("only URL path characters (and `%XX` escapes) are allowed".into());
    }
    let path = text.split('?').next().unwrap_or("");
    if path
        .split('/')
        .any(|s| s == ".." || s == "." || s.eq_ignore_ascii_case("%2e%2e"))
    {
        return Err("`.` and `..` segments are not allowed".into());
    }
    Ok(())
}

/// A branch or tag name as `git check-ref-format --allow-onelevel` accepts it, and
/// never an option (`-…`).
fn git_ref(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.starts_with('-') {
        return Err("it starts with `-`".into());
    }
    if text == "@" || text.contains("@{") || text.contains("..") || text.contains("//") {
        return Err("`@`, `@{`, `..` and `//` are not allowed".into());
    }
    if text.ends_with('/') || text.ends_with('.') || text.starts_with('/') {
        return Err("it starts or ends with `/`, or ends with `.`".into());
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || "~^:?*[\\".contains(*c))
    {
        return Err(format!("`{}` is not allowed", c.escape_debug()));
    }
    for part in text.split('/') {
        if part.starts_with('.') || part.ends_with(".lock") {
            return Err(format!(
                "the part `{part}` starts with `.` or ends with `.lock`"
            ));
        }
    }
    Ok(())
}

/// `local@domain`, with the characters RFC 5322 allows unquoted in the local part.
fn email(text: &str) -> Result<(), String> {
    static LOCAL: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
            .expect("valid")
    });
    let (local, domain) = text.rsplit_once('@').ok_or("expected `name@domain`")?;
    if local.len() > 64 || !LOCAL.is_match(local) {
        return Err("the part before `@` has characters a plain address does not".into());
    }
    if !domain.contains('.') {
        return Err("the domain has no `.`".into());
    }
    dns_subdomain(&domain.to_ascii_lowercase()).map_err(|e| format!("the domain: {e}"))
}

/// The playbook's `allow:` and the environment file's: a value must satisfy each
/// list that is given.
fn allowlists(input: &Input, format: InputFormat, text: &str) -> Result<(), String> {
    for (list, from) in [
        (input.allow.as_deref(), "the input's `allow`"),
        (
            input.allow_here.as_deref(),
            "the environment file's `allow`",
        ),
    ] {
        let Some(list) = list else { continue };
        if !allowed(format, text, list) {
            return Err(format!(
                "{} is not allowed by {from}: {}",
                quoted(text),
                list.join(", ")
            ));
        }
    }
    Ok(())
}

fn allowed(format: InputFormat, text: &str, list: &[String]) -> bool {
    match format {
        InputFormat::Url => url(text).is_ok_and(|u| {
            let origin = u.origin().ascii_serialization();
            list.iter().any(|a| {
                url::Url::parse(a).is_ok_and(|a| a.origin().ascii_serialization() == origin)
            })
        }),
        InputFormat::ImageRef => image_ref(text).is_ok_and(|image| {
            list.iter().any(|prefix| {
                let prefix = prefix.trim_end_matches('/');
                image.repository == prefix
                    || image
                        .repository
                        .strip_prefix(prefix)
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        }),
        _ => list.iter().any(|a| a == text),
    }
}

/// Why an `allow:` entry cannot be used with `format`, for the semantic checks.
pub fn allow_entry_problem(format: Option<InputFormat>, entry: &str) -> Option<String> {
    match format {
        Some(InputFormat::Url) => match url(entry) {
            Err(e) => Some(format!("`{entry}` is not an origin: {e}")),
            Ok(u) if u.path() != "/" || u.query().is_some() => Some(format!(
                "`{entry}` is not an origin; write only scheme://host[:port]"
            )),
            Ok(_) => None,
        },
        Some(InputFormat::ImageRef) => image_ref(entry)
            .err()
            .map(|e| format!("`{entry}` is not a repository: {e}")),
        Some(_) => None,
        None => Some("`allow` needs `format: url` or `format: image-ref`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::model::InputType;

    fn input(yaml: serde_json::Value) -> Input {
        let mut v = yaml;
        if v.get("type").is_none() {
            v["type"] = "string".into();
        }
        serde_json::from_value(v).unwrap()
    }

    fn ok(i: &Input, text: &str) -> bool {
        check(i, &Value::from(text)).is_ok()
    }

    #[test]
    fn strings_are_one_line_without_control_characters_unless_declared() {
        let plain = input(serde_json::json!({}));
        assert!(ok(&plain, "checkout fails\twith 502"));
        assert!(!ok(&plain, "fix\nBcc: all@example.com"));
        assert!(!ok(&plain, "a\rb"));
        assert!(!ok(&plain, "x\u{1b}[2J"));
        assert!(!ok(&plain, "main\u{202e}gnp.exe"));
        let multi = input(serde_json::json!({ "single_line": false }));
        assert!(ok(&multi, "line one\nline two"));
        assert!(!ok(&multi, "a\rb"));
    }

    #[test]
    fn patterns_are_anchored_and_lengths_counted_in_characters() {
        let i = input(serde_json::json!({ "pattern": "[A-Z]+-[0-9]+", "max_length": 8 }));
        assert!(ok(&i, "INC-42"));
        assert!(!ok(&i, "xINC-42"));
        assert!(!ok(&i, "INC-42\"}"));
        assert!(!ok(&i, "INC-4242424"));
        let e = check(&i, &Value::from("inc-1")).unwrap_err();
        assert!(e.contains("pattern `[A-Z]+-[0-9]+`"), "{e}");
    }

    #[test]
    fn numbers_stay_in_their_range() {
        let mut i = input(serde_json::json!({ "minimum": 0, "maximum": 1 }));
        i.kind = InputType::Number;
        assert!(check(&i, &serde_json::json!(0.05)).is_ok());
        let e = check(&i, &serde_json::json!(1e9)).unwrap_err();
        assert!(e.contains("above the maximum 1"), "{e}");
        assert!(check(&i, &serde_json::json!(-1)).is_err());
    }

    #[test]
    fn the_empty_text_passes_only_when_it_is_the_default() {
        let optional = input(serde_json::json!({ "format": "email", "default": "" }));
        assert!(ok(&optional, ""));
        let required = input(serde_json::json!({ "format": "email", "required": true }));
        assert!(!ok(&required, ""));
    }

    #[test]
    fn dns_names_are_kubernetes_names() {
        let label = input(serde_json::json!({ "format": "dns-label" }));
        assert!(ok(&label, "shop"));
        assert!(ok(&label, "shop-2"));
        for bad in [
            "Shop",
            "shop.",
            "-shop",
            "production\",track!=\"canary",
            "",
            &"a".repeat(64),
        ] {
            assert!(!ok(&label, bad), "{bad}");
        }
        let sub = input(serde_json::json!({ "format": "dns-subdomain" }));
        assert!(ok(&sub, "shop.v2"));
        assert!(!ok(&sub, "shop..v2"));
    }

    #[test]
    fn image_references_follow_the_oci_grammar_and_the_allowlists() {
        let any = input(serde_json::json!({ "format": "image-ref" }));
        for good in [
            "demo/shop:1.4.3",
            "registry.example.com:5000/team/shop:v1.4.3",
            "shop@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "localhost/shop",
        ] {
            assert!(ok(&any, good), "{good}");
        }
        for bad in [
            "Shop:1",
            "shop:-x",
            "shop:1 --privileged",
            "shop;rm",
            "/shop",
            "shop:",
        ] {
            assert!(!ok(&any, bad), "{bad}");
        }
        let mut i = input(
            serde_json::json!({ "format": "image-ref", "allow": ["registry.example.com/shop"] }),
        );
        assert!(ok(&i, "registry.example.com/shop:1.4.3"));
        assert!(ok(&i, "registry.example.com/shop/api:1"));
        assert!(!ok(&i, "registry.example.com/shopper:1"));
        assert!(!ok(&i, "evil.example/miner:v1.4.3"));
        i.allow_here = Some(vec!["registry.example.com/shop/api".into()]);
        assert!(!ok(&i, "registry.example.com/shop:1.4.3"));
        assert!(ok(&i, "registry.example.com/shop/api:1"));
    }

    #[test]
    fn urls_have_a_host_no_user_and_an_allowed_origin() {
        let i =
            input(serde_json::json!({ "format": "url", "allow": ["https://shop.example.com"] }));
        assert!(ok(&i, "https://shop.example.com/health"));
        assert!(!ok(&i, "https://shop.example.com:8443/"));
        assert!(!ok(&i, "https://shop.example.com@127.0.0.1/"));
        assert!(!ok(&i, "https://user:pw@shop.example.com/"));
        assert!(!ok(&i, "file:///etc/passwd"));
        assert!(!ok(&i, "http://shop.example.com/"));
        let any = input(serde_json::json!({ "format": "url" }));
        assert!(ok(&any, "http://127.0.0.1:8080"));
        assert!(!ok(&any, "gopher://x"));
    }

    #[test]
    fn url_paths_never_name_a_host() {
        let i = input(serde_json::json!({ "format": "url-path" }));
        assert!(ok(&i, "/health"));
        assert!(ok(&i, "/api/v1/status?verbose=1"));
        for bad in [
            "@127.0.0.1:9/health",
            "//evil.example/x",
            "/a\\b",
            "health",
            "/../admin",
            "/a/%zz",
            "/a b",
        ] {
            assert!(!ok(&i, bad), "{bad}");
        }
    }

    #[test]
    fn git_refs_are_branch_names_and_never_options() {
        let i = input(serde_json::json!({ "format": "git-ref" }));
        assert!(ok(&i, "v1.4.2"));
        assert!(ok(&i, "hotfix/INC-1"));
        for bad in [
            "--upload-pack=touch",
            "a..b",
            "a b",
            "a:b",
            "a/",
            ".hidden",
            "x.lock",
            "@",
            "a@{1}",
            "a~1",
        ] {
            assert!(!ok(&i, bad), "{bad}");
        }
    }

    #[test]
    fn emails_are_plain_addresses() {
        let i = input(serde_json::json!({ "format": "email" }));
        assert!(ok(&i, "oncall+shop@example.com"));
        for bad in [
            "oncall",
            "a@b",
            "a b@example.com",
            "a@example.com>\r\nRCPT TO:<x@y.z",
        ] {
            assert!(!ok(&i, bad), "{bad}");
        }
    }
}
