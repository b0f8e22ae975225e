//! Drawing the tree: the lines of the live part and the frozen blocks printed
//! above, from the tree's state and nothing else.

use super::*;

impl Tree {
    /// The live part: the run's header, the running stage with its steps and
    /// handler lists, the run-level handler lists. (What moves with time is
    /// worked out when a line is drawn: [`Line::text`].)
    pub(crate) fn live(&self) -> Vec<Line> {
        if self.ended {
            return Vec::new();
        }
        let mut lines = Vec::new();
        if let Some(run) = &self.run {
            let mut header = Line::new(0, Mark::Spinner, &self.run_name());
            header.since = Some(run.since);
            header.clock = Clock::Running {
                budget: self.state.budget_s().map(seconds),
                timeout: self.state.timeout_s().map(seconds),
                over: self.state.budget_exceeded().is_some(),
            };
            lines.push(header);
        }
        for (s, stage) in self.state.stages().iter().enumerate() {
            if self.stages[s].committed {
                continue;
            }
            lines.push(self.stage_line(s, false));
            let (fold, shown) = self.fold(&stage.steps);
            lines.extend(fold);
            lines.extend(shown.iter().map(|&i| self.step_line(i, 2, false)));
            for &l in &stage.lists {
                self.list_lines(l, 2, false, &mut lines);
            }
        }
        self.unannounced_lines((0, 0), false, &mut lines);
        self.run_lines((0, 0), false, &mut lines);
        lines
    }

