//! Turning problems into what the user reads: `FILE:LINE:COL: message`, then the
//! source line and a caret under the column.
//!
//! The first line is the form compilers use, so editors and CI logs make it a link.
//! The caret is placed by display width, so it stays under the right character in
//! lines with CJK text (the source workflows are in Korean and Japanese) or tabs.

use unicode_width::UnicodeWidthChar;

use crate::playbook::{Problem, Source};

/// Renders one problem of `source`.
pub fn render(source: &Source, problem: &Problem) -> String {
    let (line, col) = (problem.pos.line.max(1), problem.pos.col.max(1));
    // One line per problem, whatever the message quotes (a multi-line expression).
    let message = problem.message.replace("\r\n", "\n").replace('\n', " ");
    let mut out = format!("{}:{line}:{col}: {message}\n", source.name);
    if let Some(text) = source.line(line) {
        let number = line.to_string();
        let gutter = " ".repeat(number.len());
        let shown: String = text
            .chars()
            .map(|c| if c.is_control() && c != '\t' { ' ' } else { c })
            .collect();
        let mut pad = String::new();
        for c in shown.chars().take(col - 1) {
            if c == '\t' {
                pad.push('\t');
            } else {
                pad.push_str(&" ".repeat(c.width().unwrap_or(0)));
            }
        }
        out.push_str(&format!(" {number} | {shown}\n {gutter} | {pad}^\n"));
    }
    out
}

/// Renders every problem, in file order.
pub fn render_all(source: &Source, problems: &[Problem]) -> String {
    problems.iter().map(|p| render(source, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::yaml::Pos;

    fn source(text: &str) -> Source {
        Source {
            name: "p.yaml".into(),
            dir: ".".into(),
            text: text.into(),
        }
    }

    #[test]
    fn caret_under_the_column() {
        let s = source("a: 1\nbb: x\n");
        let p = Problem {
            pos: Pos { line: 2, col: 5 },
            message: "bad".into(),
        };
        assert_eq!(render(&s, &p), "p.yaml:2:5: bad\n 2 | bb: x\n   |     ^\n");
    }

    #[test]
    fn caret_accounts_for_wide_characters() {
        let s = source("설명: x\n");
        let p = Problem {
            pos: Pos { line: 1, col: 5 },
            message: "bad".into(),
        };
        assert_eq!(
            render(&s, &p),
            "p.yaml:1:5: bad\n 1 | 설명: x\n   |       ^\n"
        );
    }

    #[test]
    fn position_past_the_end_still_renders() {
        let s = source("a: 1");
        let p = Problem {
            pos: Pos { line: 9, col: 1 },
            message: "bad".into(),
        };
        assert_eq!(render(&s, &p), "p.yaml:9:1: bad\n");
    }
}
