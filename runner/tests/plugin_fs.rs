//! The built-in `fs` and `report` plugins end to end through `runner exec`:
//! files land in granted folders with their sha256, nowhere else.

mod common;

use serde_json::Value;
use sha2::Digest;

fn run(dir: &std::path::Path, uses: &str, grants: &str, with: &str) -> (i32, Value) {
    let (code, events) = common::exec(dir, &common::one_step(uses, grants, "write", with), &[]);
    (code, common::finished(&events, "write").clone())
}

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn evidence_is_written_appended_and_copied_in_granted_folders() {
    let dir = common::scratch("fs");
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    let rw = "{ fs: [{ path: artifacts, access: rw }] }";
    let (code, step) = run(
        &dir,
        "fs",
        rw,
        "{ op: write, path: artifacts/evidence/metrics.json, content: { error_rate: 0.31, p95_ms: 640 } }",
    );
    assert_eq!(code, 0, "{step}");
    let written = std::fs::read(dir.join("artifacts/evidence/metrics.json")).unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&written).unwrap()["error_rate"],
        0.31
    );
    assert_eq!(step["outputs"]["sha256"], sha256(&written));

    let (code, step) = run(
        &dir,
        "fs",
        rw,
        "{ op: append, path: artifacts/log.txt, content: \"one\\n\" }",
    );
    assert_eq!(code, 0, "{step}");
    let (code, _) = run(
        &dir,
        "fs",
        rw,
        "{ op: append, path: artifacts/log.txt, content: \"two\\n\" }",
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(dir.join("artifacts/log.txt")).unwrap(),
        "one\ntwo\n"
    );

    let (code, step) = run(
        &dir,
        "fs",
        rw,
        "{ op: copy, from: artifacts/log.txt, path: artifacts/copy.txt }",
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["sha256"], sha256(b"one\ntwo\n"));
}

#[test]
fn files_outside_rw_grants_are_refused() {
    let dir = common::scratch("fs-denied");
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    let grants = "{ fs: [{ path: artifacts, access: rw }, { path: templates }] }";
    for (path, why) in [
        ("notes.txt", "is not inside a folder granted"),
        ("templates/x.md", "granted read-only"),
    ] {
        let (code, step) = run(
            &dir,
            "fs",
            grants,
            &format!("{{ op: write, path: {path}, content: x }}"),
        );
        assert_eq!(code, 1, "{step}");
        assert_eq!(step["error_kind"], "denied", "{step}");
        assert!(
            step["error"].as_str().unwrap_or_default().contains(why),
            "{step}"
        );
    }
    assert!(!dir.join("notes.txt").exists() && !dir.join("templates/x.md").exists());
}

#[test]
fn a_report_is_rendered_by_the_runner_and_written_by_the_plugin() {
    let dir = common::scratch("report");
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    let playbook = "version: 1\nname: report-test\ninputs:\n  incident: { type: string, default: INC-7 }\nplugins:\n  r: { uses: report, grants: { fs: [{ path: artifacts, access: rw }] } }\nstages:\n  - id: s\n    steps:\n      - id: write\n        uses: r\n        with:\n          path: artifacts/postmortem-${{ inputs.incident }}.md\n          template: |\n            # Post-mortem ${{ inputs.incident }}\n            Run ${{ run.id }}.\n";
    let (code, events) = common::exec(&dir, playbook, &[]);
    let step = common::finished(&events, "write");
    assert_eq!(code, 0, "{step}");
    let text = std::fs::read_to_string(dir.join("artifacts/postmortem-INC-7.md")).unwrap();
    assert!(text.starts_with("# Post-mortem INC-7\nRun "), "{text}");
    assert!(!text.contains("${{"), "{text}");
    assert_eq!(step["outputs"]["sha256"], sha256(text.as_bytes()));
}

#[test]
fn a_report_can_embed_another_runs_report_from_the_journal() {
    let dir = common::scratch("report-journal");
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    let first = "version: 1\nname: failed-canary\nplugins:\n  e: { uses: echo }\nstages:\n  - id: s\n    steps:\n      - id: watch_25\n        uses: e\n        with: { message: measured }\n";
    let (code, events) = common::exec(&dir, first, &[]);
    assert_eq!(code, 0);
    let id = events[0]["run"].as_str().unwrap().to_owned();
    let postmortem = format!(
        "version: 1\nname: postmortem\nplugins:\n  r: {{ uses: report, grants: {{ fs: [{{ path: artifacts, access: rw }}] }} }}\nstages:\n  - id: s\n    steps:\n      - id: write\n        uses: r\n        with:\n          path: artifacts/pm.md\n          template: |\n            # Post-mortem\n            ${{{{ run_report('{id}') }}}}\n"
    );
    let (code, events) = common::exec(&dir, &postmortem, &[]);
    assert_eq!(code, 0, "{:#}", common::finished(&events, "write"));
    let text = std::fs::read_to_string(dir.join("artifacts/pm.md")).unwrap();
    assert!(
        text.contains("failed-canary") && text.contains("watch_25") && text.contains(&id),
        "{text}"
    );
    // An unknown run is found while planning: nothing runs.
    let missing = postmortem.replace(&id, "no-such-run");
    std::fs::write(dir.join("missing.yaml"), missing).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_runner"))
        .env("RUNNER_STATE_DIR", dir.join("state"))
        .args([
            "exec",
            dir.join("missing.yaml").to_str().unwrap(),
            "--output",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no run `no-such-run` in the journal"), "{err}");
    assert!(out.stdout.is_empty(), "nothing ran");
}
