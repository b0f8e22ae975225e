//! Text that would forge what a person reads (`forge-display`): terminal
//! escapes that clear the screen and retitle the window, NUL, a carriage
//! return, newlines followed by a markdown table row and a heading, HTML, bidi
//! overrides, a line separator. Checked in the step's result, then end to end
//! through the real binary: `runner exec --output text`, `runner runs show`
//! (text and markdown), the markdown report file, the JSON report and the JSON
//! Lines of `--output json`.

use super::*;
use std::process::Command;

/// The runner's characters that must never reach a terminal or a report.
fn hidden_in(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| c != '\n' && runner::host::text::hidden(c))
        .collect()
}

#[test]
fn a_forged_error_message_is_escaped_in_the_step_result() {
    let f = failure(run("forge-display", json!({ "how": "fail" })));
    let StepFailure::Failed(m) = &f else {
        panic!("{f:?}")
    };
    assert!(m.chars().all(|c| !runner::host::text::hidden(c)), "{m:?}");
    // Still there to read, escaped.
    for visible in [
        "boom\\u{1b}[2J\\u{1b}[H",
        "\\u{1b}]0;ALL GREEN\\u{7}",
        "nul\\0byte",
        "over\\rwrite",
        "\\n| forged | row |\\n",
        "\\n# ALL GREEN\\n",
        "<script>",
        "evil\\u{202e}txt.exe",
        "line\\u{2028}separator",
    ] {
        assert!(m.contains(visible), "{visible:?} not in {m:?}");
    }
}

#[test]
fn forged_output_keys_stay_data_and_the_summary_and_log_are_escaped() {
    let r = run("forge-display", json!({ "how": "keys" }));
    let s = r.outcome.expect("the step itself succeeds");
    // Outputs are data for later steps: their keys keep their characters
    // (they are escaped where they are shown, below).
    assert_eq!(s.outputs.len(), 10);
    assert!(s.outputs.contains_key("k4\n| forged | row |\n"));
    assert!(hidden_in(&s.summary).is_empty(), "{:?}", s.summary);
    assert!(s.summary.contains("\\n# ALL GREEN\\n"));
    for l in &r.log.lines {
        assert!(hidden_in(&l.message).is_empty(), "{:?}", l.message);
    }
}

/// A scratch folder with the plugin pinned as `./forge_display.wasm` by its
/// sha256 in a playbook of two stages: `keys` succeeds with the forged keys,
/// then `fail` fails with the forged error.
fn forged_playbook() -> (PathBuf, PathBuf) {
    use sha2::Digest;
    let dir = common::scratch("display");
    let wasm = wasm("forge-display");
    std::fs::write(dir.join("forge_display.wasm"), &wasm).unwrap();
    let sha = runner::host::cache::hex(&sha2::Sha256::digest(&wasm));
    let playbook = format!(
        "version: 1\nname: forged\nplugins:\n  p:\n    uses: ./forge_display.wasm\n    sha256: {sha}\nstages:\n  - id: one\n    steps:\n      - {{ id: keys, uses: p, with: {{ how: keys }} }}\n  - id: two\n    steps:\n      - {{ id: fail, uses: p, with: {{ how: fail }} }}\n"
    );
    let file = dir.join("forged.yaml");
    std::fs::write(&file, playbook).unwrap();
    (dir, file)
}

fn runner_cmd(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .env(
            "RUNNER_CACHE_DIR",
            std::env::temp_dir().join("runner-test-cache"),
        )
        .env("RUNNER_STATE_DIR", state)
        .env_remove("RUNNER_JOURNAL")
        .env_remove("GITHUB_STEP_SUMMARY")
        .args(args)
        .output()
        .unwrap()
}

/// Terminal output that carries plugin text: no control character but the
/// line feed (and the tab), no bidi control, no line that a plugin forged,
/// and the plugin's text still visible in escaped form.
fn assert_terminal_safe(what: &str, out: &str) {
    let bad = hidden_in(out);
    assert!(bad.is_empty(), "{what}: {bad:?} in\n{out}");
    assert!(
        out.bytes().all(|b| b >= 0x20 || b == b'\n' || b == b'\t'),
        "{what}: {out:?}"
    );
    for line in out.lines() {
        let t = line.trim_start();
        assert!(
            !t.starts_with("| forged") && !t.starts_with("# ALL GREEN"),
            "{what}: forged line {line:?}"
        );
    }
    assert!(out.contains("boom\\u{1b}[2J"), "{what}:\n{out}");
    assert!(out.contains("\\n# ALL GREEN\\n"), "{what}:\n{out}");
    assert!(out.contains("evil\\u{202e}txt.exe"), "{what}:\n{out}");
}

/// The tables and headings of a markdown report: (heading lines, rows per
/// table under each `##` section). A row's cells are counted by its unescaped
/// `|`; every row of a table must have as many as its header.
fn structure(md: &str) -> (Vec<String>, Vec<(String, usize)>) {
    fn cells(row: &str) -> usize {
        let (mut n, mut escaped) = (0, false);
        for c in row.chars() {
            if c == '|' && !escaped {
                n += 1;
            }
            escaped = c == '\\' && !escaped;
        }
        n
    }
    let mut headings = Vec::new();
    let mut tables = Vec::new();
    let mut section = String::new();
    let mut header: Option<usize> = None;
    for line in md.lines() {
        if line.starts_with('#') {
            headings.push(line.to_owned());
            section = line.to_owned();
        }
        if line.starts_with('|') {
            match header {
                None => {
                    header = Some(cells(line));
                    tables.push((section.clone(), 0));
                }
                Some(h) => {
                    assert_eq!(cells(line), h, "a row that does not fit its table: {line}");
                    if !line.starts_with("| ---")
                        && let Some(t) = tables.last_mut()
                    {
                        t.1 += 1;
                    }
                }
            }
        } else {
            header = None;
        }
    }
    (headings, tables)
}

