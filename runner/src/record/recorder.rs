//! A run's events on their way into the journal, and the mark that says the
//! journal has all of them.
//!
//! Why: the journal can stop taking writes in the middle of a run (the disk
//! fills up). The run must not lose those events for good, and above all it
//! must never be resumed later from a journal that misses what happened: a
//! journal that lost the events of a finished deployment step says that step
//! is still to do, and `runner resume` would run it again. So:
//!
//! - an event the journal refuses is kept in memory, in order, and written
//!   (with its own sequence number and time) before the next event as soon as
//!   the journal takes writes again: when space comes back mid-run, nothing is
//!   missing;
//! - every run started by this runner has an *intact mark*, an empty file
//!   `<state>/intact/<run id>`, created before the run's first row. The first
//!   refused event removes it (removing a file needs no free space, so this
//!   works on a full disk), and it comes back when the journal has caught up.
//!   `runner resume` refuses a run whose mark is gone: its journal may lack
//!   events, and nobody can tell which steps finished.
//!
//! What the run does meanwhile (stop or carry on without a record) is the
//! caller's choice ([`Outcome::Refused`] comes once per lapse).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::Journal;
use crate::engine::Event;

/// The intact mark of run `id` under the state directory `state`.
pub fn mark_path(state: &Path, id: &str) -> PathBuf {
    state.join("intact").join(id)
}

/// Whether run `id`'s intact mark is gone: for a run the journal says is
/// running and that was started with a mark (`runs.guarded`), the journal
/// stopped taking its events at some point.
pub fn mark_gone(state: &Path, id: &str) -> bool {
    mark_path(state, id).symlink_metadata().is_err()
}

/// Creates the intact mark of a run that starts now (before its first row).
pub fn create_mark(state: &Path, id: &str) -> Result<(), String> {
    let path = mark_path(state, id);
    let made = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::File::create(&path).map(drop));
    made.map_err(|e| format!("cannot create `{}`: {e}", path.display()))
}

/// An event the journal has not taken yet.
struct Pending {
    seq: i64,
    at_ms: i64,
    offset_ms: i64,
    event: Event,
}

/// What became of an event handed to [`Recorder::record`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It is in the journal, as is everything before it.
    Written,
    /// The journal refused it, and it was taking writes until now: the run's
    /// record is incomplete from here on (the mark is gone). The error says why.
    Refused(String),
    /// The journal refused it, as it refused the events before it.
    StillRefused,
    /// The journal took it and the `n` events it had refused before it: the
    /// record is whole again (the mark is back).
    CaughtUp(usize),
}

/// Writes one run's events to the journal (see the module's documentation).
pub struct Recorder {
    run_id: String,
    next_seq: i64,
    pending: VecDeque<Pending>,
    /// `None`: the journal is shared and runs have no mark.
    mark: Option<PathBuf>,
    /// The first error of the current lapse, with the sequence number of the
    /// first event it refused.
    lapse: Option<(i64, String)>,
}

impl Recorder {
    /// A recorder for run `id`, whose next event gets the next sequence number
    /// the journal has not used, and whose intact mark is `mark`.
    pub fn new(journal: &dyn Journal, id: &str, mark: Option<PathBuf>) -> Result<Recorder, String> {
        Ok(Recorder {
            run_id: id.to_owned(),
            next_seq: journal.next_seq(id)?,
            pending: VecDeque::new(),
            mark,
            lapse: None,
        })
    }

    /// The sequence number of the first event this recorder handled.
    pub fn seq(&self) -> i64 {
        self.next_seq
    }

    /// Writes `event` (at `at_ms`, `offset_ms` into the run), after every event
    /// the journal refused before it; returns once it is committed or refused.
    pub fn record(
        &mut self,
        journal: &mut dyn Journal,
        at_ms: i64,
        offset_ms: i64,
        event: &Event,
    ) -> Outcome {
        let seq = self.next_seq;
        self.next_seq += 1;
        // The usual case: nothing waits, the event goes straight in.
        let written = if self.pending.is_empty() {
            journal.record(&self.run_id, seq, at_ms, offset_ms, event)
        } else {
            Err(String::new())
        };
        let was_behind = self.lapse.is_some();
        let behind_by = self.pending.len();
        let written = written.or_else(|first_error| {
            self.pending.push_back(Pending {
                seq,
                at_ms,
                offset_ms,
                event: event.clone(),
            });
            match self.flush(journal) {
                // Refused straight away: that error, not a second one.
                Err(_) if !first_error.is_empty() => Err(first_error),
                other => other,
            }
        });
        match written {
            Ok(()) if was_behind => {
                self.lapse = None;
                // The journal has every event again: a crash from here on can
                // be resumed. If the mark cannot be made, the run stays
                // refused by `resume`, which is the safe side.
                if let Some(mark) = &self.mark {
                    let _ = std::fs::File::create(mark);
                }
                Outcome::CaughtUp(behind_by)
            }
            Ok(()) => Outcome::Written,
            Err(_) if was_behind => Outcome::StillRefused,
            Err(e) => {
                // First the mark, so that a runner killed right now leaves a
                // run that `resume` refuses.
                if let Some(mark) = &self.mark {
                    let _ = std::fs::remove_file(mark);
                }
                let first = self.pending.front().map_or(self.next_seq - 1, |p| p.seq);
                self.lapse = Some((first, e.clone()));
                Outcome::Refused(e)
            }
        }
    }

