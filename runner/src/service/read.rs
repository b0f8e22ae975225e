//! Reading finished (or dead) runs back: a run's markdown report rebuilt from
//! the journal, and what the journal is known to lack of a run.

use std::path::{Path, PathBuf};

use crate::record::{RunRow, Stored};
use crate::report::{RunInfo, Stamped};

/// What the journal lacks of `run`: a run started with an intact mark (see
/// `record::recorder`) that the journal says is running but whose mark is gone
/// stopped being recorded at some point. `None`: nothing known missing (or no
/// state directory to look in).
pub fn lacking(state_dir: Option<&Path>, run: &RunRow, events: &[Stored]) -> Option<String> {
    if run.status != "running" || !run.guarded {
        return None;
    }
    if !crate::record::recorder::mark_gone(state_dir?, &run.id) {
        return None;
    }
    Some(match events.last() {
        Some(last) => format!(
            "the journal stopped taking this run's events: it has them up to event #{} ({}), not what came after",
            last.seq, last.at
        ),
        None => "the journal stopped taking this run's events before the first one".to_owned(),
    })
}

/// What a report of `run` is made from: its facts and its events, stamped.
pub fn report_input(
    state_dir: Option<&Path>,
    run: &RunRow,
    events: Vec<Stored>,
) -> (RunInfo, Vec<Stamped>) {
    let info = RunInfo {
        journal: lacking(state_dir, run, &events),
        run_id: run.id.clone(),
        playbook: run.playbook.clone(),
        file: run.file.clone(),
        started_at: run.started_at.clone(),
        inputs: run.inputs.as_object().cloned().unwrap_or_default(),
    };
    let stamped = events
        .into_iter()
        .map(|s| Stamped {
            at: s.at,
            offset_ms: s.offset_ms.max(0) as u64,
            event: s.event,
        })
        .collect();
    (info, stamped)
}

/// A run's markdown report, rebuilt from its rows in the journal.
pub fn markdown_report(state_dir: Option<&Path>, run: &RunRow, events: Vec<Stored>) -> String {
    let (info, stamped) = report_input(state_dir, run, events);
    crate::report::markdown(&info, &stamped)
}

/// `run_report(ID)` in expressions: the markdown report of run ID, read from
/// one journal (opened read-only at each call: the run may still be writing
/// it).
pub struct JournalReports {
    pub journal: super::Store,
    pub state_dir: Option<PathBuf>,
}

impl crate::expr::RunReports for JournalReports {
    fn markdown(&self, id: &str) -> Result<String, String> {
        let j = self.journal.open_read()?;
        let run = j
            .run(id)?
            .ok_or_else(|| format!("no run `{id}` in the journal `{}`", j.location()))?;
        Ok(markdown_report(
            self.state_dir.as_deref(),
            &run,
            j.events(id)?,
        ))
    }
}
