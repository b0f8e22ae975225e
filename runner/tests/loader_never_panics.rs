//! Property tests: no input, however malformed, makes the loader panic. Three kinds
//! of input: arbitrary bytes; YAML-shaped text built from the format's own
//! vocabulary (so generated documents get past the parser and reach the schema,
//! semantic and plan stages); and random edits of a valid playbook.

use proptest::prelude::*;
use runner::playbook::{self, Source};

const VALID: &str = r#"version: 1
name: demo
inputs:
  priority: {type: string, enum: [P0, P1], default: P1}
  window: {type: duration, default: 5m}
plugins:
  smoke: {uses: http-check, grants: {http: ["http://127.0.0.1:8080"]}}
stages:
  - id: deploy
    budget: ${{ inputs.window }}
    steps:
      - id: check
        uses: smoke
        with: {url: "http://127.0.0.1:8080/${{ inputs.priority }}"}
        watch: {interval: 1s, count: 3, failure: "result.status != 200", consecutive_failure_limit: 1}
      - id: gate
        gate: {pass: "steps.check.outputs.ok", fail: "!steps.check.outputs.ok"}
      - id: ok
        approval: {prompt: "go?", timeout: 1m, on_timeout: fail}
        if: inputs.priority == 'P0'
handlers:
  on_failure:
    - {id: undo, uses: smoke, with: {url: "x"}}
"#;

/// Runs the whole pipeline the CLI runs, plan included, on `bytes`.
fn load_and_plan(bytes: Vec<u8>) {
    let Ok(source) = Source::from_bytes("prop.yaml".into(), ".".into(), bytes) else {
        return;
    };
    if let Ok(v) = playbook::validate(source) {
        let _ = runner::plan::build(&v, &[]);
    }
}

const KEYS: &[&str] = &[
    "version",
    "name",
    "stages",
    "steps",
    "id",
    "uses",
    "with",
    "gate",
    "pass",
    "fail",
    "needs",
    "watch",
    "interval",
    "count",
    "duration",
    "if",
    "timeout",
    "budget",
    "retry",
    "max_attempts",
    "approval",
    "prompt",
    "on_timeout",
    "handlers",
    "on_failure",
    "finally",
    "plugins",
    "grants",
    "http",
    "fs",
    "inputs",
    "type",
    "default",
    "enum",
    "required",
    "concurrency",
    "group",
    "<<",
    "a",
];
const SCALARS: &[&str] = &[
    "1",
    "0",
    "-1",
    "1.5",
    "true",
    "false",
    "null",
    "~",
    "5m",
    "1h30m",
    "30m1h",
    "http-check",
    "smoke",
    "deploy",
    "check",
    "${{ inputs.window }}",
    "${{ steps.check.outputs.ok }}",
    "${{",
    "}}",
    "steps.check.outputs.ok",
    "inputs.priority == 'P0'",
    "result.x > 1",
    "string",
    "duration",
    "bool",
    "number",
    "fail",
    "rollback",
    "'quoted'",
    "\"dq\\u00e9\"",
    "&anchor x",
    "*anchor",
    "!tag x",
    "|",
    ">",
    "[",
    "]",
    "{",
    "}",
    "- ",
    ": ",
    "#",
    "설명",
    "\t",
    "",
];

fn yamlish() -> impl Strategy<Value = String> {
    let leaf = prop::sample::select(SCALARS).prop_map(str::to_owned);
    leaf.prop_recursive(6, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec((prop::sample::select(KEYS), inner.clone()), 0..6).prop_map(
                |entries| {
                    entries
                        .into_iter()
                        .map(|(k, v)| format!("{k}:{}", indent(&v)))
                        .collect::<Vec<_>>()
                        .join("\n")
                }
            ),
            prop::collection::vec(inner, 0..5).prop_map(|items| items
                .into_iter()
                .map(|v| format!("-{}", indent(&v)))
                .collect::<Vec<_>>()
                .join("\n")),
        ]
    })
}

/// Places a child value after `key:` or `-`: inline when it is one line, indented below otherwise.
fn indent(v: &str) -> String {
    if v.contains('\n') || v.contains(": ") && !v.starts_with(['{', '[', '"', '\'']) {
        let body: Vec<String> = v.lines().map(|l| format!("  {l}")).collect();
        format!("\n{}", body.join("\n"))
    } else {
        format!(" {v}")
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        load_and_plan(bytes);
    }

    #[test]
    fn arbitrary_yaml(doc in yamlish()) {
        load_and_plan(doc.into_bytes());
    }

    #[test]
    fn edits_of_a_valid_playbook(edits in prop::collection::vec((0..VALID.len(), prop::sample::select(SCALARS)), 1..4)) {
        let mut text = VALID.to_owned();
        for (at, insert) in edits {
            let at = (0..=at.min(text.len())).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            text.insert_str(at, insert);
        }
        load_and_plan(text.into_bytes());
    }

    #[test]
    fn truncations_of_a_valid_playbook(cut in 0..VALID.len()) {
        load_and_plan(VALID.as_bytes()[..cut].to_vec());
    }
}

#[test]
fn the_base_document_is_valid() {
    // Without this, the edit tests could be mutating a document that never gets past
    // the schema, and would test much less than they claim.
    let source =
        Source::from_bytes("base.yaml".into(), ".".into(), VALID.as_bytes().to_vec()).unwrap();
    let v = playbook::validate(source).unwrap_or_else(|e| panic!("{e:?}"));
    runner::plan::build(&v, &[]).unwrap();
}
