//! `runner stats`: how each playbook has been doing.
//!
//! Definitions (also in `runner stats --help`):
//! - success rate: succeeded runs / finished runs;
//! - rollback rate: finished runs in which an `on_failure` handler list ran / finished runs;
//! - duration: mean, median and 95th percentile (nearest rank) of finished runs;
//! - mean time to restore: for each run that did not succeed, the time from its end
//!   to the end of the next succeeded run of the same playbook; the mean of those
//!   (runs never followed by a success are not counted, and are reported apart).
//!
//! One query reads the runs of the window; the figures are computed here, in one
//! pass per playbook, so a journal of thousands of runs answers in milliseconds.

use std::collections::BTreeMap;

use super::{Journal, RunRow};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PlaybookStats {
    pub playbook: String,
    pub runs: usize,
    pub finished: usize,
    pub succeeded: usize,
    pub success_rate: Option<f64>,
    pub rollback_rate: Option<f64>,
    pub mean_duration_s: Option<f64>,
    pub p50_duration_s: Option<f64>,
    pub p95_duration_s: Option<f64>,
    pub mean_time_to_restore_s: Option<f64>,
    /// Failed runs with no later success in the window.
    pub unrestored: usize,
}

/// Figures per playbook for the runs that started at or after `since_ms`.
pub fn stats(
    j: &dyn Journal,
    since_ms: Option<i64>,
    playbook: Option<&str>,
) -> Result<Vec<PlaybookStats>, String> {
    let runs = j.list(&super::Filter {
        playbook,
        since_ms,
        ..super::Filter::default()
    })?;
    let mut by_playbook: BTreeMap<&str, Vec<&RunRow>> = BTreeMap::new();
    for r in &runs {
        by_playbook.entry(r.playbook.as_str()).or_default().push(r);
    }
    Ok(by_playbook
        .into_iter()
        .map(|(name, mut runs)| {
            runs.sort_by_key(|r| r.started_ms);
            figures(name, &runs)
        })
        .collect())
}

/// The figures of `runs` (oldest first), named `playbook`.
pub fn figures(playbook: &str, runs: &[&RunRow]) -> PlaybookStats {
    let finished: Vec<&&RunRow> = runs.iter().filter(|r| r.status != "running").collect();
    let succeeded = finished.iter().filter(|r| r.status == "succeeded").count();
    let rolled_back = finished.iter().filter(|r| r.rolled_back).count();
    let rate = |n: usize| (!finished.is_empty()).then(|| n as f64 / finished.len() as f64);
    let mut durations: Vec<i64> = finished.iter().filter_map(|r| r.duration_ms).collect();
    durations.sort_unstable();
    let mean = (!durations.is_empty())
        .then(|| durations.iter().sum::<i64>() as f64 / durations.len() as f64 / 1000.0);
    let rank = |q: f64| {
        (!durations.is_empty()).then(|| {
            let rank = (q * durations.len() as f64).ceil() as usize;
            durations[rank.clamp(1, durations.len()) - 1] as f64 / 1000.0
        })
    };
    let (p50, p95) = (rank(0.5), rank(0.95));
    // Walk back from the newest run, remembering the end of the latest success
    // seen so far (the next success after each earlier run).
    let mut restores = Vec::new();
    let mut unrestored = 0;
    let mut next_success_end: Option<i64> = None;
    for r in finished.iter().rev() {
        let end = r.finished_ms.unwrap_or(r.started_ms);
        if r.status == "succeeded" {
            next_success_end = Some(end);
        } else {
            match next_success_end {
                Some(fixed) => restores.push((fixed - end).max(0)),
                None => unrestored += 1,
            }
        }
    }
    let mttr = (!restores.is_empty())
        .then(|| restores.iter().sum::<i64>() as f64 / restores.len() as f64 / 1000.0);
    PlaybookStats {
        playbook: playbook.to_owned(),
        runs: runs.len(),
        finished: finished.len(),
        succeeded,
        success_rate: rate(succeeded),
        rollback_rate: rate(rolled_back),
        mean_duration_s: mean,
        p50_duration_s: p50,
        p95_duration_s: p95,
        mean_time_to_restore_s: mttr,
        unrestored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(id: &str, start: i64, dur: i64, status: &str, rolled_back: bool) -> RunRow {
        RunRow {
            id: id.into(),
            playbook: "hotfix".into(),
            file: String::new(),
            file_sha256: String::new(),
            input_args: vec![],
            inputs: serde_json::Value::Null,
            started_at: String::new(),
            started_ms: start,
            finished_ms: Some(start + dur),
            duration_ms: Some(dur),
            status: status.into(),
            rolled_back,
            parent: None,
            pid: 0,
            env_file: None,
            guarded: false,
            started_by: None,
        }
    }

    #[test]
    fn figures_follow_their_definitions() {
        let runs = [
            run("1", 0, 10_000, "succeeded", false),
            run("2", 100_000, 20_000, "failed", true), // ends at 120 s
            run("3", 130_000, 5_000, "failed", true),  // ends at 135 s
            run("4", 200_000, 30_000, "succeeded", false), // ends at 230 s: restores 2 and 3
            run("5", 300_000, 40_000, "timed_out", true), // never restored
        ];
        let refs: Vec<&RunRow> = runs.iter().collect();
        let s = figures("hotfix", &refs);
        assert_eq!((s.runs, s.finished, s.succeeded), (5, 5, 2));
        assert_eq!(s.success_rate, Some(0.4));
        assert_eq!(s.rollback_rate, Some(0.6));
        assert_eq!(s.mean_duration_s, Some(21.0));
        // Nearest rank: ceil(0.95 × 5) = 5th of [5, 10, 20, 30, 40].
        assert_eq!(s.p95_duration_s, Some(40.0));
        // ceil(0.5 × 5) = 3rd.
        assert_eq!(s.p50_duration_s, Some(20.0));
        // (230 - 120) and (230 - 135): 110 s and 95 s.
        assert_eq!(s.mean_time_to_restore_s, Some(102.5));
        assert_eq!(s.unrestored, 1);
    }

    #[test]
    fn no_finished_runs_means_no_rates() {
        let mut r = run("1", 0, 0, "running", false);
        r.finished_ms = None;
        r.duration_ms = None;
        let s = figures("hotfix", &[&r]);
        assert_eq!((s.runs, s.finished), (1, 0));
        assert_eq!(s.success_rate, None);
        assert_eq!(s.p95_duration_s, None);
    }
}
