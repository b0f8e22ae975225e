//! `runner exec` and `runner plugins`: the commands that load WebAssembly.

use std::io::Write;

use super::{EXIT_INVALID, EXIT_OK, ExecArgs, Output, invalid, load_and_plan, print};
use crate::caps::secrets::SecretSource;
use crate::engine::{self, Executor, StepRecord};
use crate::host::cache::ComponentCache;
use crate::host::runtime::Runtime;
use crate::host::{self, resolve};
use crate::playbook;

/// Exit code: the run failed (a step or gate failed; handlers ran).
pub const EXIT_FAILED: u8 = 1;

fn tokio() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a single-threaded tokio runtime can always be built")
}

fn runtime() -> Result<Runtime, u8> {
    Runtime::new(ComponentCache::default_dir()).map_err(|e| {
        eprintln!("cannot start the WebAssembly runtime: {e:#}");
        EXIT_INVALID
    })
}

pub fn exec(args: &ExecArgs) -> u8 {
    let (file, output) = (args.run.file.as_path(), args.run.output);
    let secrets = match &args.secrets {
        None => SecretSource::environment(),
        Some(path) => match SecretSource::with_file(path) {
            Ok(s) => s,
            Err(e) => return invalid(file, &[e]),
        },
    };
    let (validated, plan) = match load_and_plan(&args.run) {
        Ok(vp) => vp,
        Err(code) => return code,
    };
    let unsupported = engine::unsupported(&plan);
    if !unsupported.is_empty() {
        let mut lines: Vec<String> = unsupported
            .into_iter()
            .map(|u| format!("{u}, which this runner cannot execute yet"))
            .collect();
        lines.push(
            "watches and approvals run with the full engine; `runner plan` shows the playbook"
                .into(),
        );
        return invalid(file, &lines);
    }
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let rt = tokio();
    let resolved = match rt.block_on(resolve::resolve(&runtime, &validated, &secrets)) {
        Ok(r) => r,
        Err(problems) => return invalid(file, &problems),
    };
    let run_id = run_id();
    let json = output == Output::Json;
    let mut on_step = |r: &StepRecord| {
        let line = if json {
            serde_json::to_string(&serde_json::json!({ "event": "step", "run": run_id, "step": r }))
                .unwrap_or_default()
        } else {
            human(r)
        };
        let _ = writeln!(std::io::stdout().lock(), "{line}");
    };
    let mut executor = Executor {
        runtime: &runtime,
        plugins: &resolved.plugins,
        grants: &resolved.grants,
        memory: &resolved.memory,
        artifacts: super::state_dir().map(|d| d.join("artifacts").join(&run_id)),
        on_step: &mut on_step,
    };
    let report = rt.block_on(executor.run(&plan, &run_id));
    let outcome = if report.succeeded {
        "succeeded"
    } else {
        "failed"
    };
    if json {
        print(&format!(
            "{}\n",
            serde_json::json!({ "event": "run", "run": run_id, "status": outcome })
        ));
    } else {
        print(&format!("run {run_id} {outcome}\n"));
    }
    if report.succeeded {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

fn human(r: &StepRecord) -> String {
    let mark = match r.status {
        "succeeded" => "ok  ",
        "skipped" => "skip",
        _ => "FAIL",
    };
    let place = r
        .stage
        .as_deref()
        .map_or_else(|| r.step.clone(), |s| format!("{s}/{}", r.step));
    let mut line = format!("{mark} {place} ({} ms)", r.duration_ms);
    if !r.summary.is_empty() {
        line.push_str(&format!(": {}", r.summary));
    }
    if let Some(e) = &r.error {
        line.push_str(&format!(": {e}"));
    }
    for a in &r.artifacts {
        if let Some(stored) = &a.stored {
            line.push_str(&format!("\n     artifact {}: {}", a.name, stored.display()));
        }
    }
    line
}

/// A run id: the start time and the process id, unique enough without a journal.
fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}-{}", now.as_secs(), std::process::id())
}

/// The plugin checks of `runner validate`: load each plugin, check `with:`
/// against its input schema and its capabilities against its grants.
pub fn check_plugins(v: playbook::Validated) -> Result<playbook::Validated, playbook::LoadError> {
    let runtime = match Runtime::new(ComponentCache::default_dir()) {
        Ok(r) => r,
        Err(e) => {
            let problem = playbook::Problem {
                pos: v.tree.pos,
                message: format!("cannot start the WebAssembly runtime to check plugins: {e:#}"),
            };
            return Err(playbook::LoadError::Invalid {
                file: Box::new(v.source),
                problems: vec![problem],
            });
        }
    };
    let problems = tokio().block_on(resolve::check(&runtime, &v));
    if problems.is_empty() {
        Ok(v)
    } else {
        Err(playbook::LoadError::Invalid {
            file: Box::new(v.source),
            problems,
        })
    }
}

pub fn plugins_list() -> u8 {
    let mut out = String::new();
    for b in host::BUILTINS {
        let state = if b.wasm.is_some() {
            ""
        } else {
            "  (not in this build yet)"
        };
        out.push_str(&format!("{:<12} {}{state}\n", b.name, b.summary));
    }
    print(&out);
    EXIT_OK
}

pub fn plugins_describe(name: &str) -> u8 {
    let wasm = match host::builtin(name) {
        Some(b) => match b.wasm {
            Some(w) => w.to_vec(),
            None => {
                eprintln!("the built-in plugin `{name}` is not part of this runner build yet");
                return EXIT_INVALID;
            }
        },
        None if name.ends_with(".wasm") => match std::fs::read(name) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("cannot read `{name}`: {e}");
                return EXIT_INVALID;
            }
        },
        None => {
            eprintln!(
                "no built-in plugin `{name}`; `runner plugins list` shows them, or give a path to a .wasm file"
            );
            return EXIT_INVALID;
        }
    };
    let runtime = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    match tokio().block_on(runtime.load(&wasm)) {
        Ok(p) => {
            let mut v = serde_json::to_value(&p.description).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                m.insert("sha256".into(), p.sha256.clone().into());
            }
            print(&format!(
                "{}\n",
                serde_json::to_string_pretty(&v).unwrap_or_default()
            ));
            EXIT_OK
        }
        Err(e) => {
            eprintln!("plugin `{name}` {e}");
            EXIT_INVALID
        }
    }
}
