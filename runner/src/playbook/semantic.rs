//! Checks the schema cannot express: unique ids, references that resolve, CEL that
//! compiles, durations that parse, `needs` without cycles, plugins that exist,
//! grants that are well formed.
//!
//! Everything is reported by path into the document, so each problem points at the
//! key or value to fix.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::Problem;
use super::model::{Grants, InputType, Playbook, Stage, Step, StepKind, Watch};
use super::scalars::{DurationSpec, parse_duration};
use super::source::Source;
use super::suggest::did_you_mean;
use super::yaml::{Node, Path, Pos, Target};
use crate::expr::{self, Piece, Reference};
use crate::{builtins, oci_ref};

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

    // ----- inputs -------------------------------------------------------------

    fn inputs(&mut self) {
        for (name, input) in &self.pb.inputs {
            let path = Path::root().key("inputs").key(name.as_str());
            self.ident_key(name.as_str(), &path, "input");
            if input.required && input.default.is_some() {
                self.report(&path.key("required"), Target::Key,
                    format!("input `{name}` is required and has a default; an input with a default is never missing, so remove one of them"));
            }
            if let Some(allowed) = &input.allowed {
                for (i, v) in allowed.iter().enumerate() {
                    if let Err(e) = check_value(input.kind, v) {
                        self.report(
                            &path.key("enum").index(i),
                            Target::Value,
                            format!("enum value {e}"),
                        );
                    }
                }
            }
            self.input_rules(input, &path);
            if let Some(default) = &input.default {
                let at = path.key("default");
                match check_value(input.kind, default)
                    .map_err(|e| format!("default {e}"))
                    .and_then(|()| {
                        super::constraints::check(input, default)
                            .map_err(|e| format!("the default breaks the input's own rules: {e}"))
                    }) {
                    Err(e) => self.report(&at, Target::Value, e),
                    Ok(()) => {
                        if let Some(allowed) = &input.allowed
                            && !allowed.contains(default)
                        {
                            self.report(
                                &at,
                                Target::Value,
                                format!(
                                    "default {default} is not one of the allowed values ({})",
                                    allowed
                                        .iter()
                                        .map(Value::to_string)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// The rules of an input (`pattern`, `format`, ranges …) fit its type and
    /// each other.
    fn input_rules(&mut self, input: &super::model::Input, path: &Path) {
        let string_only = [
            ("pattern", input.pattern.is_some()),
            ("format", input.format.is_some()),
            ("allow", input.allow.is_some()),
            ("max_length", input.max_length.is_some()),
            ("single_line", input.single_line.is_some()),
        ];
        let number_only = [
            ("minimum", input.minimum.is_some()),
            ("maximum", input.maximum.is_some()),
        ];
        for (key, set) in string_only {
            if set && input.kind != InputType::String {
                self.report(
                    &path.key(key),
                    Target::Key,
                    format!("`{key}` applies to string inputs only"),
                );
            }
        }
        for (key, set) in number_only {
            if set && input.kind != InputType::Number {
                self.report(
                    &path.key(key),
                    Target::Key,
                    format!("`{key}` applies to number inputs only"),
                );
            }
        }
        if let (Some(min), Some(max)) = (input.minimum, input.maximum)
            && min > max
        {
            self.report(
                &path.key("minimum"),
                Target::Value,
                format!("`minimum` {min} is above `maximum` {max}"),
            );
        }
        if let Some(p) = &input.pattern
            && let Err(e) = super::constraints::anchored(p)
        {
            self.report(
                &path.key("pattern"),
                Target::Value,
                format!(
                    "the pattern does not compile: {}",
                    e.to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .trim_start_matches("error: ")
                ),
            );
        }
        if let Some(list) = &input.allow {
            for (i, entry) in list.iter().enumerate() {
                if let Some(e) = super::constraints::allow_entry_problem(input.format, entry) {
                    self.report(&path.key("allow").index(i), Target::Value, e);
                }
            }
        }
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

    // ----- plugins and grants -------------------------------------------------

    fn plugins(&mut self) {
        for (name, decl) in &self.pb.plugins {
            let path = Path::root().key("plugins").key(name.as_str());
            self.ident_key(name.as_str(), &path, "plugin");
            let uses = decl.uses.as_str();
            let is_path = uses.ends_with(".wasm") || uses.contains('/');
            if uses.starts_with(oci_ref::SCHEME) {
                self.plugin_oci(uses, decl.sha256.is_some(), &path);
            } else if is_path {
                self.plugin_file(uses, decl.sha256.as_deref(), &path);
            } else {
                if builtins::builtin(uses).is_none() {
                    let hint = did_you_mean(uses, builtins::BUILTINS.iter().map(|b| b.name))
                        .map(|s| format!("did you mean `{s}`?"))
                        .unwrap_or_else(|| format!("built-in plugins are: {}; a plugin file is given by a path ending in `.wasm`",
                            builtins::BUILTINS.iter().map(|b| b.name).collect::<Vec<_>>().join(", ")));
                    self.report(
                        &path.key("uses"),
                        Target::Value,
                        format!("unknown plugin `{uses}`; {hint}"),
                    );
                }
                if decl.sha256.is_some() {
                    self.report(&path.key("sha256"), Target::Key,
                        "`sha256` pins a `.wasm` file; built-in plugins are pinned by the runner's own version, so remove it");
                }
            }
            if let Some(mem) = &decl.memory
                && mem
                    .bytes()
                    .is_none_or(|b| !((1 << 20)..=(16 << 30)).contains(&b))
            {
                self.report(
                    &path.key("memory"),
                    Target::Value,
                    format!("memory `{mem}` is outside 1MiB..16GiB"),
                );
            }
            self.grants(&decl.grants, &path.key("grants"));
        }
    }

    /// An `oci://` reference: well formed and pinned by its manifest digest
    /// (nothing is fetched here; `runner validate` fetches when it loads the
    /// plugins).
    fn plugin_oci(&mut self, uses: &str, has_sha256: bool, path: &Path) {
        match oci_ref::OciRef::parse(uses) {
            Err(e) => self.report(&path.key("uses"), Target::Value, e),
            Ok(r) if r.digest.is_none() => {
                let tag = if r.tag.is_some() {
                    String::new()
                } else {
                    ":TAG".to_owned()
                };
                self.report(
                    &path.key("uses"),
                    Target::Value,
                    format!(
                        "`{uses}` is not pinned by digest: a tag can be moved to other content, so a playbook names the manifest's digest, `{uses}{tag}@sha256:…`; `runner plugins pull {uses}` prints it"
                    ),
                );
            }
            Ok(_) => {}
        }
        if has_sha256 {
            self.report(&path.key("sha256"), Target::Key,
                "`sha256` pins a `.wasm` file; an `oci://` plugin is pinned by the `@sha256:` digest in `uses:`, so remove it");
        }
    }

    fn plugin_file(&mut self, uses: &str, pin: Option<&str>, path: &Path) {
        if !uses.ends_with(".wasm") {
            self.report(&path.key("uses"), Target::Value, format!(
                "`{uses}` looks like a path but does not end in `.wasm`; plugins are WebAssembly components"));
            return;
        }
        let file = self.source.dir.join(uses);
        match std::fs::read(&file) {
            Err(e) => self.report(
                &path.key("uses"),
                Target::Value,
                format!(
                    "cannot read plugin `{}`: {e}; paths are relative to the playbook's folder",
                    file.display()
                ),
            ),
            Ok(bytes) => {
                if let Some(pin) = pin {
                    let actual = hex(&Sha256::digest(&bytes));
                    if actual != pin {
                        self.report(&path.key("sha256"), Target::Value, format!(
                            "`{uses}` does not match its pin: its sha256 is {actual}; if the new file is trusted, update the pin"));
                    }
                }
            }
        }
    }

    fn grants(&mut self, g: &Grants, path: &Path) {
        for (i, entry) in g.http.iter().enumerate() {
            if let Err(e) = check_http_grant(entry) {
                self.report(&path.key("http").index(i), Target::Value, e);
            }
        }
        for (i, entry) in g.tcp.iter().enumerate() {
            if let Err(e) = crate::caps::tcp::Endpoint::parse(entry) {
                self.report(&path.key("tcp").index(i), Target::Value, e);
            }
        }
        for (i, entry) in g.process.iter().enumerate() {
            let program = entry.run();
            let words: Vec<&str> = program.split_whitespace().collect();
            let bad_rest = words.iter().rev().skip(1).any(|w| *w == "**");
            let at = match entry {
                crate::playbook::model::ProcessEntry::Program(_) => path.key("process").index(i),
                crate::playbook::model::ProcessEntry::Rule(_) => {
                    path.key("process").index(i).key("run")
                }
            };
            if words.is_empty() || bad_rest {
                self.report(&at, Target::Value, format!(
                    "`{program}` is not a process grant; write a program, optionally followed by one pattern per argument (`*` within an argument, `**` last for any further arguments), like `npm test *`"));
            }
            for (j, name) in entry.env().iter().enumerate() {
                if let Err(e) = crate::caps::process::EnvName::parse(name) {
                    self.report(
                        &path.key("process").index(i).key("env").index(j),
                        Target::Value,
                        e,
                    );
                }
            }
        }
        for (i, name) in g.secrets.iter().enumerate() {
            let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.report(&path.key("secrets").index(i), Target::Value, format!(
                    "`{name}` is not a secret name; use letters, digits and `_` (like `SLACK_WEBHOOK`)"));
            }
        }
        for (i, rule) in g.kube.iter().enumerate() {
            let rp = path.key("kube").index(i);
            for (key, list) in [
                ("namespaces", &rule.namespaces),
                ("resources", &rule.resources),
                ("names", &rule.names),
            ] {
                for (j, v) in list.iter().enumerate() {
                    if v.is_empty() || v.chars().any(char::is_whitespace) {
                        self.report(
                            &rp.key(key).index(j),
                            Target::Value,
                            format!("`{v}` is not a valid entry of `{key}`"),
                        );
                    }
                }
            }
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

    /// For each step of a stage, the indices of the steps it waits for. Reports
    /// unknown, self and duplicate `needs`, and cycles (after which the graph is
    /// treated as having no edges on the cycle, so later checks still run).
    fn dependencies(&mut self, steps: &[Step], path: &Path) -> Vec<Vec<usize>> {
        let index: HashMap<&str, usize> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.as_str(), i))
            .collect();
        let mut deps: Vec<Vec<usize>> = Vec::with_capacity(steps.len());
        for (i, step) in steps.iter().enumerate() {
            let Some(needs) = &step.needs else {
                deps.push(if i == 0 { vec![] } else { vec![i - 1] });
                continue;
            };
            let mut own = Vec::new();
            for (k, need) in needs.iter().enumerate() {
                let np = path.index(i).key("needs").index(k);
                match index.get(need.as_str()) {
                    Some(&j) if j == i => self.report(
                        &np,
                        Target::Value,
                        format!("step `{need}` cannot need itself"),
                    ),
                    Some(&j) if own.contains(&j) => self.report(
                        &np,
                        Target::Value,
                        format!("`{need}` is listed twice in `needs`"),
                    ),
                    Some(&j) => own.push(j),
                    None => {
                        let elsewhere = self.steps.contains_key(need.as_str());
                        let hint = if elsewhere {
                            " (it is in another stage or a handler; `needs` only orders steps of the same stage, earlier stages always finish first)".to_owned()
                        } else {
                            did_you_mean(need.as_str(), index.keys().copied())
                                .map(|s| format!("; did you mean `{s}`?"))
                                .unwrap_or_default()
                        };
                        self.report(
                            &np,
                            Target::Value,
                            format!(
                                "`needs` names `{need}`, which is not a step of this stage{hint}"
                            ),
                        );
                    }
                }
            }
            deps.push(own);
        }
        if let Some(cycle) = find_cycle(&deps) {
            let names: Vec<&str> = cycle
                .iter()
                .chain(cycle.first())
                .map(|&i| steps[i].id.as_str())
                .collect();
            let at = path.index(cycle[0]).key("needs");
            self.report(
                &at,
                Target::Key,
                format!(
                    "`needs` forms a cycle: {}; no step of it could ever start",
                    names.join(" → ")
                ),
            );
            for &i in &cycle {
                deps[i].clear();
            }
        }
        deps
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

    // ----- expressions --------------------------------------------------------

    fn with_value(&mut self, v: &Value, path: &Path, scope: Scope<'_>) {
        match v {
            Value::String(s) => self.template(s, path, scope),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.with_value(item, &path.index(i), scope);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    self.with_value(item, &path.key(k), scope);
                }
            }
            _ => {}
        }
    }

    fn template(&mut self, text: &str, path: &Path, scope: Scope<'_>) {
        match expr::parse_template(text) {
            Err(e) => {
                let pos = self.pos_in(path, text, e.offset);
                self.report_at(pos, e.to_string());
            }
            Ok(pieces) => {
                for piece in pieces {
                    if let Piece::Expr { source, offset } = piece {
                        self.expression(source, offset, text, path, scope, false);
                    }
                }
            }
        }
    }

    fn condition(&mut self, text: &str, path: &Path, scope: Scope<'_>) {
        let inner = expr::unwrap_condition(text);
        let offset = inner.as_ptr() as usize - text.as_ptr() as usize;
        self.expression(inner, offset, text, path, scope, true);
    }

    /// Compiles `source` (found at byte `offset` of the node's string `whole`),
    /// checks what it references and its types; a `condition` must be able to
    /// give a `bool`.
    fn expression(
        &mut self,
        source: &str,
        offset: usize,
        whole: &str,
        path: &Path,
        scope: Scope<'_>,
        condition: bool,
    ) {
        if !self.compiled.contains_key(source) {
            let result = expr::compile(source).map(|c| Checked {
                references: c.references(),
                as_value: c.type_check(false).err(),
                as_condition: c.type_check(true).err(),
            });
            self.compiled.insert(source.to_owned(), result);
        }
        let problems: Vec<(usize, String)> = match &self.compiled[source] {
            Err(e) => vec![(
                byte_offset(source, e.line, e.col),
                format!("invalid expression `{}`: {}", source.trim(), e.message),
            )],
            Ok(checked) => {
                let unresolved: Vec<(usize, String)> = checked
                    .references
                    .iter()
                    .filter_map(|r| {
                        let message = self.reference(r, scope).err()?;
                        // Only now, with a problem to show, is the position worth a re-parse.
                        let at = expr::compile(source).map_or(0, |c| c.offset_of(r));
                        Some((at, message))
                    })
                    .collect();
                let typed = if condition {
                    &checked.as_condition
                } else {
                    &checked.as_value
                };
                match typed {
                    Some((at, message)) if unresolved.is_empty() => {
                        vec![(*at, format!("`{}` cannot run: {message}", source.trim()))]
                    }
                    _ => unresolved,
                }
            }
        };
        for (at, message) in problems {
            let pos = self.pos_in(path, whole, offset + at);
            self.report_at(pos, message);
        }
    }

    fn reference(&self, r: &Reference, scope: Scope<'_>) -> Result<(), String> {
        let field = |i: usize| r.fields.get(i).map(String::as_str);
        if scope.static_only
            && r.root != "inputs"
            && !(r.root == "run" && field(0) == Some("playbook"))
        {
            return Err(format!(
                "`{}` is not known before the run starts; only `inputs` (and `run.playbook`) can be used here",
                r.dotted(2)
            ));
        }
        match r.root.as_str() {
            "inputs" => match field(0) {
                None => Ok(()),
                Some(name) if self.pb.inputs.contains_key(name) => Ok(()),
                Some(name) => Err(format!(
                    "unknown input `{name}`{}",
                    self.hint(name, self.pb.inputs.keys().map(|k| k.as_str()), "inputs")
                )),
            },
            "steps" => {
                let Some(id) = field(0) else { return Ok(()) };
                if !self.steps.contains_key(id) {
                    return Err(format!(
                        "unknown step `{id}`{}",
                        self.hint(id, self.steps.keys().copied(), "steps")
                    ));
                }
                if let Some(earlier) = scope.steps
                    && !earlier.contains(id)
                    && !scope.stage.is_some_and(|s| s.finished_before(id))
                {
                    return Err(format!(
                        "step `{id}` has not run yet at this point; a step can use the results of steps of earlier stages and of the steps it waits for (list `{id}` in `needs`, or move this after it)"
                    ));
                }
                match field(1) {
                    Some(f) if !STEP_FIELDS.contains(&f) => Err(format!(
                        "`steps.{id}` has no field `{f}`{}",
                        self.hint(f, STEP_FIELDS.iter().copied(), "fields")
                    )),
                    _ => Ok(()),
                }
            }
            "stages" => {
                let Some(id) = field(0) else { return Ok(()) };
                let ids: Vec<&str> = self.pb.stages.iter().map(|s| s.id.as_str()).collect();
                if !ids.contains(&id) {
                    return Err(format!(
                        "unknown stage `{id}`{}",
                        self.hint(id, ids.iter().copied(), "stages")
                    ));
                }
                if let Some(done) = scope.stages
                    && !done.contains(id)
                {
                    return Err(format!(
                        "stage `{id}` has not finished at this point; only earlier stages can be read"
                    ));
                }
                match field(1) {
                    Some(f) if !STAGE_FIELDS.contains(&f) => Err(format!(
                        "`stages.{id}` has no field `{f}`{}",
                        self.hint(f, STAGE_FIELDS.iter().copied(), "fields")
                    )),
                    _ => Ok(()),
                }
            }
            "run" => match field(0) {
                Some(f) if !RUN_FIELDS.contains(&f) => Err(format!(
                    "`run` has no field `{f}`{}",
                    self.hint(f, RUN_FIELDS.iter().copied(), "fields")
                )),
                _ => Ok(()),
            },
            "result" if scope.result => Ok(()),
            "result" => Err(
                "`result` exists only in a watch's `success` and `failure` conditions".to_owned(),
            ),
            other => {
                let mut roots = vec!["inputs", "steps", "stages", "run"];
                if scope.result {
                    roots.push("result");
                }
                let hint = did_you_mean(other, roots.iter().copied())
                    .map(|s| format!("did you mean `{s}`? "))
                    .unwrap_or_default();
                Err(format!(
                    "unknown name `{other}`; {hint}expressions can read {}",
                    roots.join(", ")
                ))
            }
        }
    }

    fn hint<'c>(
        &self,
        name: &str,
        candidates: impl Iterator<Item = &'c str> + Clone,
        what: &str,
    ) -> String {
        match did_you_mean(name, candidates.clone()) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => {
                let mut all: Vec<&str> = candidates.collect();
                all.sort_unstable();
                if all.is_empty() || all.len() > 12 {
                    String::new()
                } else {
                    format!("; known {what}: {}", all.join(", "))
                }
            }
        }
    }

    /// The file position of byte `offset` inside the string value at `path`: exact
    /// when the value is written on one line (plain or quoted, without escapes before
    /// the offset), otherwise the start of the value.
    fn pos_in(&self, path: &Path, whole: &str, offset: usize) -> Pos {
        let start = self.tree.locate(path, Target::Value);
        let Some(line) = self.source.line(start.line) else {
            return start;
        };
        let rest: String = line.chars().skip(start.col.saturating_sub(1)).collect();
        let prefix = whole.get(..offset).unwrap_or_default();
        if prefix.contains('\n') {
            return start;
        }
        let shift = if rest.starts_with(prefix) {
            0
        } else if rest.starts_with(['"', '\'']) && rest[1..].starts_with(prefix) {
            1
        } else {
            return start;
        };
        Pos {
            line: start.line,
            col: start.col + shift + prefix.chars().count(),
        }
    }
}

/// Byte offset of a 1-based (line, column-in-characters) position in `text`.
fn byte_offset(text: &str, line: usize, col: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let rest = &text[line_start.min(text.len())..];
    line_start
        + rest
            .char_indices()
            .nth(col.saturating_sub(1))
            .map_or(rest.len(), |(i, _)| i)
}

/// Whether `v` is a value of type `kind`; the error says what it is instead.
pub(crate) fn check_value(kind: InputType, v: &Value) -> Result<(), String> {
    let ok = match kind {
        InputType::String => v.is_string(),
        InputType::Number => v.is_number(),
        InputType::Bool => v.is_boolean(),
        InputType::Duration => match v.as_str() {
            Some(s) => return parse_duration(s).map(|_| ()).map_err(|e| e.to_string()),
            None => false,
        },
    };
    if ok {
        Ok(())
    } else {
        let kind = match kind {
            InputType::String => "a string",
            InputType::Number => "a number",
            InputType::Bool => "`true` or `false`",
            InputType::Duration => "a duration",
        };
        Err(format!("{v} is not {kind}, the input's type"))
    }
}

/// Checks one `http` grant with the capability's own parser, so validation and
/// enforcement accept exactly the same entries.
fn check_http_grant(entry: &str) -> Result<(), String> {
    crate::caps::http::HostRule::parse(entry).map(|_| ())
}

/// Lower-case hex of a digest.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cycle in a dependency graph (node indices in order), if there is one.
fn find_cycle(deps: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        n: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        marks[n] = Mark::Open;
        stack.push(n);
        for &d in &deps[n] {
            match marks[d] {
                Mark::Open => {
                    let from = stack.iter().position(|&x| x == d).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.reverse();
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d, deps, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[n] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; deps.len()];
    (0..deps.len()).find_map(|n| {
        if marks[n] == Mark::New {
            visit(n, deps, &mut marks, &mut Vec::new())
        } else {
            None
        }
    })
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
    fn cycles_are_found() {
        assert_eq!(find_cycle(&[vec![], vec![0], vec![1]]), None);
        let c = find_cycle(&[vec![2], vec![0], vec![1]]).unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(find_cycle(&[vec![0]]), Some(vec![0]));
    }

    #[test]
    fn byte_offsets_count_characters() {
        assert_eq!(byte_offset("ab", 1, 2), 1);
        assert_eq!(byte_offset("a\nbc", 2, 2), 3);
        assert_eq!(byte_offset("é x", 1, 3), 3);
    }
}
