//! Loader benchmark: `cargo bench -p runner --bench load`.
//!
//! Prints figures and ratios against baselines measured in the same run:
//! - a generated 1 MB playbook: full load + validate (parse, schema, semantic checks)
//!   against the YAML parse alone, and against `serde_json` parsing the same
//!   document as JSON;
//! - an alias bomb and a 100-level nested document, each refused by `runner validate`
//!   in a child process whose wall time and peak RSS are measured, against the same
//!   binary validating a small valid playbook.
//!
//! Goals (issue 2): 1 MB in < 50 ms; bomb and nesting refused in < 1 s with < 100 MiB
//! peak RSS. Nothing here asserts: the machine is shared, so the figures are reported.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::{child, mib, ms, ratio};

use runner::playbook::{self, Source};

fn main() {
    let dir = std::env::temp_dir().join(format!("runner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let big = generate(1 << 20);
    let (stages, steps) = count(&big);
    println!(
        "generated playbook: {} bytes, {stages} stages, {steps} steps",
        big.len()
    );

    // Correctness first: the generated playbook must be valid, or the timing means nothing.
    let source =
        Source::from_bytes("big.yaml".into(), dir.clone(), big.clone().into_bytes()).unwrap();
    if let Err(playbook::LoadError::Invalid { problems, .. }) = playbook::validate(source) {
        panic!(
            "generated playbook is invalid: {:?}",
            &problems[..problems.len().min(5)]
        );
    }

    let full = time(10, || {
        let source =
            Source::from_bytes("big.yaml".into(), dir.clone(), big.clone().into_bytes()).unwrap();
        playbook::validate(source).unwrap();
    });
    let parse = time(10, || {
        playbook::yaml::parse(&big).unwrap();
    });
    let json_text = serde_json::to_string(&playbook::yaml::parse(&big).unwrap().to_json()).unwrap();
    let json = time(10, || {
        let _: serde_json::Value = serde_json::from_str(&json_text).unwrap();
    });
    println!("\n1 MB playbook (median of 10)");
    println!(
        "  load + validate      {:>9.2} ms   (goal < 50 ms)",
        ms(full)
    );
    println!(
        "  YAML parse only      {:>9.2} ms   validate/parse = {:.2}x",
        ms(parse),
        ratio(full, parse)
    );
    println!(
        "  serde_json, as JSON  {:>9.2} ms   validate/json  = {:.2}x",
        ms(json),
        ratio(full, json)
    );

    let real = from_hotfix(1 << 20);
    let source =
        Source::from_bytes("real.yaml".into(), dir.clone(), real.clone().into_bytes()).unwrap();
    if let Err(playbook::LoadError::Invalid { problems, .. }) = playbook::validate(source) {
        panic!(
            "hotfix-shaped playbook is invalid: {:?}",
            &problems[..problems.len().min(5)]
        );
    }
    let real_full = time(10, || {
        let source =
            Source::from_bytes("real.yaml".into(), dir.clone(), real.clone().into_bytes()).unwrap();
        playbook::validate(source).unwrap();
    });
    let real_parse = time(10, || {
        playbook::yaml::parse(&real).unwrap();
    });
    println!(
        "\n1 MB shaped like playbooks/hotfix.yaml ({} bytes: its stages repeated with renamed ids)",
        real.len()
    );
    println!(
        "  load + validate      {:>9.2} ms   (goal < 50 ms)",
        ms(real_full)
    );
    println!(
        "  YAML parse only      {:>9.2} ms   validate/parse = {:.2}x",
        ms(real_parse),
        ratio(real_full, real_parse)
    );

    let exe = Path::new(env!("CARGO_BIN_EXE_runner"));
    let small = dir.join("small.yaml");
    std::fs::write(&small, SMALL).unwrap();
    let bomb = dir.join("bomb.yaml");
    std::fs::write(&bomb, alias_bomb()).unwrap();
    let deep = dir.join("deep.yaml");
    std::fs::write(&deep, nested(100)).unwrap();

    println!("\nrunner validate in a child process (wall time, peak RSS; best of 5)");
    let base = child(exe, &["validate", small.to_str().unwrap()], &[], 0, 5);
    println!(
        "  small valid playbook   {:>8.2} ms  {:>7.1} MiB   (baseline)",
        ms(base.0),
        mib(base.1)
    );
    for (name, file) in [("alias bomb (10^9)", &bomb), ("100-level nesting", &deep)] {
        let (t, rss) = child(exe, &["validate", file.to_str().unwrap()], &[], 2, 5);
        println!(
            "  {name:<21}  {:>8.2} ms  {:>7.1} MiB   time {:.2}x, RSS {:.2}x baseline (goal < 1 s, < 100 MiB)",
            ms(t),
            mib(rss),
            ratio(t, base.0),
            rss as f64 / base.1 as f64
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A playbook of about `target` bytes: stages of steps with inputs, grants, `with`
/// templates, conditions, gates, watches and approvals, so every check has work.
fn generate(target: usize) -> String {
    let mut s = String::from(
        "version: 1\nname: generated\ninputs:\n  service: {type: string, default: api}\n  window: {type: duration, default: 5m}\n  priority: {type: string, enum: [P0, P1, P2], default: P1}\nplugins:\n  http:\n    uses: http-check\n    grants: {http: [\"http://127.0.0.1:8080\"]}\n  kube:\n    uses: kubectl\n    grants:\n      kube: [{namespaces: [prod], resources: [deployments.apps], verbs: [get, patch]}]\nstages:\n",
    );
    let mut stage = 0;
    while s.len() < target {
        let _ = write!(
            s,
            "  - id: stage_{stage}\n    budget: ${{{{ inputs.window }}}}\n    timeout: 30m\n    steps:\n"
        );
        for step in 0..20 {
            let id = format!("s{stage}_{step}");
            let prev = if step > 0 {
                format!("s{stage}_{}", step - 1)
            } else {
                String::new()
            };
            match step % 4 {
                0 => {
                    let _ = write!(
                        s,
                        "      - id: {id}\n        uses: kube\n        timeout: 2m\n        retry: {{max_attempts: 3, delay: 1s}}\n        with:\n          op: set-image\n          deployment: \"${{{{ inputs.service }}}}\"\n          image: \"registry.local/${{{{ inputs.service }}}}:v1.2.{step}\"\n"
                    );
                }
                1 => {
                    let _ = write!(
                        s,
                        "      - id: {id}\n        uses: http\n        with: {{url: \"http://127.0.0.1:8080/health\", expect_status: 200}}\n        watch:\n          interval: 10s\n          duration: ${{{{ inputs.window }}}}\n          failure: result.error_rate > 0.01 || result.latency_ms > 500\n          consecutive_failure_limit: 1\n"
                    );
                }
                2 => {
                    let _ = write!(
                        s,
                        "      - id: {id}\n        gate:\n          pass: steps.{prev}.outputs.error_rate < 0.01 && steps.{prev}.status == 'succeeded'\n          fail: steps.{prev}.outputs.error_rate >= 0.05\n"
                    );
                }
                _ => {
                    let _ = write!(
                        s,
                        "      - id: {id}\n        if: inputs.priority in ['P0', 'P1']\n        approval:\n          prompt: \"Promote ${{{{ inputs.service }}}} after {prev}?\"\n          timeout: 15m\n          on_timeout: rollback\n"
                    );
                }
            }
        }
        stage += 1;
    }
    s.push_str("handlers:\n  on_failure:\n    - id: undo\n      uses: kube\n      with: {op: rollout-undo}\n");
    s
}

/// About `target` bytes of a playbook written like the shipped ones: the stages of
/// `playbooks/hotfix.yaml` (comments, prose, templates, watches, approvals) repeated,
/// each copy's step and stage ids suffixed so they stay unique and its references
/// follow.
fn from_hotfix(target: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../playbooks/hotfix.yaml");
    let text = std::fs::read_to_string(&path).expect("playbooks/hotfix.yaml");
    let validated = playbook::load(&path).expect("hotfix.yaml is valid");
    let mut ids: Vec<String> = Vec::new();
    for stage in &validated.playbook.stages {
        ids.push(stage.id.to_string());
        ids.extend(stage.steps.iter().map(|s| s.id.to_string()));
        for (_, list) in stage.handlers.lists() {
            ids.extend(list.iter().map(|s| s.id.to_string()));
        }
    }
    let start = text.find("\nstages:\n").expect("a stages block") + "\nstages:\n".len();
    let end = text.find("\nhandlers:\n").unwrap_or(text.len());
    let (head, stages, tail) = (&text[..start], &text[start..end], &text[end..]);
    let mut out = String::from(head);
    let mut copy = 0;
    while out.len() + tail.len() < target {
        out.push_str(&rename(stages, &ids, copy));
        out.push('\n');
        copy += 1;
    }
    out.push_str(tail);
    out
}

/// `text` with every identifier token that is in `ids` suffixed by `_{copy}`.
fn rename(text: &str, ids: &[String], copy: usize) -> String {
    if copy == 0 {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 1024);
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        // `uses:` names a plugin, which may share its name with a step id.
        let is_plugin = out.ends_with("uses: ");
        out.push_str(word);
        if !is_plugin && ids.iter().any(|id| id == word) {
            let _ = write!(out, "_{copy}");
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

fn count(text: &str) -> (usize, usize) {
    (
        text.matches("  - id: stage_").count(),
        text.matches("      - id: s").count(),
    )
}

const SMALL: &str = "version: 1\nname: small\nplugins:\n  h: {uses: http-check}\nstages:\n  - id: a\n    steps:\n      - {id: b, uses: h}\n";

/// The "billion laughs": ten aliases per level, nine levels, 10^9 leaves if expanded.
fn alias_bomb() -> String {
    let mut s = String::from(
        "version: 1\nname: bomb\na0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let p = i - 1;
        let _ = writeln!(
            s,
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]"
        );
    }
    s
}

fn nested(levels: usize) -> String {
    let mut s = String::from("version: 1\nname: deep\nstages:\n");
    for i in 0..levels {
        let _ = writeln!(s, "{}k{i}:", "  ".repeat(i + 1));
    }
    s
}

/// Median of `n` timed runs.
fn time(n: usize, mut f: impl FnMut()) -> Duration {
    f(); // warm-up
    let mut samples: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    samples.sort();
    samples[n / 2]
}
