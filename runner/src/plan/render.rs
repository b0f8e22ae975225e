//! The plan as text for a terminal: compact, one line per decision, grants spelled
//! out, and every limit (timeout, budget, retry, watch) next to the step it bounds.

use std::fmt::Write;

use serde_json::Value;

use super::{Plan, PlanHandlers, PlanStep, Runs};
use crate::playbook::model::{FsAccess, Grants, OnInconclusive, OnTimeout, Watch};

/// Renders `plan` for people.
pub fn render_text(plan: &Plan) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Plan for `{}` ({})", plan.playbook, plan.file);
    if let Some(d) = &plan.description {
        let _ = writeln!(o, "  {}", d.trim());
    }
    let mut limits = Vec::new();
    if let Some(t) = &plan.timeout {
        limits.push(format!("timeout {t}"));
    }
    if let Some(b) = &plan.budget {
        limits.push(format!("budget {b}"));
    }
    limits.push(format!("up to {} steps at once", plan.max_parallel));
    if let Some(c) = &plan.concurrency {
        limits.push(
            format!(
                "concurrency group `{}` ({:?} on conflict)",
                c.group, c.on_conflict
            )
            .to_lowercase(),
        );
    }
    let _ = writeln!(o, "  run: {}", limits.join(", "));

    if !plan.inputs.is_empty() {
        let _ = writeln!(o, "\nInputs");
        let width = plan.inputs.iter().map(|i| i.name.len()).max().unwrap_or(0);
        for i in &plan.inputs {
            let origin = match i.origin {
                super::inputs::Origin::Given => "given",
                super::inputs::Origin::Default => "default",
            };
            let _ = writeln!(o, "  {:width$}  {}  ({origin})", i.name, show(&i.value));
        }
    }

    let _ = writeln!(o, "\nPlugins");
    if plan.plugins.is_empty() {
        let _ = writeln!(o, "  none");
    }
    for p in &plan.plugins {
        let pin = p
            .sha256
            .as_deref()
            .map(|s| format!(", sha256 {}…", &s[..12.min(s.len())]))
            .unwrap_or_default();
        // An OCI reference is shown without its digest, then the digest in
        // full: it is what decides which bytes run.
        let (uses, pin) = match &p.digest {
            Some(d) => (
                p.uses.split('@').next().unwrap_or(&p.uses),
                format!(", pinned to {d}"),
            ),
            None => (p.uses.as_str(), pin),
        };
        let _ = writeln!(
            o,
            "  {} = {uses} ({}{pin}), memory {}",
            p.name, p.source, p.memory
        );
        for line in grant_lines(&p.grants) {
            let _ = writeln!(o, "      may {line}");
        }
        if p.grants.is_empty() {
            let _ = writeln!(
                o,
                "      may only compute, log and return outputs (no grants)"
            );
        }
    }

    let _ = writeln!(o, "\nStages");
    for (n, stage) in plan.stages.iter().enumerate() {
        let mut head = format!("  {}. {}", n + 1, stage.id);
        if let Some(name) = &stage.name {
            let _ = write!(head, " — {name}");
        }
        let mut limits = Vec::new();
        if let Some(b) = &stage.budget {
            limits.push(format!("budget {b}"));
        }
        if let Some(t) = &stage.timeout {
            limits.push(format!("timeout {t}"));
        }
        if !limits.is_empty() {
            let _ = write!(head, "  [{}]", limits.join(", "));
        }
        let _ = writeln!(
            o,
            "{head}{}",
            runs_note(stage.runs, stage.condition.as_deref())
        );
        for (m, step) in stage.steps.iter().enumerate() {
            step_lines(&mut o, &format!("{}.{}", n + 1, m + 1), step, true);
        }
        handler_lines(&mut o, &stage.handlers, "     ");
    }
    if !handler_empty(&plan.handlers) {
        let _ = writeln!(o, "\nRun handlers");
        handler_lines(&mut o, &plan.handlers, " ");
    }
    o
}

