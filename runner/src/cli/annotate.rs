//! GitHub Actions workflow commands: `::error file=F,line=L,col=C::message`
//! lines that GitHub turns into annotations on the playbook's lines in a pull
//! request.
//!
//! Why here: a CI user sees a mistake where it is, not in a log. `runner
//! validate --output github` prints one per problem and note; `runner exec`
//! inside GitHub Actions (`GITHUB_ACTIONS=true`) prints one for a playbook it
//! refuses and one at each step that made the run fail. Everything printed is
//! escaped as GitHub's toolkit does (`%`, CR and LF in the message; also `:`
//! and `,` in properties), so a message cannot end its command early or forge
//! another one.

use crate::playbook::{Problem, Source};

/// Whether this process runs as a GitHub Actions step.
pub fn in_github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").as_deref() == Ok("true")
}

/// How serious an annotation is.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Error,
    Notice,
}

/// One workflow command for a position of `file` (`None`: the whole file).
pub fn command(
    level: Level,
    file: &str,
    at: Option<(usize, usize)>,
    title: &str,
    message: &str,
) -> String {
    let name = match level {
        Level::Error => "error",
        Level::Notice => "notice",
    };
    let mut props = format!("file={}", property(file));
    if let Some((line, col)) = at {
        props.push_str(&format!(",line={},col={}", line.max(1), col.max(1)));
    }
    props.push_str(&format!(",title={}", property(title)));
    format!("::{name} {props}::{}", data(message))
}

/// One command per problem of `source`.
pub fn problems(level: Level, source: &Source, problems: &[Problem], title: &str) -> String {
    problems
        .iter()
        .map(|p| {
            let message = p.message.strip_prefix("note: ").unwrap_or(&p.message);
            command(
                level,
                &source.name,
                Some((p.pos.line, p.pos.col)),
                title,
                message,
            ) + "\n"
        })
        .collect()
}

fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_cannot_end_its_command_or_start_another() {
        let line = command(
            Level::Error,
            "play,books/a:b.yaml",
            Some((3, 7)),
            "runner validate",
            "bad\n::error::forged 100%",
        );
        assert_eq!(
            line,
            "::error file=play%2Cbooks/a%3Ab.yaml,line=3,col=7,title=runner validate::bad%0A::error::forged 100%25"
        );
        assert_eq!(line.lines().count(), 1);
        assert_eq!(
            command(Level::Notice, "a.yaml", None, "t", "m"),
            "::notice file=a.yaml,title=t::m"
        );
    }
}
