//! Who acts: the principal recorded with a run's start and with each approval
//! decision.
//!
//! Why: the record is evidence for a post-mortem, and "approved by unknown"
//! tells it nothing. A principal comes from, in this order: the server's
//! authentication (an API token of `runner serve`, an alert route, a Slack
//! user or a signed link the server maps to a principal; never the command line),
//! an explicit `--as NAME` or `RUNNER_USER`, `git config user.email`, the
//! operating system's user from the password database (not `$USER`, which
//! anyone can set to anything), and last the numeric user id, which always
//! exists. Each principal says where it came from, so the record shows how
//! much it can be trusted: a name given with `--as` is a claim, an OS user is
//! what the machine knows.

use std::fmt;

/// Where a principal's name came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `--as NAME`.
    Flag,
    /// `RUNNER_USER`.
    Environment,
    /// `git config user.email`.
    Git,
    /// The password database entry of the process's real user id.
    Os,
    /// Only the numeric user id: it has no entry in the password database.
    Uid,
    /// An API token of `runner serve` (its principal, authenticated).
    Token,
    /// An alert delivered to `runner serve` (the route's name).
    Alert,
    /// A Slack user mapped to a principal by the server's configuration.
    Slack,
    /// A signed approval link `runner serve` sent to that principal.
    Link,
    /// A session of the web UI, opened with that principal's API token.
    Web,
}

impl Source {
    /// As the record says it.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Flag => "--as",
            Source::Environment => "RUNNER_USER",
            Source::Git => "git user.email",
            Source::Os => "os user",
            Source::Uid => "uid without a user name",
            Source::Token => "api token",
            Source::Alert => "alert",
            Source::Slack => "slack",
            Source::Link => "approval link",
            Source::Web => "web session",
        }
    }
}

impl Source {
    /// The source a record names ([`Source::as_str`]).
    pub fn parse(text: &str) -> Option<Source> {
        [
            Source::Flag,
            Source::Environment,
            Source::Git,
            Source::Os,
            Source::Uid,
            Source::Token,
            Source::Alert,
            Source::Slack,
            Source::Link,
            Source::Web,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Someone the record names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub source: Source,
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.source.as_str())
    }
}

impl Principal {
    /// A principal named `name` (cut to one printable line) from `source`.
    pub fn named(name: &str, source: Source) -> Principal {
        Principal {
            name: clean(name),
            source,
        }
    }
}

/// `alice (os user)` for a recorded principal; `None` when none was recorded
/// (a run or decision of an older runner).
pub fn recorded(by: Option<&str>, source: Option<&str>) -> Option<String> {
    let by = by?;
    Some(match source {
        Some(s) => format!("{by} ({s})"),
        None => by.to_owned(),
    })
}

/// The longest name kept; the rest is cut (a name is a label, not a text).
const MAX_NAME: usize = 128;

/// The principal of this process: `flag` (`--as`), else `RUNNER_USER`, else
/// git's `user.email`, else the OS user, else the user id.
pub fn current(flag: Option<&str>) -> Principal {
    let named = |name: &str, source| {
        let name = clean(name);
        (!name.is_empty()).then_some(Principal { name, source })
    };
    if let Some(p) = flag.and_then(|n| named(n, Source::Flag)) {
        return p;
    }
    if let Some(p) = std::env::var("RUNNER_USER")
        .ok()
        .and_then(|n| named(&n, Source::Environment))
    {
        return p;
    }
    if let Some(p) = git_email().and_then(|n| named(&n, Source::Git)) {
        return p;
    }
    let uid = rustix::process::getuid();
    if let Some(p) = uzers::get_user_by_uid(uid.as_raw())
        .and_then(|u| named(&u.name().to_string_lossy(), Source::Os))
    {
        return p;
    }
    Principal {
        name: format!("uid {}", uid.as_raw()),
        source: Source::Uid,
    }
}

/// `git config user.email`, if git is there and it is set.
fn git_email() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["config", "--get", "user.email"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One line of printable text, at most [`MAX_NAME`] characters.
fn clean(name: &str) -> String {
    name.trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_line_of_printable_text() {
        assert_eq!(clean("  alice\n\u{1b}[31m "), "alice[31m");
        assert_eq!(clean(&"x".repeat(500)).len(), MAX_NAME);
        // Nothing printable is no name: the next source is asked.
        let p = current(Some("\n\t "));
        assert_ne!(p.source, Source::Flag);
        assert_eq!(current(Some("bob")).to_string(), "bob (--as)");
    }
}