fn handler_empty(h: &PlanHandlers) -> bool {
    h.on_failure.is_empty() && h.on_budget_exceeded.is_empty() && h.finally.is_empty()
}

fn handler_lines(o: &mut String, h: &PlanHandlers, indent: &str) {
    for (name, list) in [
        ("on_failure", &h.on_failure),
        ("on_budget_exceeded", &h.on_budget_exceeded),
        ("finally", &h.finally),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(o, "{indent} {name}:");
        for step in list {
            step_lines(o, &format!("{indent}  -"), step, false);
        }
    }
}

fn runs_note(runs: Runs, condition: Option<&str>) -> String {
    match (runs, condition) {
        (Runs::No, Some(c)) => format!("  SKIPPED (if: {c})"),
        (Runs::Depends, Some(c)) => format!("  (if: {c})"),
        _ => String::new(),
    }
}

fn step_lines(o: &mut String, number: &str, p: &PlanStep, show_after: bool) {
    let s = &p.step;
    let what = match p.kind {
        "plugin" => format!(
            "run {}",
            s.uses.as_ref().map(ToString::to_string).unwrap_or_default()
        ),
        other => other.to_owned(),
    };
    let mut line = format!("     {number} {}  {what}", s.id);
    if let Some(name) = &s.name {
        let _ = write!(line, " — {name}");
    }
    let cond = s
        .condition
        .as_ref()
        .map(|c| crate::expr::unwrap_condition(c.as_str()).to_owned());
    let _ = writeln!(o, "{line}{}", runs_note(p.runs, cond.as_deref()));
    let pad = "          ";
    let mut facts = Vec::new();
    if show_after && s.needs.is_some() {
        facts.push(if p.after.is_empty() {
            "starts with the stage".to_owned()
        } else {
            format!("after {}", p.after.join(", "))
        });
    }
    if let Some(t) = &s.timeout {
        facts.push(format!("timeout {t}"));
    }
    if let Some(r) = &s.retry {
        let delay = r.delay.as_ref().map_or("1s", |d| d.as_str());
        facts.push(format!(
            "up to {} attempts, first delay {delay}",
            r.max_attempts
        ));
    }
    if s.continue_on_error {
        facts.push("continues on error".to_owned());
    }
    if !facts.is_empty() {
        let _ = writeln!(o, "{pad}{}", facts.join(", "));
    }
    if !s.with.is_empty() {
        let with: Vec<String> = s
            .with
            .iter()
            .map(|(k, v)| format!("{k}: {}", show(v)))
            .collect();
        let _ = writeln!(o, "{pad}with {}", with.join(", "));
    }
    if let Some(w) = &s.watch {
        let _ = writeln!(o, "{pad}{}", watch_line(w));
    }
    if let Some(g) = &s.gate {
        let mut line = format!("pass if {}", crate::expr::unwrap_condition(g.pass.as_str()));
        if let Some(f) = &g.fail {
            let _ = write!(
                line,
                "; fail if {}",
                crate::expr::unwrap_condition(f.as_str())
            );
            let _ = write!(
                line,
                "; otherwise inconclusive → {}",
                inconclusive(g.on_inconclusive)
            );
        } else {
            line.push_str("; otherwise fail");
        }
        let _ = writeln!(o, "{pad}{line}");
    }
    if let Some(a) = &s.approval {
        let who = if a.approvers.is_empty() {
            "anyone".to_owned()
        } else {
            a.approvers.join(" and ")
        };
        let _ = writeln!(o, "{pad}asks {who}: \"{}\"", a.prompt.as_str().trim());
        let then = match a.on_timeout {
            OnTimeout::Continue => "continues as if approved",
            OnTimeout::Fail => "fails the step",
            OnTimeout::Rollback => "fails the run (rollback)",
        };
        let _ = writeln!(o, "{pad}waits {}; if nobody answers, {then}", a.timeout);
    }
}