    /// The steps and lists of stages no event has announced (a damaged
    /// record): a block for each such stage, after the others. `from`: the
    /// first step and list to show.
    pub(super) fn unannounced_lines(
        &self,
        from: (usize, usize),
        frozen: bool,
        lines: &mut Vec<Line>,
    ) {
        let steps: Vec<(&str, usize)> = self
            .state
            .steps()
            .iter()
            .enumerate()
            .skip(from.0)
            .filter_map(|(i, step)| match (step.list, step.in_stage, &step.stage) {
                (None, None, Some(id)) => Some((id.as_str(), i)),
                _ => None,
            })
            .collect();
        let lists: Vec<(&str, usize)> = self
            .state
            .lists()
            .iter()
            .enumerate()
            .skip(from.1)
            .filter_map(|(l, list)| match (list.in_stage, &list.scope) {
                (None, Some(id)) => Some((id.as_str(), l)),
                _ => None,
            })
            .collect();
        let mut ids: Vec<&str> = Vec::new();
        for &(id, _) in steps.iter().chain(&lists) {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        for id in ids {
            let mut line = Line::new(1, Mark::Spinner, id);
            if frozen {
                line.mark = Mark::Unknown;
                line = line.with_detail("no end was reported");
            } else {
                line.clock = Clock::Running {
                    budget: None,
                    timeout: None,
                    over: false,
                };
            }
            lines.push(line);
            for &(_, i) in steps.iter().filter(|s| s.0 == id) {
                lines.push(self.step_line(i, 2, frozen));
            }
            for &(_, l) in lists.iter().filter(|l| l.0 == id) {
                self.list_lines(l, 2, frozen, lines);
            }
        }
    }

    /// The run's own steps: those of no list (a damaged record), then its
    /// handler lists. `from`: the first step and list to show.
    pub(super) fn run_lines(&self, from: (usize, usize), frozen: bool, lines: &mut Vec<Line>) {
        let stray = self
            .state
            .steps()
            .iter()
            .enumerate()
            .skip(from.0)
            .filter(|(_, s)| s.list.is_none() && s.stage.is_none());
        lines.extend(stray.map(|(i, _)| self.step_line(i, 1, frozen)));
        for (l, list) in self.state.lists().iter().enumerate().skip(from.1) {
            if list.scope.is_none() {
                self.list_lines(l, 1, frozen, lines);
            }
        }
    }

    /// A line for the scrollback. These lines have no spinner, clock or
    /// countdown, so the moment does not matter.
    pub(super) fn render(&self, line: &Line) -> String {
        line.text(Instant::now(), self.color)
    }

    pub(super) fn run_name(&self) -> String {
        match self.run.as_ref() {
            Some(Run {
                playbook: Some(p), ..
            }) => format!("run {p}"),
            Some(_) => "resumed run".to_owned(),
            None => "run".to_owned(),
        }
    }

    /// A handler list: its name, then its steps one level deeper.
    pub(super) fn list_lines(&self, l: usize, depth: usize, frozen: bool, lines: &mut Vec<Line>) {
        let list = &self.state.lists()[l];
        lines.push(Line::new(depth, Mark::Blank, list.kind));
        lines.extend(
            list.steps
                .iter()
                .map(|&i| self.step_line(i, depth + 1, frozen)),
        );
    }

    /// The steps of a live stage: older ones that succeeded or were skipped
    /// fold into one counted line when there are many.
    pub(super) fn fold(&self, ids: &[usize]) -> (Option<Line>, Vec<usize>) {
        let quiet = |i: usize| {
            self.steps[i]
                .end
                .as_ref()
                .is_some_and(|e| e.status == "succeeded" || e.status == "skipped")
        };
        let hide = ids
            .iter()
            .filter(|&&i| quiet(i))
            .count()
            .saturating_sub(RECENT_DONE);
        if hide == 0 {
            return (None, ids.to_vec());
        }
        let (mut succeeded, mut skipped, mut shown) = (0, 0, Vec::new());
        for &i in ids {
            if quiet(i) && succeeded + skipped < hide {
                match self.steps[i].end.as_ref().map(|e| e.status) {
                    Some("succeeded") => succeeded += 1,
                    _ => skipped += 1,
                }
            } else {
                shown.push(i);
            }
        }
        let what = match (succeeded, skipped) {
            (n, 0) => format!("{} succeeded", plural(n, "earlier step", "earlier steps")),
            (0, n) => format!("{} skipped", plural(n, "earlier step", "earlier steps")),
            (a, b) => format!(
                "{}: {a} succeeded, {b} skipped",
                plural(a + b, "earlier step", "earlier steps")
            ),
        };
        (Some(Line::new(2, Mark::Fold, &what)), shown)
    }

    /// Stage `s`'s line. `frozen`: for the scrollback, where nothing moves.
    pub(super) fn stage_line(&self, s: usize, frozen: bool) -> Line {
        let stage = &self.state.stages()[s];
        let mut line = Line::new(1, Mark::Spinner, &stage.id);
        line.since = self.stages[s].since;
        let budget = stage.budget_s.map(seconds);
        let end = match stage.status {
            _ if stage.skipped => Some(StageEnd::Skipped),
            Some(status) => Some(StageEnd::Finished {
                status,
                took: seconds(stage.duration_s.unwrap_or_default()),
            }),
            None => None,
        };
        match end {
            Some(StageEnd::Skipped) => {
                line.mark = Mark::Skipped;
                line = line.with_detail("skipped: its `if` is false");
            }
            Some(StageEnd::Finished { status, took }) => {
                line.mark = Mark::of_status(status);
                line.clock = Clock::Took { took, budget };
                line = line.with_detail(match status {
                    "succeeded" => "",
                    "timed_out" => "timed out",
                    other => other,
                });
            }
            None if frozen => {
                line.mark = Mark::Unknown;
                line = line.with_detail("no end was reported");
            }
            None => {
                line.clock = Clock::Running {
                    budget,
                    timeout: stage.timeout_s.map(seconds),
                    over: stage.budget_exceeded.is_some(),
                };
            }
        }
        line
    }

    /// A step's line at `depth`. `frozen`: for the scrollback.
    pub(super) fn step_line(&self, i: usize, depth: usize, frozen: bool) -> Line {
        let (step, told) = (&self.steps[i], &self.state.steps()[i]);
        let mut line = Line::new(depth, Mark::Spinner, &told.id);
        line.since = step.since;
        match &step.end {
            Some(end) => {
                line.mark = Mark::of_status(end.status);
                if matches!(end.status, "succeeded" | "failed") {
                    line.clock = Clock::Took {
                        took: end.took,
                        budget: None,
                    };
                }
                line.with_detail(&end_words(end, told.kind))
            }
            None if told.dropped => {
                line.mark = Mark::Unknown;
                line.with_detail("dropped by the timeout or signal; no end was reported")
            }
            None if frozen => {
                line.mark = Mark::Unknown;
                line.with_detail("no end was reported")
            }
            None => {
                line.clock = Clock::Running {
                    budget: None,
                    timeout: None,
                    over: false,
                };
                match &step.note {
                    Note::None => line,
                    Note::Retry { attempt, at, error } => {
                        line.timed = Some(Timed::Retry {
                            at: *at,
                            next: attempt.saturating_add(1),
                        });
                        line.with_detail(&format!("after attempt {attempt} failed: {error}"))
                    }
                    Note::Measurement { n, verdict, error } => {
                        let mut text = format!("measurement {n}: {verdict}");
                        if let Some(e) = error {
                            let _ = write!(text, ": {e}");
                        }
                        line.with_detail(&text)
                    }
                    Note::Gate(outcome) => line.with_detail(&format!("gate {outcome}")),
                    Note::Approval { until } => {
                        line.timed = Some(Timed::Approval { until: *until });
                        line
                    }
                    Note::Decided(outcome) => line.with_detail(match *outcome {
                        "timed_out" => "approval timed out",
                        other => other,
                    }),
                }
            }
        }
    }

    /// The run's last line: how it ended, in how long, against its budget.
    pub(super) fn verdict(
        &self,
        status: &str,
        took_: Duration,
        budget: Option<Duration>,
        handler_failures: u32,
    ) -> String {
        let mark = Mark::of_status(status);
        let signal = self.run.as_ref().and_then(|r| r.signal);
        let how = match (status, signal) {
            ("succeeded", _) => "succeeded in".to_owned(),
            ("timed_out", _) => "timed out after".to_owned(),
            ("interrupted", Some(sig)) => format!("was interrupted by {} after", one_line(sig)),
            ("interrupted", None) => "was interrupted after".to_owned(),
            (other, _) => format!("{} after", one_line(other).replace('_', " ")),
        };
        let over = budget.is_some_and(|b| took_ > b);
        let mut text = format!(
            "{} {} {how} {}",
            paint(mark.glyph(0), mark.code(), self.color),
            self.run_name(),
            paint(
                &against(took(took_), budget, over),
                over.then_some(YELLOW),
                self.color
            )
        );
        if handler_failures > 0 {
            let _ = write!(
                text,
                "; {}",
                plural(
                    handler_failures as usize,
                    "handler failed",
                    "handlers failed"
                )
            );
        }
        text
    }
}
/// What a step's line says once it ended.
pub(super) fn end_words(end: &End, kind: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if end.restored {
        parts.push("restored from the journal".to_owned());
    }
    let n = end.attempts as usize;
    // The engine's summary of a watch starts with its count already
    // ("5 measurements: 5 ok, …"): not twice.
    let counts = |text: &str| {
        text.split_once(' ').is_some_and(|(number, rest)| {
            number.parse::<u64>().is_ok() && rest.starts_with("measurement")
        })
    };
    let counted = counts(&end.summary) || end.error.as_deref().is_some_and(counts);
    match (end.status, kind) {
        ("succeeded" | "failed", Some("watch")) if n > 0 && !counted => {
            parts.push(plural(n, "measurement", "measurements"));
        }
        // Its count is in its summary already.
        ("succeeded" | "failed", Some("watch")) => {}
        ("succeeded" | "failed", _) if n > 1 => parts.push(format!("after {n} attempts")),
        _ => {}
    }
    match end.status {
        "succeeded" => {
            if !end.summary.is_empty() {
                parts.push(end.summary.clone());
            }
        }
        "failed" => parts.push(end.error.clone().unwrap_or_else(|| "failed".to_owned())),
        "skipped" => parts.push("skipped".to_owned()),
        other => {
            parts.push(other.replace('_', " "));
            match &end.error {
                Some(e) => parts.push(e.clone()),
                None if !end.summary.is_empty() => parts.push(end.summary.clone()),
                None => {}
            }
        }
    }
    parts.join(": ")
}

/// `approved by alice as tech-lead`, `rejected by bob: not now`, `no answer in time`.
pub(super) fn decided(outcome: &str, decisions: &[Decision]) -> String {
    let who = |d: &Decision| match &d.role {
        Some(r) => format!("{} as {r}", d.who()),
        None => d.who(),
    };
    match outcome {
        "approved" if !decisions.is_empty() => format!(
            "approved by {}",
            decisions.iter().map(who).collect::<Vec<_>>().join(", ")
        ),
        "rejected" => match decisions.iter().find(|d| !d.approved) {
            Some(d) => match &d.comment {
                Some(c) => format!("rejected by {}: {c}", who(d)),
                None => format!("rejected by {}", who(d)),
            },
            None => "rejected".to_owned(),
        },
        "timed_out" => "no answer in time".to_owned(),
        other => other.replace('_', " "),
    }
}
