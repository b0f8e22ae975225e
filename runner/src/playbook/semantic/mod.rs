//! Checks the schema cannot express: unique ids, references that resolve, CEL that
//! compiles, durations that parse, `needs` without cycles, plugins that exist,
//! grants that are well formed.
//!
//! Everything is reported by path into the document, so each problem points at the
//! key or value to fix.
//!
//! The walk over the document is here (ids, run settings, stages, steps,
//! watches); what each place holds is checked by the file of its idea:
//! [`inputs`] (declarations and their rules), [`plugins`] (declarations and
//! grants), [`needs`] (the order of a stage's steps) and [`expressions`] (CEL
//! and `${{ }}`, and what each may read where it stands).

mod expressions;
mod inputs;
mod needs;
mod plugins;

use std::collections::{HashMap, HashSet};

use super::Problem;
use super::model::{Playbook, Stage, Step, StepKind, Watch};
use super::scalars::{DurationSpec, parse_duration};
use super::source::Source;
use super::suggest::did_you_mean;
use super::yaml::{Node, Path, Pos, Target};
use crate::builtins;
use crate::expr::{self, Reference};

/// Fields of `steps.ID` that expressions may read.
pub const STEP_FIELDS: &[&str] = &["outputs", "status", "duration", "attempts", "summary"];
/// Fields of `stages.ID` that expressions may read.
pub const STAGE_FIELDS: &[&str] = &["status", "duration"];
/// Fields of `run` that expressions may read.
pub const RUN_FIELDS: &[&str] = &[
    "id",
    "playbook",
    "started_at",
    "elapsed",
    "budget_left",
    "status",
    "url",
];

/// What validation learnt of one distinct expression.
struct Checked {
    references: Vec<Reference>,
    /// Why it cannot run as a `${{ }}` value, with its byte offset.
    as_value: Option<(usize, String)>,
    /// Why it cannot run as a condition (`if`, gates, watches).
    as_condition: Option<(usize, String)>,
}

pub fn check(pb: &Playbook, tree: &Node, source: &Source) -> Vec<Problem> {
    let mut c = Checker {
        pb,
        tree,
        source,
        problems: Vec::new(),
        steps: HashMap::new(),
        compiled: HashMap::new(),
    };
    c.inputs();
    c.plugins();
    c.collect_ids();
    c.run_settings();
    let mut earlier: HashSet<&str> = HashSet::new();
    let mut earlier_stages: HashSet<&str> = HashSet::new();
    for (i, stage) in pb.stages.iter().enumerate() {
        c.stage(
            stage,
            &Path::root().key("stages").index(i),
            &earlier,
            &earlier_stages,
        );
        earlier.extend(stage.steps.iter().map(|s| s.id.as_str()));
        earlier_stages.insert(stage.id.as_str());
    }
    c.handler_lists(&pb.handlers, &Path::root().key("handlers"));
    let mut problems = c.problems;
    problems.sort();
    problems.dedup();
    problems
}

/// A step seen within its stage: which steps of the stage it waits for.
#[derive(Clone, Copy)]
struct StageView<'s> {
    index: &'s HashMap<&'s str, usize>,
    deps: &'s [Vec<usize>],
    me: usize,
}

impl StageView<'_> {
    /// Whether step `id` of this stage has finished whenever this step runs: it is
    /// reachable through the dependencies.
    fn finished_before(&self, id: &str) -> bool {
        let Some(&target) = self.index.get(id) else {
            return false;
        };
        let mut seen = vec![false; self.deps.len()];
        let mut todo = self.deps[self.me].clone();
        while let Some(n) = todo.pop() {
            if n == target {
                return true;
            }
            if !std::mem::replace(&mut seen[n], true) {
                todo.extend(&self.deps[n]);
            }
        }
        false
    }
}

/// What an expression may see at its place in the playbook.
#[derive(Clone, Copy)]
struct Scope<'s> {
    /// Steps of earlier stages, whose results exist here; `None` means any step
    /// (handlers).
    steps: Option<&'s HashSet<&'s str>>,
    /// The step's own stage, for the steps of it that finish before this point.
    stage: Option<StageView<'s>>,
    /// Stages that have finished here; `None` means any stage (handlers).
    stages: Option<&'s HashSet<&'s str>>,
    /// `result` (the current measurement) is readable: watch conditions only.
    result: bool,
    /// Only `inputs` (and `run.playbook`): values fixed before the run starts.
    static_only: bool,
}

