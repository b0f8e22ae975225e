//! `runner completions SHELL` and `runner man [COMMAND]` come from the clap
//! definitions; each shell's own parser accepts its script (`bash -n`,
//! `zsh -n`, `fish -n`) and groff reads every manual page without a warning.
//! The shells and groff are installed by .ci/run.

use std::io::Write;
use std::process::{Command, Stdio};

fn runner(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .args(args)
        .output()
        .unwrap()
}

/// Feeds `input` to `program args` on stdin; its exit status and stderr.
fn check(program: &str, args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} is needed (.ci/run installs it): {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn each_shell_accepts_its_completion_script() {
    for (shell, parser) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = runner(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        // It completes the commands, down to the nested ones.
        for word in ["exec", "resume", "prune", "on-journal-error"] {
            assert!(script.contains(word), "{shell} completion lacks {word}");
        }
        let (ok, stderr) = check(parser, &["-n"], script.as_bytes());
        assert!(ok, "{parser} -n refuses the {shell} completion: {stderr}");
    }
    let bad = runner(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn every_manual_page_reads_without_a_warning() {
    let mut pages = vec![None];
    pages.extend(
        [
            "validate", "plan", "exec", "approve", "resume", "rerun", "runs", "stats", "plugins",
        ]
        .map(Some),
    );
    for page in pages {
        let mut args = vec!["man"];
        args.extend(page);
        let out = runner(&args);
        assert!(out.status.success(), "{page:?}");
        let roff = String::from_utf8(out.stdout).unwrap();
        let title = page.map_or("runner".to_owned(), |p| format!("runner-{p}"));
        assert!(
            roff.contains(&format!(".TH {title} 1")),
            "{page:?}: {}",
            &roff[..roff.len().min(300)]
        );
        assert!(roff.contains(env!("CARGO_PKG_VERSION")), "{page:?}");
        let (ok, warnings) = check(
            "groff",
            &["-K", "utf8", "-man", "-Tutf8", "-ww", "-z"],
            roff.as_bytes(),
        );
        assert!(ok && warnings.is_empty(), "{page:?}: {warnings}");
    }
    let unknown = runner(&["man", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no command `nope`"));
}