/// Each `<` that markdown would read as HTML: outside code spans, not escaped
/// with a backslash, and not the report's own `<br>`.
fn raw_html(md: &str) -> Vec<String> {
    let chars: Vec<char> = md.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 2,
            '`' => {
                let n = chars[i..].iter().take_while(|&&c| c == '`').count();
                // The span ends at the next run of exactly n backticks.
                let mut j = i + n;
                let mut end = None;
                while j < chars.len() {
                    let m = chars[j..].iter().take_while(|&&c| c == '`').count();
                    if m == n {
                        end = Some(j + m);
                        break;
                    }
                    j += m.max(1);
                }
                i = end.unwrap_or(i + n);
            }
            '<' => {
                let rest: String = chars[i..chars.len().min(i + 12)].iter().collect();
                if !rest.starts_with("<br>") {
                    found.push(rest);
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    found
}

fn assert_markdown_safe(what: &str, md: &str) {
    assert!(hidden_in(md).is_empty(), "{what}: {:?}", hidden_in(md));
    let (headings, tables) = structure(md);
    assert_eq!(
        headings.iter().filter(|h| h.starts_with("# ")).count(),
        1,
        "{what}: {headings:?}"
    );
    assert!(
        headings.iter().all(|h| !h.contains("ALL GREEN")),
        "{what}: {headings:?}"
    );
    let rows = |section: &str| {
        tables
            .iter()
            .find(|(s, _)| s == section)
            .map(|t| t.1)
            .unwrap_or_else(|| panic!("{what}: no table under {section}: {tables:?}"))
    };
    // One row per output key, one failed step.
    assert_eq!(rows("## Outputs"), 10, "{what}:\n{md}");
    assert_eq!(rows("## Failures"), 1, "{what}:\n{md}");
    assert!(md.lines().all(|l| !l.starts_with("| forged")), "{what}");
    let html = raw_html(md);
    assert!(html.is_empty(), "{what}: raw HTML {html:?}");
    // Still there to read, escaped.
    assert!(md.contains("\\u{1b}[2J"), "{what}");
    assert!(md.contains("ALL GREEN"), "{what}");
    assert!(md.contains("evil\\u{202e}txt.exe"), "{what}");
    assert!(md.contains("\\<script\\>"), "{what}");
}

#[test]
fn forged_text_reaches_no_terminal_and_no_report_as_it_is() {
    let (dir, file) = forged_playbook();
    let state = dir.join("state");
    let file = file.to_str().unwrap();

    let exec = runner_cmd(&state, &["exec", file, "--output", "text"]);
    assert_eq!(
        exec.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&exec.stderr)
    );
    let text = String::from_utf8(exec.stdout).unwrap();
    assert_terminal_safe("exec --output text", &text);
    assert!(
        text.lines().filter(|l| l.contains("FAIL two/fail")).count() == 1,
        "{text}"
    );

    let list = runner_cmd(&state, &["runs", "list", "--output", "json"]);
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let id = list[0]["id"].as_str().unwrap().to_owned();

    let show = runner_cmd(&state, &["runs", "show", &id]);
    assert_terminal_safe("runs show", &String::from_utf8(show.stdout).unwrap());

    let md = runner_cmd(&state, &["runs", "show", &id, "--output", "markdown"]);
    assert_markdown_safe(
        "runs show --output markdown",
        &String::from_utf8(md.stdout).unwrap(),
    );

    let reports: Vec<PathBuf> = std::fs::read_dir(state.join("reports"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let report = |ext: &str| {
        let path = reports
            .iter()
            .find(|p| p.extension().is_some_and(|e| e == ext))
            .unwrap_or_else(|| panic!("no .{ext} report in {reports:?}"));
        std::fs::read_to_string(path).unwrap()
    };
    assert_markdown_safe("the .md report", &report("md"));
    // JSON escapes what is below 0x20 itself; the report still parses.
    let json_report = report("json");
    assert!(json_report.bytes().all(|b| b >= 0x20 || b == b'\n'));
    let _: Value = serde_json::from_str(&json_report).unwrap();

    let lines = runner_cmd(&state, &["exec", file, "--output", "json"]);
    let lines = String::from_utf8(lines.stdout).unwrap();
    let mut events = 0;
    for l in lines.lines() {
        assert!(l.bytes().all(|b| b >= 0x20), "{l:?}");
        let e: Value = serde_json::from_str(l).unwrap();
        if e["event"] == "step_finished" && e["step"] == "fail" {
            let error = e["error"].as_str().unwrap_or("");
            assert!(hidden_in(error).is_empty(), "{error:?}");
            assert!(error.contains("\\n# ALL GREEN\\n"), "{error:?}");
        }
        events += 1;
    }
    assert!(events > 4, "{lines}");
    let _ = std::fs::remove_dir_all(&dir);
}
