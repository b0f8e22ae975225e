//! Running a watch: measure on an interval, judge each measurement, stop on a
//! passed limit, a count or a duration. Apart from `watch`, which judges: the
//! events carry the watch's verdicts, so the pure judging sits below `events`
//! and this loop, which emits events, above it.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::step::Attempts;
use super::watch;
use super::{Event, Executor, StepRecord};
use crate::playbook::model::{OnInconclusive, Watch};
use crate::playbook::scalars::parse_duration;

impl Executor<'_> {
    /// A watch: measure every `interval`, judge each measurement, stop on a
    /// passed limit or when `count` or `duration` is reached.
    pub(super) async fn watch(
        &self,
        a: &Attempts,
        w: &Watch,
        vars: &Map<String, Value>,
        run_id: &str,
        record: &mut StepRecord,
    ) {
        let Some(plugin) = self.plugins.get(&a.plugin) else {
            return record.fail(
                "invalid-input",
                format!("plugin `{}` is not loaded", a.plugin),
            );
        };
        let interval = parse_duration(w.interval.as_str()).unwrap_or(Duration::from_secs(10));
        let start = Instant::now();
        let end = w
            .duration
            .as_ref()
            .and_then(|d| parse_duration(d.as_str()).ok())
            .map(|d| start + d);
        let mut tally = watch::Tally::default();
        let mut last = Map::new();
        let mut inconclusive_waived = w.on_inconclusive == OnInconclusive::Continue;
        loop {
            let n = tally.measurements + 1;
            // Errors are not measurements toward `count` (see `watch`).
            if w.count.is_some_and(|c| tally.counted() >= c)
                || end.is_some_and(|e| Instant::now() >= e)
            {
                break;
            }
            let t0 = Instant::now();
            record.attempts += 1;
            let (verdict, outputs, error, nan) = match self.attempt(plugin, a, record).await {
                Err(f) => (watch::Verdict::Error, Map::new(), Some(f.to_string()), None),
                Ok(s) => match watch::judge(w, &s.outputs, self.scope(vars)) {
                    Ok(j) => (j.verdict, s.outputs, None, j.nan),
                    Err(e) => (watch::Verdict::Error, s.outputs, Some(e), None),
                },
            };
            self.emit(Event::Measurement {
                stage: record.stage.clone(),
                step: record.step.clone(),
                n,
                verdict,
                outputs: outputs.clone(),
                error: error.clone(),
                nan: nan.clone(),
            });
            if verdict != watch::Verdict::Error {
                last = outputs;
            }
            match tally.add(w, verdict) {
                watch::Next::Go => {}
                watch::Next::Fail(why) => {
                    record.outputs = watch_outputs(last, &tally);
                    let detail = match (error, &nan) {
                        (Some(e), _) => format!("; last error: {e}"),
                        (None, Some(n)) => format!("; the last measurement compared NaN: {n}"),
                        (None, None) => String::new(),
                    };
                    return record.fail("watch", format!("the watch failed: {why}{detail}"));
                }
                watch::Next::Inconclusive(why) => {
                    let why = match &nan {
                        Some(n) => format!("{why}; the last compared NaN: {n}"),
                        None => why,
                    };
                    if inconclusive_waived {
                        tally.waive_inconclusive();
                    } else {
                        let mut asked = record.clone();
                        self.inconclusive(
                            w.on_inconclusive,
                            &format!("watch `{}`: {why}", record.step),
                            run_id,
                            &mut asked,
                        )
                        .await;
                        if asked.status != "succeeded" {
                            record.outputs = watch_outputs(last, &tally);
                            return record.fail(
                                asked.error_kind.unwrap_or("inconclusive"),
                                asked.error.unwrap_or_default(),
                            );
                        }
                        tally.waive_inconclusive();
                        inconclusive_waived = w.on_inconclusive == OnInconclusive::Continue;
                    }
                }
            }
            let next = t0 + interval;
            let next = end.map_or(next, |e| next.min(e));
            if w.count.is_some_and(|c| tally.counted() >= c) {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        let summary = format!(
            "{} measurements: {} ok, {} failed, {} inconclusive, {} errors",
            tally.measurements, tally.successes, tally.failures, tally.inconclusive, tally.errors
        );
        record.outputs = watch_outputs(last, &tally);
        if let Some(why) = tally.unproven() {
            return record.fail("watch", format!("the watch failed: {why}"));
        }
        record.succeed(summary);
    }
}

/// A watch's outputs: the last measurement's outputs, and the counts under `watch`.
fn watch_outputs(mut last: Map<String, Value>, tally: &watch::Tally) -> Map<String, Value> {
    last.insert(
        "watch".into(),
        serde_json::to_value(tally).unwrap_or(Value::Null),
    );
    last
}
