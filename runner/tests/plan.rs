//! `runner plan` end to end: the README's command works, inputs are checked before
//! anything else, and the JSON plan says what the text plan says.

use std::process::{Command, Output};

fn runner(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .output()
        .expect("run runner")
}

const HOTFIX_INPUTS: &[&str] = &[
    "-i",
    "issue_id=HOTFIX-1",
    "-i",
    "issue_description=login fails",
    "-i",
    "service=api",
    "-i",
    "base_tag=v1.2.3",
    "-i",
    "fixed_image=registry.local/api:v1.2.4",
    "-i",
    "staging_url=http://127.0.0.1:8081",
    "-i",
    "production_url=http://127.0.0.1:8080",
    "-i",
    "prometheus_url=http://127.0.0.1:9090",
];

fn plan(priority: &str, json: bool) -> Output {
    let mut args = vec!["plan", "playbooks/hotfix.yaml"];
    args.extend_from_slice(HOTFIX_INPUTS);
    let p = format!("priority={priority}");
    args.extend(["-i", &p]);
    if json {
        args.extend(["--output", "json"]);
    }
    runner(&args)
}

#[test]
fn readme_plan_command_works() {
    let out = plan("P1", false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("Plan for `hotfix`"), "{text}");
    assert!(
        text.contains("concurrency group `deploy-api`"),
        "inputs are not resolved in the group: {text}"
    );
    for stage in ["analysis", "fix", "verify", "deploy", "report"] {
        assert!(
            text.contains(&format!(". {stage}")),
            "stage {stage} missing:\n{text}"
        );
    }
}

