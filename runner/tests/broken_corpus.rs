//! The broken-playbook corpus: `tests/broken/NN-short-name.yaml` at the repository root.
//!
//! Each corpus file is a small playbook with deliberate mistakes. It starts with one
//! line per diagnostic the validator must print, in the order it prints them:
//!
//! ```text
//! # expect: LINE:COL: MESSAGE
//! ```
//!
//! LINE and COL are 1-based and count the expectation lines themselves. Only the
//! leading block of such lines is read. A file that cannot hold a comment (the empty
//! file) keeps its expectations, in the same form, in a sidecar `NN-short-name.expect`
//! next to it; when a sidecar exists, it is used instead of the file's own lines.
//!
//! The test runs the real binary, `runner validate NAME.yaml`, from inside the corpus
//! folder (so file names and relative plugin paths in messages do not depend on where
//! the repository is checked out), and compares the `NAME.yaml:LINE:COL: message`
//! lines of stderr with the expectations. Every mismatch is collected, so one run
//! shows every broken case.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fewer corpus files than this means the corpus was lost or not found.
const MIN_CORPUS_FILES: usize = 30;

/// Exit code of `runner validate` for an invalid playbook.
const EXIT_INVALID: i32 = 2;

const EXPECT_PREFIX: &str = "# expect: ";

fn repo_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)
}

/// The `*.yaml` files directly in `dir`, by name. Panics when `dir` cannot be read.
fn yaml_files(dir: &Path) -> Vec<String> {
    let entries =
        fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display())))
        .filter(|entry| entry.path().is_file())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".yaml"))
        .collect();
    names.sort();
    names
}

/// Runs `runner validate FILE` inside `dir`.
fn validate(dir: &Path, file: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .arg("validate")
        .arg(file)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run runner validate {file}: {e}"))
}