    /// Writes what the journal refused so far; the run is over (or about to
    /// be). `None` when the journal has every event, else what it lacks.
    pub fn finish(&mut self, journal: &mut dyn Journal) -> Option<String> {
        if self.lapse.is_some() && self.flush(journal).is_ok() {
            self.lapse = None;
        }
        self.missing()
    }

    /// What the journal lacks of this run, for people; `None`: nothing.
    pub fn missing(&self) -> Option<String> {
        let (first, error) = self.lapse.as_ref()?;
        let n = self.pending.len();
        Some(format!(
            "the journal lacks {n} event{} of this run, from event #{first} on (it stopped taking writes: {error})",
            if n == 1 { "" } else { "s" }
        ))
    }

    /// Whether everything handed over is in the journal.
    pub fn whole(&self) -> bool {
        self.pending.is_empty()
    }

    /// Removes the intact mark of a run that ended with everything recorded:
    /// the journal says it ended, nothing will resume it.
    pub fn close(self) {
        if self.pending.is_empty()
            && let Some(mark) = &self.mark
        {
            let _ = std::fs::remove_file(mark);
        }
    }

    fn flush(&mut self, journal: &mut dyn Journal) -> Result<(), String> {
        while let Some(p) = self.pending.front() {
            // Only ever after a refusal. A commit reported as failed may still
            // have landed (an I/O error after the write): written twice, a
            // step would count an attempt twice, so an event already there is
            // not written again.
            if !journal.has_event(&self.run_id, p.seq)? {
                journal.record(&self.run_id, p.seq, p.at_ms, p.offset_ms, &p.event)?;
            }
            self.pending.pop_front();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::SqliteJournal;

    fn started(step: &str) -> Event {
        Event::StepStarted {
            stage: Some("s".into()),
            step: step.into(),
            kind: "plugin",
            handler: None,
        }
    }

    /// The journal refuses writes for a while (`query_only` stands in for a
    /// full disk): the mark goes at the first refusal, the refused events are
    /// written in order once it takes writes again, and the mark comes back.
    #[test]
    fn refused_events_are_kept_written_later_in_order_and_the_mark_follows() {
        let dir = std::env::temp_dir().join(format!("runner-recorder-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut j = SqliteJournal::open(&dir.join("j.sqlite")).unwrap();
        j.begin(&super::super::sqlite::tests::row("r", "p", 1_000))
            .unwrap();
        create_mark(&dir, "r").unwrap();
        let mark = mark_path(&dir, "r");
        let mut rec = Recorder::new(&j, "r", Some(mark.clone())).unwrap();
        assert_eq!(
            rec.record(&mut j, 1_000, 0, &started("a")),
            Outcome::Written
        );

        j.conn.pragma_update(None, "query_only", true).unwrap();
        match rec.record(&mut j, 1_001, 1, &started("b")) {
            Outcome::Refused(e) => assert!(e.contains("readonly"), "{e}"),
            other => panic!("{other:?}"),
        }
        assert!(!mark.exists(), "the mark goes at the first refusal");
        assert_eq!(
            rec.record(&mut j, 1_002, 2, &started("c")),
            Outcome::StillRefused
        );
        assert!(rec.missing().unwrap().contains("lacks 2 events"));
        assert!(rec.missing().unwrap().contains("from event #1 on"));

        j.conn.pragma_update(None, "query_only", false).unwrap();
        assert_eq!(
            rec.record(&mut j, 1_003, 3, &started("d")),
            Outcome::CaughtUp(2)
        );
        assert!(mark.exists(), "the mark is back once nothing is missing");
        let seqs: Vec<(i64, i64)> = j
            .events("r")
            .unwrap()
            .iter()
            .map(|s| (s.seq, s.offset_ms))
            .collect();
        assert_eq!(seqs, [(0, 0), (1, 1), (2, 2), (3, 3)]);
        assert_eq!(rec.finish(&mut j), None);
        rec.close();
        assert!(!mark.exists(), "a run recorded to its end needs no mark");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