#[test]
fn readme_plan_with_the_example_environment_file_works() {
    let out = runner(&[
        "plan",
        "playbooks/hotfix.yaml",
        "--env",
        "environments/production.example.yaml",
        "-i",
        "issue_id=HOTFIX-1",
        "-i",
        "issue_description=login fails",
        "-i",
        "priority=P1",
        "-i",
        "base_tag=v1.2.3",
        "-i",
        "fixed_image=registry.example.com/shop:v1.2.4",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Inputs and grants come from the file.
    assert!(text.contains("concurrency group `deploy-shop`"), "{text}");
    assert!(
        text.contains("https://shop.example.com") && text.contains("(given)"),
        "{text}"
    );
    assert!(
        text.contains("smtp.example.com:587"),
        "the env's tcp grant: {text}"
    );
}

#[test]
fn json_plan_resolves_inputs_and_conditions() {
    let p1: serde_json::Value =
        serde_json::from_slice(&plan("P1", true).stdout).expect("JSON plan");
    let p2: serde_json::Value =
        serde_json::from_slice(&plan("P2", true).stdout).expect("JSON plan");
    let given = |p: &serde_json::Value, name: &str| {
        p["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(given(&p1, "priority")["value"], "P1");
    assert_eq!(given(&p1, "priority")["origin"], "given");
    assert_eq!(given(&p1, "analysis_budget")["origin"], "default");
    // A step whose condition reads only the priority is decided by the plan.
    let runs = |p: &serde_json::Value| -> Vec<(String, String)> {
        p["stages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["steps"].as_array().unwrap().iter())
            .map(|s| {
                (
                    s["id"].as_str().unwrap().to_owned(),
                    s["runs"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let (r1, r2) = (runs(&p1), runs(&p2));
    assert_eq!(r1.len(), r2.len());
    let differ: Vec<_> = r1.iter().zip(&r2).filter(|(a, b)| a != b).collect();
    assert!(
        !differ.is_empty(),
        "no step depends on the priority; the P0/P1 approval should"
    );
    assert!(
        differ
            .iter()
            .all(|((_, a), (_, b))| a == "yes" && b == "no"),
        "{differ:?}"
    );
}

#[test]
fn missing_required_inputs_are_reported_together() {
    let out = runner(&["plan", "playbooks/hotfix.yaml", "-i", "priority=P1"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["issue_id", "service", "base_tag", "fixed_image"] {
        assert!(
            err.contains(&format!("missing required input `{name}`")),
            "{err}"
        );
    }
    assert!(
        out.stdout.is_empty(),
        "a plan was printed despite missing inputs"
    );
}

#[test]
fn bad_input_values_are_refused() {
    let mut args = vec!["plan", "playbooks/hotfix.yaml"];
    args.extend_from_slice(HOTFIX_INPUTS);
    args.extend([
        "-i",
        "priority=P5",
        "-i",
        "first_window=5 minutes",
        "-i",
        "prioity=P1",
    ]);
    let out = runner(&args);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("input `priority`: `P5` is not allowed; choose one of: P0, P1, P2"),
        "{err}"
    );
    assert!(
        err.contains("input `first_window`: `5 minutes` is not a duration"),
        "{err}"
    );
    assert!(
        err.contains("unknown input `prioity`; did you mean `priority`?"),
        "{err}"
    );
}

#[test]
fn validate_exit_codes() {
    let ok = runner(&[
        "validate",
        "playbooks/hotfix.yaml",
        "playbooks/rollback.yaml",
    ]);
    assert_eq!(ok.status.code(), Some(0));
    let mixed = runner(&[
        "validate",
        "playbooks/hotfix.yaml",
        "tests/broken/09-unknown-step-key.yaml",
    ]);
    assert_eq!(mixed.status.code(), Some(2));
    let missing = runner(&["validate", "no/such/file.yaml"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("no/such/file.yaml: cannot read the playbook")
    );
}

#[test]
fn a_boolean_condition_disables_a_step() {
    let dir = std::env::temp_dir().join(format!("runner-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("off.yaml");
    std::fs::write(
        &file,
        "version: 1\nname: off\nplugins: {p: {uses: exec}}\nstages:\n  - id: s\n    steps:\n      - {id: a, uses: p, if: false}\n      - {id: b, uses: p}\n",
    )
    .unwrap();
    let out = runner(&["plan", file.to_str().unwrap(), "--output", "json"]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps = &plan["stages"][0]["steps"];
    assert_eq!(steps[0]["runs"], "no");
    assert_eq!(steps[1]["runs"], "yes");
}

#[test]
fn oversized_files_are_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("runner-big-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("huge.yaml");
    // Valid YAML (one long comment), just too big to be a playbook.
    let mut text = String::from("# ");
    text.push_str(&"x".repeat(runner::playbook::MAX_PLAYBOOK_BYTES as usize));
    std::fs::write(&file, text).unwrap();
    let out = runner(&["validate", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("playbooks are limited to 4194304 bytes"),
        "{err}"
    );
}

/// `runner plan` shows which environment variables each program may be given;
/// `runner validate` refuses a grant of a loader variable, at its line and column.
#[test]
fn the_plan_shows_the_environment_a_program_may_get() {
    let dir = std::env::temp_dir().join(format!("runner-plan-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("env.yaml");
    let playbook = |env: &str| {
        format!(
            "version: 1\nname: env\nplugins:\n  p:\n    uses: exec\n    grants:\n      process:\n        - git\n        - {{ run: \"npm test *\", env: [{env}] }}\nstages:\n  - id: s\n    steps:\n      - {{id: a, uses: p, with: {{program: git}}}}\n"
        )
    };
    std::fs::write(&file, playbook("CI, npm_config_*")).unwrap();
    let out = runner(&["plan", file.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("run git, npm test * (env: CI, npm_config_*)"),
        "{text}"
    );
    assert!(
        text.contains("programs get none of the runner's environment; the plugin may set LANG, LANGUAGE, LC_*, TZ, NO_COLOR and the names after env:"),
        "{text}"
    );

    std::fs::write(&file, playbook("CI, LD_PRELOAD")).unwrap();
    let out = runner(&["validate", file.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("env.yaml:9:42"), "{err}");
    assert!(
        err.contains("`LD_PRELOAD` cannot be granted: it covers `LD_*`"),
        "{err}"
    );
}

/// The values that broke the shipped playbooks without any CEL (a forged PromQL
/// label, a health check sent to another host, an image from another registry, a
/// gate switched off, a header injected into a mail) are refused before the run,
/// each naming its input.
#[test]
fn hostile_input_values_are_refused_before_anything_runs() {
    let cases: &[(&str, &[&str], &str)] = &[
        (
            "playbooks/postmortem.yaml",
            &["namespace=production\",track!=\"canary\",code!~\"5..\""],
            "input `namespace`: `production\",track!=\"canary\",code!~\"5..\"` is not a dns-label",
        ),
        (
            "playbooks/postmortem.yaml",
            &["health_path=@127.0.0.1:9/health"],
            "input `health_path`: `@127.0.0.1:9/health` is not a url-path",
        ),
        (
            "playbooks/hotfix.yaml",
            &["fixed_image=evil.example/miner:v1.4.3"],
            "input `fixed_image`: `evil.example/miner:v1.4.3` is not allowed by the environment file's `allow`: demo/shop",
        ),
        (
            "playbooks/postmortem.yaml",
            &["max_error_rate=1e9"],
            "input `max_error_rate`: 1000000000 is above the maximum 1",
        ),
        (
            "playbooks/postmortem.yaml",
            &["incident_title=fix\nBcc: everyone@example.com"],
            "input `incident_title`: it has a line break",
        ),
        (
            "playbooks/canary.yaml",
            &["production_url=http://127.0.0.1:8080@127.0.0.1:9"],
            "input `production_url`: `http://127.0.0.1:8080@127.0.0.1:9` is not a url: user information",
        ),
        (
            "playbooks/canary.yaml",
            &["production_url=http://127.0.0.1:9"],
            "input `production_url`: `http://127.0.0.1:9` is not allowed by the environment file's `allow`",
        ),
    ];
    let base: &[&str] = &[
        "incident_id=INC-1",
        "incident_title=checkout down",
        "issue_id=HOTFIX-1",
        "issue_description=login fails",
        "priority=P2",
        "base_tag=v1.4.2",
        "image=demo/shop:1.4.3",
    ];
    for (file, bad, expected) in cases {
        let declared = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(file),
        )
        .unwrap();
        let mut args = vec![
            "exec",
            file,
            "--env",
            "environments/sandbox.yaml",
            "--output",
            "json",
        ];
        let name = |a: &str| a.split('=').next().unwrap_or("").to_owned();
        let overridden: Vec<String> = bad.iter().map(|b| name(b)).collect();
        for b in base {
            if declared.contains(&format!("\n  {}:", name(b))) && !overridden.contains(&name(b)) {
                args.extend(["-i", b]);
            }
        }
        for b in bad.iter() {
            args.extend(["-i", b]);
        }
        let out = runner(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file} {bad:?}: {err}");
        assert!(err.contains(expected), "{file} {bad:?}: {err}");
        assert!(
            out.stdout.is_empty(),
            "something ran: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// An environment file's values obey the same rules as `-i`.
#[test]
fn environment_file_values_obey_the_input_rules() {
    let dir = std::env::temp_dir().join(format!("runner-plan-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let env = dir.join("env.yaml");
    std::fs::write(
        &env,
        "inputs:\n  namespace: 'production\",track!=\"canary'\n  production_url: http://127.0.0.1:8080\n  prometheus_url: http://127.0.0.1:9090\n",
    )
    .unwrap();
    let out = runner(&[
        "plan",
        "playbooks/postmortem.yaml",
        "--env",
        env.to_str().unwrap(),
        "-i",
        "incident_id=INC-1",
        "-i",
        "incident_title=down",
        "-i",
        "service=shop",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("input `namespace`"), "{err}");
    assert!(err.contains("is not a dns-label"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The rules themselves are checked by `validate`, at file:line:col.
#[test]
fn input_rules_that_cannot_work_are_located() {
    let dir = std::env::temp_dir().join(format!("runner-plan-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("rules.yaml");
    std::fs::write(
        &file,
        "version: 1
name: rules
inputs:
  ticket: { type: string, pattern: 'INC-[0-9]+', default: 'x' }
  rate: { type: number, maximum: 1, minimum: 2 }
  name: { type: number, format: dns-label }
  broken: { type: string, pattern: '(' }
  site: { type: string, allow: ['https://x.example'] }
  where: { type: string, format: url, allow: ['https://x.example/path'] }
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - { id: a, uses: echo }
",
    )
    .unwrap();
    let out = runner(&["validate", file.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    for expected in [
        "rules.yaml:4:59: the default breaks the input's own rules: `x` does not match the pattern `INC-[0-9]+`",
        "rules.yaml:5:46: `minimum` 2 is above `maximum` 1",
        "rules.yaml:6:25: `format` applies to string inputs only",
        "rules.yaml:7:36: the pattern does not compile: unclosed group",
        "rules.yaml:8:33: `allow` needs `format: url` or `format: image-ref`",
        "rules.yaml:9:47: `https://x.example/path` is not an origin",
    ] {
        assert!(err.contains(expected), "missing `{expected}` in:\n{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shipped playbook is copied to production: it names no loopback or private
/// host; those belong to environments/sandbox.yaml.
#[test]
fn shipped_playbooks_grant_no_local_host() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for dir in ["playbooks", "examples"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.split('#').next().unwrap_or("");
                for local in ["127.0.0.1", "localhost", "[::1]", "0.0.0.0"] {
                    assert!(
                        !code.contains(local),
                        "{}:{}: names {local}: {line}",
                        path.display(),
                        n + 1
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} playbooks found");
}

/// Hosts left to the environment file: `validate` says so and passes, and
/// `exec` without an environment file refuses to start, naming what to add.
#[test]
fn hosts_left_to_the_environment_are_noted_and_required() {
    let out = runner(&["validate", "playbooks/rollback.yaml"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("playbooks/rollback.yaml:101:3: note: plugin `http_check` (http-check) needs `http` and the playbook grants no host"),
        "{err}"
    );
    let state = std::env::temp_dir().join(format!("runner-plan-hosts-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_runner"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env("RUNNER_STATE_DIR", &state)
        .args([
            "exec",
            "playbooks/rollback.yaml",
            "--output",
            "json",
            "-i",
            "service=shop",
            "-i",
            "reason=test",
            "-i",
            "production_url=http://127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("plugin `http_check` (http-check) needs the `http` capability and nothing grants it; grant it in the environment file"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "it ran: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = std::fs::remove_dir_all(&state);
}

/// The shipped performance gate (hotfix.yaml) with its own defaults: machine
/// noise on a fast service passes, a real regression fails, a small one asks.
#[test]
fn the_shipped_performance_gate_ignores_noise_and_fails_real_regressions() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pb = runner::playbook::load(&root.join("playbooks/hotfix.yaml"))
        .unwrap()
        .playbook;
    let gate = pb
        .stages
        .iter()
        .flat_map(|s| &s.steps)
        .find(|s| s.id.as_str() == "performance_gate")
        .and_then(|s| s.gate.clone())
        .expect("hotfix.yaml has a performance_gate");
    let default = |name: &str| pb.inputs[name].default.clone().unwrap();
    let verdict = |base_p95: f64, p95: f64, base_err: f64, err: f64| {
        let vars: serde_json::Map<String, serde_json::Value> = serde_json::from_value(serde_json::json!({
            "inputs": {
                "latency_slack_ms": default("latency_slack_ms"),
                "error_rate_slack": default("error_rate_slack"),
            },
            "steps": {
                "load_test": { "outputs": { "passed": true, "p95_ms": p95, "error_rate": err } },
                "baseline_load": { "outputs": { "passed": true, "p95_ms": base_p95, "error_rate": base_err } },
            },
        }))
        .unwrap();
        let eval =
            |c: &str| runner::expr::evaluate(runner::expr::unwrap_condition(c), &vars).unwrap();
        let fail = eval(gate.fail.as_ref().unwrap().as_str());
        let pass = eval(gate.pass.as_str());
        match (fail.as_bool().unwrap(), pass.as_bool().unwrap()) {
            (true, _) => "fail",
            (false, true) => "pass",
            (false, false) => "inconclusive",
        }
    };
    // The CI run that rolled back a good fix: +33 % but 3.6 ms.
    assert_eq!(verdict(10.9, 14.5, 0.0, 0.0), "pass");
    assert_eq!(verdict(10.9, 60.0, 0.0, 0.0), "fail");
    assert_eq!(verdict(100.0, 125.0, 0.0, 0.0), "inconclusive");
    assert_eq!(verdict(100.0, 200.0, 0.0, 0.0), "fail");
    assert_eq!(verdict(100.0, 105.0, 0.0, 0.0005), "pass");
    assert_eq!(verdict(100.0, 105.0, 0.0, 0.01), "fail");
}

/// `runner validate` notes a string input that may be any text when it reaches
/// a field its plugin reads as a query, a URL, a name, an image, a command or
/// chat text, at that field; a narrowed input (pattern, format, enum; for chat,
/// max_length) and a value that only reads step outputs are not noted.
#[test]
fn unconstrained_inputs_reaching_a_query_a_url_a_name_or_chat_are_noted() {
    let dir = std::env::temp_dir().join(format!("runner-plan-sinks-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("sinks.yaml");
    std::fs::write(
        &file,
        r#"version: 1
name: sinks
inputs:
  free: { type: string, default: "x" }
  bounded: { type: string, max_length: 80, default: "x" }
  service: { type: string, format: dns-label, default: "shop" }
  level: { type: string, enum: [a, b], default: a }
plugins:
  prom: { uses: prometheus, grants: { http: ["http://prom.example:9090"] } }
  check: { uses: http-check, grants: { http: ["https://shop.example"] } }
  kube: { uses: kubectl, grants: { kube: [{ namespaces: [shop], resources: [deployments.apps], verbs: [get] }] } }
  say: { uses: notify, grants: { secrets: [SLACK], http: ["https://hooks.example"] } }
  run: { uses: exec, grants: { process: [echo] } }
  git: { uses: git, grants: { process: [git], fs: [{ path: w, access: rw }] } }
stages:
  - id: all
    steps:
      - id: query
        uses: prom
        with:
          url: http://prom.example:9090
          query: 'up{job="${{ inputs.free }}", ns="${{ inputs.service }}", l="${{ inputs.level }}"}'
      - id: fetch
        uses: check
        with: { url: "https://shop.example/${{ inputs.free }}" }
      - id: get
        uses: kube
        with: { op: get, namespace: "${{ inputs.free }}", resource: deployments, name: "${{ steps.query.outputs.value }}" }
      - id: tell
        uses: say
        with:
          channel: slack
          webhook_secret: SLACK
          title: "${{ inputs.bounded }}"
          text: "${{ inputs.free }} and ${{ inputs.bounded }}"
          fields: { who: "${{ inputs.free }}" }
      - id: echo
        uses: run
        with: { program: echo, args: ["${{ inputs.free }}", "${{ inputs.service }}"] }
      - id: clone
        uses: git
        with: { op: clone, repo: w/c, url: "${{ inputs.free }}" }
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let out = runner(&["validate", path]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let noted: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("may be any text"))
        .collect();
    for (line, what) in [
        (
            ":22:18:",
            "input `free` reaches a query (plugin `prometheus`)",
        ),
        (
            ":25:22:",
            "input `free` reaches a URL (plugin `http-check`)",
        ),
        (
            ":28:37:",
            "input `free` reaches an object's name (plugin `kubectl`)",
        ),
        (
            ":35:17:",
            "input `free` reaches chat text (plugin `notify`)",
        ),
        (
            ":36:26:",
            "input `free` reaches chat text (plugin `notify`)",
        ),
        (
            ":39:39:",
            "input `free` reaches a command line (plugin `exec`)",
        ),
        (":42:44:", "input `free` reaches a URL (plugin `git`)"),
    ] {
        assert!(
            noted.iter().any(|l| l.contains(line) && l.contains(what)),
            "no note {line} {what} in:\n{err}"
        );
    }
    assert_eq!(noted.len(), 7, "only `free`, once per field:\n{err}");
    assert!(
        noted.iter().all(|l| l.contains("give `inputs.free` a")),
        "{err}"
    );

    for shipped in [
        "playbooks/canary.yaml",
        "playbooks/hotfix.yaml",
        "playbooks/rollback.yaml",
        "playbooks/postmortem.yaml",
    ] {
        let out = runner(&["validate", shipped]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{shipped}: {err}");
        assert!(!err.contains("may be any text"), "{shipped}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