impl Scope<'_> {
    const STATIC: Scope<'static> = Scope {
        steps: None,
        stage: None,
        stages: None,
        result: false,
        static_only: true,
    };
}

struct Checker<'a> {
    pb: &'a Playbook,
    tree: &'a Node,
    source: &'a Source,
    problems: Vec<Problem>,
    /// Every step id (main and handler steps), with the path of its first definition.
    steps: HashMap<&'a str, Path>,
    /// What each distinct expression reads, or why it does not compile. Playbooks
    /// repeat expressions (`${{ inputs.service }}`), so each is compiled once.
    compiled: HashMap<String, Result<Checked, expr::SyntaxError>>,
}

impl<'a> Checker<'a> {
    fn report(&mut self, path: &Path, target: Target, message: impl Into<String>) {
        self.problems
            .push(Problem::at(self.tree, path, target, message.into()));
    }

    fn report_at(&mut self, pos: Pos, message: impl Into<String>) {
        self.problems.push(Problem {
            pos,
            message: message.into(),
        });
    }

    fn ident_key(&mut self, name: &str, path: &Path, what: &str) {
        let ok = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            self.report(path, Target::Key, format!(
                "`{name}` is not a valid {what} name; use lower case letters, digits and `_`, starting with a letter (it is used as a name in expressions)"));
        }
    }

    // ----- ids ----------------------------------------------------------------

    fn collect_ids(&mut self) {
        let mut stage_ids: HashMap<&str, Path> = HashMap::new();
        let mut all: Vec<(&'a Step, Path)> = Vec::new();
        for (i, stage) in self.pb.stages.iter().enumerate() {
            let sp = Path::root().key("stages").index(i);
            if let Some(first) = stage_ids.get(stage.id.as_str()) {
                let line = self.tree.locate(first, Target::Value).line;
                self.report(
                    &sp.key("id"),
                    Target::Value,
                    format!(
                        "stage id `{}` is already used on line {line}; stage ids must be unique",
                        stage.id
                    ),
                );
            } else {
                stage_ids.insert(stage.id.as_str(), sp.clone());
            }
            all.extend(
                stage
                    .steps
                    .iter()
                    .enumerate()
                    .map(|(j, s)| (s, sp.key("steps").index(j))),
            );
            for (key, list) in stage.handlers.lists() {
                all.extend(
                    list.iter()
                        .enumerate()
                        .map(|(j, s)| (s, sp.key("handlers").key(key).index(j))),
                );
            }
        }
        for (key, list) in self.pb.handlers.lists() {
            all.extend(
                list.iter()
                    .enumerate()
                    .map(|(j, s)| (s, Path::root().key("handlers").key(key).index(j))),
            );
        }
        for (step, path) in all {
            if let Some(first) = self.steps.get(step.id.as_str()) {
                let line = self.tree.locate(first, Target::Value).line;
                self.report(&path.key("id"), Target::Value, format!(
                    "step id `{}` is already used on line {line}; step ids must be unique in the playbook", step.id));
            } else {
                self.steps.insert(step.id.as_str(), path);
            }
        }
    }

    // ----- run-level settings -------------------------------------------------

    fn run_settings(&mut self) {
        let root = Path::root();
        if let Some(t) = &self.pb.timeout {
            self.duration(t, &root.key("timeout"));
        }
        if let Some(b) = &self.pb.budget {
            self.duration(b, &root.key("budget"));
        }
        if let Some(c) = &self.pb.concurrency {
            self.template(
                c.group.as_str(),
                &root.key("concurrency").key("group"),
                Scope::STATIC,
            );
        }
    }

    fn duration(&mut self, d: &DurationSpec, path: &Path) {
        let text = d.as_str();
        match expr::whole_expression(text) {
            Some(_) => self.template(text, path, Scope::STATIC),
            None => {
                if let Err(e) = parse_duration(text) {
                    self.report(path, Target::Value, e.to_string());
                }
            }
        }
    }

    // ----- stages and steps ---------------------------------------------------

    fn stage(
        &mut self,
        stage: &'a Stage,
        path: &Path,
        earlier: &HashSet<&'a str>,
        earlier_stages: &HashSet<&'a str>,
    ) {
        let scope = Scope {
            steps: Some(earlier),
            stage: None,
            stages: Some(earlier_stages),
            result: false,
            static_only: false,
        };
        if let Some(cond) = &stage.condition {
            self.condition(cond.as_str(), &path.key("if"), scope);
        }
        if let Some(t) = &stage.timeout {
            self.duration(t, &path.key("timeout"));
        }
        if let Some(b) = &stage.budget {
            self.duration(b, &path.key("budget"));
        }
        let steps_path = path.key("steps");
        let deps = self.dependencies(&stage.steps, &steps_path);
        let index: HashMap<&str, usize> = stage
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        for (i, step) in stage.steps.iter().enumerate() {
            let scope = Scope {
                stage: Some(StageView {
                    index: &index,
                    deps: &deps,
                    me: i,
                }),
                ..scope
            };
            self.step(step, &steps_path.index(i), scope, false);
        }
        self.handler_lists(&stage.handlers, &path.key("handlers"));
    }

    fn handler_lists(&mut self, handlers: &'a super::model::Handlers, path: &Path) {
        let scope = Scope {
            steps: None,
            stage: None,
            stages: None,
            result: false,
            static_only: false,
        };
        for (key, list) in handlers.lists() {
            for (i, step) in list.iter().enumerate() {
                self.step(step, &path.key(key).index(i), scope, true);
            }
        }
    }

    fn step(&mut self, step: &'a Step, path: &Path, scope: Scope<'_>, handler: bool) {
        self.ident_key(step.id.as_str(), &path.key("id"), "step");
        let kinds: Vec<&str> = [
            ("uses", step.uses.is_some()),
            ("gate", step.gate.is_some()),
            ("approval", step.approval.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect();
        match step.kind() {
            None if kinds.is_empty() => self.report(path, Target::Value, format!(
                "step `{}` does nothing; give it exactly one of `uses` (run a plugin), `gate` or `approval`", step.id)),
            None => self.report(&path.key(kinds[1]), Target::Key, format!(
                "step `{}` has both `{}` and `{}`; a step does exactly one thing, so split it into two steps", step.id, kinds[0], kinds[1])),
            Some(StepKind::Plugin(name)) => {
                if !self.pb.plugins.contains_key(name.as_str()) {
                    let hint = did_you_mean(name.as_str(), self.pb.plugins.keys().map(|k| k.as_str()))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| if builtins::builtin(name.as_str()).is_some() {
                            format!("declare it first: `plugins: {{ {name}: {{ uses: {name} }} }}`, with the grants it needs")
                        } else {
                            "declare it under `plugins:` with the grants it needs".to_owned()
                        });
                    self.report(&path.key("uses"), Target::Value, format!("step uses `{name}`, which is not declared under `plugins`; {hint}"));
                }
                for (k, v) in &step.with {
                    self.with_value(v, &path.key("with").key(k), scope);
                }
                if let Some(w) = &step.watch {
                    self.watch(w, &path.key("watch"), scope);
                }
            }
            Some(StepKind::Gate(gate)) => {
                self.plugin_only(step, path);
                self.condition(gate.pass.as_str(), &path.key("gate").key("pass"), scope);
                if let Some(f) = &gate.fail {
                    self.condition(f.as_str(), &path.key("gate").key("fail"), scope);
                }
            }
            Some(StepKind::Approval(a)) => {
                self.plugin_only(step, path);
                let ap = path.key("approval");
                self.template(a.prompt.as_str(), &ap.key("prompt"), scope);
                self.duration(&a.timeout, &ap.key("timeout"));
            }
        }
        if handler && step.needs.is_some() {
            self.report(
                &path.key("needs"),
                Target::Key,
                "handler steps run in the order they are listed; remove `needs`",
            );
        }
        if let Some(cond) = &step.condition {
            self.condition(cond.as_str(), &path.key("if"), scope);
        }
        if let Some(t) = &step.timeout {
            self.duration(t, &path.key("timeout"));
        }
        if let Some(r) = &step.retry {
            for (key, d) in [("delay", &r.delay), ("max_delay", &r.max_delay)] {
                if let Some(d) = d {
                    self.duration(d, &path.key("retry").key(key));
                }
            }
        }
    }

    /// `with`, `watch` and `retry` only mean something for plugin steps.
    fn plugin_only(&mut self, step: &Step, path: &Path) {
        for (key, present) in [
            ("with", !step.with.is_empty()),
            ("watch", step.watch.is_some()),
            ("retry", step.retry.is_some()),
        ] {
            if present {
                self.report(
                    &path.key(key),
                    Target::Key,
                    format!("`{key}` only applies to steps that run a plugin (`uses`)"),
                );
            }
        }
    }

    fn watch(&mut self, w: &Watch, path: &Path, scope: Scope<'_>) {
        self.duration(&w.interval, &path.key("interval"));
        match (&w.count, &w.duration) {
            (None, None) => self.report(path, Target::Value, "a watch needs `count` (number of measurements) or `duration` (how long to measure)"),
            (Some(_), Some(_)) => self.report(&path.key("duration"), Target::Key, "a watch takes `count` or `duration`, not both"),
            (None, Some(d)) => self.duration(d, &path.key("duration")),
            (Some(_), None) => {}
        }
        if let Ok(iv) = parse_duration(w.interval.as_str())
            && iv.is_zero()
        {
            self.report(
                &path.key("interval"),
                Target::Value,
                "the interval must be longer than zero",
            );
        }
        let scope = Scope {
            result: true,
            ..scope
        };
        for (key, cond) in [("success", &w.success), ("failure", &w.failure)] {
            if let Some(c) = cond {
                self.condition(c.as_str(), &path.key(key), scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(yaml: &str) -> Vec<String> {
        let source =
            Source::from_bytes("t.yaml".into(), ".".into(), yaml.as_bytes().to_vec()).unwrap();
        match crate::playbook::validate(source) {
            Ok(_) => Vec::new(),
            Err(crate::playbook::LoadError::Invalid { problems, .. }) => problems
                .into_iter()
                .map(|p| format!("{}:{} {}", p.pos.line, p.pos.col, p.message))
                .collect(),
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn needs_decides_which_results_a_step_can_read() {
        let doc = |expr: &str| {
            format!(
                "version: 1\nname: t\nplugins: {{p: {{uses: exec}}}}\nstages:\n  - id: s\n    steps:\n      - {{id: a, uses: p, needs: []}}\n      - {{id: b, uses: p, needs: []}}\n      - {{id: c, uses: p, needs: [a]}}\n      - {{id: d, uses: p, needs: [c], if: \"{expr}\"}}\n"
            )
        };
        // Transitively through c: a has finished when d runs.
        assert_eq!(
            problems(&doc("steps.a.status == 'succeeded'")),
            Vec::<String>::new()
        );
        // b runs in parallel with c and d: its result may not exist yet.
        let p = problems(&doc("steps.b.status == 'succeeded'"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("10:") && p[0].contains("step `b` has not run yet"),
            "{p:?}"
        );
    }

    #[test]
    fn grant_problems_are_reported_where_each_part_is_written() {
        let p = problems(
            "version: 1\nname: t\nplugins:\n  k:\n    uses: exec\n    grants:\n      kube: [{namespaces: [prod, \"a b\"], resources: [pods], verbs: [get]}]\n      process: [{run: sh, env: [CI, LD_PRELOAD]}, \"\"]\nstages:\n  - id: s\n    steps:\n      - {id: a, uses: k}\n",
        );
        assert_eq!(p.len(), 3, "{p:#?}");
        assert_eq!(p[0], "7:34 `a b` is not a valid entry of `namespaces`");
        assert!(
            p[1].starts_with("8:37 `LD_PRELOAD` cannot be granted"),
            "{p:#?}"
        );
        assert!(p[2].starts_with("8:51 `` is not a process grant"), "{p:#?}");
    }
}