/// The expectation lines (`LINE:COL: MESSAGE`, without the `# expect: ` prefix) of a
/// corpus file: from its sidecar `.expect` when there is one, else from the leading
/// lines of the file itself. Bytes that are not UTF-8 (a corpus case of its own) are
/// replaced; they come after the expectations.
fn expectations(dir: &Path, file: &str) -> Result<Vec<String>, String> {
    let stem = file.strip_suffix(".yaml").unwrap_or(file);
    let sidecar = dir.join(format!("{stem}.expect"));
    let source = if sidecar.is_file() {
        sidecar
    } else {
        dir.join(file)
    };
    let bytes = fs::read(&source).map_err(|e| format!("cannot read {}: {e}", source.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let expected: Vec<String> = text
        .lines()
        .map_while(|line| line.strip_prefix(EXPECT_PREFIX))
        .map(str::to_owned)
        .collect();
    if expected.is_empty() {
        return Err(format!(
            "no `{EXPECT_PREFIX}LINE:COL: MESSAGE` line at the start of {}",
            source.display()
        ));
    }
    let mut positions = Vec::new();
    for e in &expected {
        let Some((line, col, _)) = split_position(e) else {
            return Err(format!(
                "malformed expectation `{e}` in {}; write `LINE:COL: MESSAGE`",
                source.display()
            ));
        };
        positions.push((line, col));
    }
    if !positions.is_sorted() {
        return Err(format!(
            "the expectations in {} are not in file order (diagnostics are printed in file order)",
            source.display()
        ));
    }
    Ok(expected)
}

/// `LINE:COL: MESSAGE` → (LINE, COL, MESSAGE), when LINE and COL are numbers.
fn split_position(text: &str) -> Option<(usize, usize, &str)> {
    let (line, rest) = text.split_once(':')?;
    let (col, message) = rest.split_once(": ")?;
    Some((line.parse().ok()?, col.parse().ok()?, message))
}

/// The diagnostic header lines `FILE:LINE:COL: message` of `stderr`, as
/// `LINE:COL: message`.
fn diagnostics(stderr: &str, file: &str) -> Vec<String> {
    let prefix = format!("{file}:");
    stderr
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter(|rest| split_position(rest).is_some())
        .map(str::to_owned)
        .collect()
}

fn indented(lines: &[String]) -> String {
    if lines.is_empty() {
        return "    (nothing)\n".to_owned();
    }
    lines.iter().map(|l| format!("    {l}\n")).collect()
}

/// Whether `name` has the corpus form `NN-short-name.yaml`.
fn well_named(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".yaml") else {
        return false;
    };
    let mut chars = stem.chars();
    let number = chars.by_ref().take(2).filter(char::is_ascii_digit).count() == 2;
    let rest: String = chars.collect();
    number
        && rest.len() > 1
        && rest.starts_with('-')
        && rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[test]
fn broken_playbooks_give_the_expected_diagnostics() {
    let dir = repo_dir("tests/broken");
    assert!(
        dir.is_dir(),
        "the broken-playbook corpus {} is missing",
        dir.display()
    );
    let files = yaml_files(&dir);
    assert!(
        files.len() >= MIN_CORPUS_FILES,
        "the corpus {} has {} playbooks; expected at least {MIN_CORPUS_FILES}",
        dir.display(),
        files.len()
    );

    let mut failures = String::new();
    let mut failed = 0;
    for file in &files {
        let mut report = String::new();
        if !well_named(file) {
            report.push_str("  the name is not of the form NN-short-name.yaml\n");
        }
        let expected = match expectations(&dir, file) {
            Ok(e) => e,
            Err(e) => {
                report.push_str(&format!("  {e}\n"));
                Vec::new()
            }
        };
        let output = validate(&dir, file);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let got = diagnostics(&stderr, file);
        let code = output.status.code();
        let panicked = stdout.contains("panicked") || stderr.contains("panicked");
        if code != Some(EXIT_INVALID) {
            report.push_str(&format!("  exit code {code:?}, expected {EXIT_INVALID}\n"));
        }
        if panicked {
            report.push_str("  the runner panicked\n");
        }
        if !expected.is_empty() && got != expected {
            report.push_str(&format!(
                "  expected:\n{}  got:\n{}",
                indented(&expected),
                indented(&got)
            ));
        }
        if !report.is_empty() {
            failed += 1;
            let _ = writeln!(
                failures,
                "{file}\n{report}  full stderr:\n{}",
                indent_raw(&stderr)
            );
        }
    }
    assert!(
        failed == 0,
        "{failed} of {} corpus files in {} do not give the expected diagnostics:\n\n{failures}",
        files.len(),
        dir.display()
    );
}

fn indent_raw(text: &str) -> String {
    if text.trim().is_empty() {
        return "    (empty)\n".to_owned();
    }
    text.lines().map(|l| format!("    | {l}\n")).collect()
}

#[test]
fn sidecar_expectations_belong_to_a_corpus_file() {
    let dir = repo_dir("tests/broken");
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let orphans: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".expect"))
        .filter(|name| {
            let stem = name.strip_suffix(".expect").unwrap_or(name);
            !dir.join(format!("{stem}.yaml")).is_file()
        })
        .collect();
    assert!(
        orphans.is_empty(),
        "sidecar files without a playbook next to them: {orphans:?}"
    );
}

#[test]
fn shipped_playbooks_are_valid() {
    let dir = repo_dir("playbooks");
    assert!(
        dir.is_dir(),
        "the playbooks folder {} is missing",
        dir.display()
    );
    let files = yaml_files(&dir);
    assert!(!files.is_empty(), "no *.yaml playbook in {}", dir.display());

    let mut failures = String::new();
    for file in &files {
        let output = validate(&dir, file);
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let panicked = stdout.contains("panicked") || stderr.contains("panicked");
        if output.status.code() != Some(0) || panicked {
            let _ = writeln!(
                failures,
                "{file}: exit code {:?}{}\n{}",
                output.status.code(),
                if panicked { ", panicked" } else { "" },
                indent_raw(&stderr)
            );
        }
    }
    assert!(
        failures.is_empty(),
        "playbooks in {} that do not validate:\n\n{failures}",
        dir.display()
    );
}