fn inconclusive(v: OnInconclusive) -> &'static str {
    match v {
        OnInconclusive::Approve => "ask for approval",
        OnInconclusive::Fail => "fail",
        OnInconclusive::Continue => "continue",
    }
}

fn watch_line(w: &Watch) -> String {
    let span = match (&w.count, &w.duration) {
        (Some(c), _) => format!("{c} times"),
        (None, Some(d)) => format!("for {d}"),
        _ => String::new(),
    };
    let mut line = format!("watch every {} {span}", w.interval);
    if let Some(f) = &w.failure {
        let _ = write!(
            line,
            "; failure: {}",
            crate::expr::unwrap_condition(f.as_str())
        );
    }
    if let Some(s) = &w.success {
        let _ = write!(
            line,
            "; success: {}",
            crate::expr::unwrap_condition(s.as_str())
        );
    }
    let mut limits = Vec::new();
    if let Some(total) = w.effective_failure_limit() {
        limits.push(format!("{} failure(s)", total + 1));
    }
    if let Some(c) = w.consecutive_failure_limit {
        limits.push(format!("{} failures in a row", c + 1));
    }
    limits.push(format!(
        "{} plugin errors in a row",
        w.consecutive_error_limit.unwrap_or(4) + 1
    ));
    let _ = write!(line, "; fails on {}", limits.join(" or "));
    line
}

fn grant_lines(g: &Grants) -> Vec<String> {
    // What was written: the entries the capabilities parsed, shown as the user
    // wrote them.
    let mut lines = Vec::new();
    if !g.http.is_empty() {
        let hosts: Vec<&str> = g.http.iter().map(|e| e.written().as_str()).collect();
        lines.push(format!("reach {}", hosts.join(", ")));
    }
    if !g.tcp.is_empty() {
        let endpoints: Vec<&str> = g.tcp.iter().map(|e| e.written().as_str()).collect();
        lines.push(format!("open TCP connections to {}", endpoints.join(", ")));
    }
    for f in g.fs.iter().map(|e| e.written()) {
        let mode = if f.access == FsAccess::Rw {
            "read and write"
        } else {
            "read"
        };
        lines.push(format!("{mode} {}", f.path));
    }
    if !g.process.is_empty() {
        let programs: Vec<String> = g
            .process
            .iter()
            .map(|e| {
                let p = e.written();
                if p.env().is_empty() {
                    p.run().to_owned()
                } else {
                    format!("{} (env: {})", p.run(), p.env().join(", "))
                }
            })
            .collect();
        lines.push(format!("run {}", programs.join(", ")));
        lines.push(format!(
            "programs get none of the runner's environment; the plugin may set {}{}",
            crate::caps::process::DEFAULT_ENV.join(", "),
            if g.process.iter().any(|e| !e.written().env().is_empty()) {
                " and the names after env:"
            } else {
                ""
            }
        ));
    }
    for k in g.kube.iter().map(|e| e.written()) {
        let verbs: Vec<String> = k
            .verbs
            .iter()
            .map(|v| format!("{v:?}").to_lowercase())
            .collect();
        let names = if k.names.is_empty() {
            String::new()
        } else {
            format!(" named {}", k.names.join(", "))
        };
        lines.push(format!(
            "{} {}{names} in namespace(s) {}",
            verbs.join("/"),
            k.resources.join(", "),
            k.namespaces.join(", ")
        ));
    }
    if !g.secrets.is_empty() {
        let names: Vec<&str> = g.secrets.iter().map(|e| e.written().as_str()).collect();
        lines.push(format!("read secret(s) {}", names.join(", ")));
    }
    lines
}

/// A JSON value in one line, strings unquoted when they are simple.
fn show(v: &Value) -> String {
    match v {
        Value::String(s) if !s.is_empty() && !s.contains(['\n', ',', ':']) => s.clone(),
        Value::Null => "(not set)".to_owned(),
        other => other.to_string(),
    }
}
