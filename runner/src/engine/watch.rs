//! Judging the measurements of a watch block.
//!
//! Why a module of its own: these rules decide whether a canary is rolled back,
//! so they are pure functions with exhaustive tests, apart from the loop that
//! runs the plugin (`watch_loop`).
//!
//! Each measurement is one of four verdicts:
//! - **error**: the plugin itself failed (it could not measure);
//! - **failure**: `failure` holds on `result`, or there is no `failure`
//!   condition and `success` does not hold;
//! - **inconclusive**: neither holds, with both conditions written;
//! - **success**: otherwise (no conditions at all means every measurement that
//!   the plugin completes is a success).
//!
//! A limit is the number of measurements of that kind *tolerated*: the watch
//! stops on the first measurement that takes a count above its limit. So
//! `consecutive_failure_limit: 1` stops on the second failure in a row, and the
//! default `failure_limit` of 0 stops on the first failure.
//!
//! As in Argo Rollouts, an error is not a measurement: it does not count toward
//! `count` (the watch measures again), only toward `consecutive_error_limit`
//! (default 4), past which the watch fails. And a watch that ends without a
//! single successful measurement fails, whatever its limits allowed: a canary
//! whose metrics source is down, or whose every measurement was inconclusive,
//! was never shown healthy.

use serde_json::{Map, Value};

use crate::playbook::model::Watch;

/// Plugin errors in a row tolerated when the watch does not say.
pub const DEFAULT_CONSECUTIVE_ERROR_LIMIT: u32 = 4;

/// What one measurement showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Success,
    Failure,
    Inconclusive,
    Error,
}

/// A measurement's verdict, and why a NaN decided it when one did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub verdict: Verdict,
    /// Set when a condition ordered a NaN (`result.value > 0.01` with NaN):
    /// which values were NaN.
    pub nan: Option<String>,
}

/// Judges one measurement's outputs; `vars` is the run's context, to which
/// `result` is added for the conditions.
///
/// A comparison with NaN is false (IEEE 754), and a condition that made one
/// proves nothing, as in Argo Rollouts: with only `success`, the measurement
/// failed; with only `failure`, or with both, it is inconclusive (a `failure`
/// that holds without touching a NaN still fails it). A condition that tests
/// for NaN first (`result.value != result.value || …`) never compares one.
pub fn judge<'a>(
    watch: &Watch,
    outputs: &Map<String, Value>,
    run: impl Into<crate::expr::Scope<'a>>,
) -> Result<Judged, String> {
    let run = run.into();
    let mut scope = run.vars.clone();
    scope.insert("result".into(), Value::Object(outputs.clone()));
    let with_result = crate::expr::Scope {
        vars: &scope,
        reports: run.reports,
    };
    let holds = |cond: &str| -> Result<(bool, bool), String> {
        let e = crate::expr::evaluate_traced(crate::expr::unwrap_condition(cond), with_result)?;
        match e.value {
            Value::Bool(b) => Ok((b, e.compared_nan)),
            other => Err(format!(
                "the condition `{cond}` gives {other}, not true or false"
            )),
        }
    };
    let nan_in = |conds: &[&str]| -> String {
        let mut names: Vec<String> = Vec::new();
        for c in conds {
            for n in crate::expr::nan_readings(crate::expr::unwrap_condition(c), &scope) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        if names.is_empty() {
            "a condition compared NaN".to_owned()
        } else {
            format!(
                "`{}` {} NaN",
                names.join("`, `"),
                if names.len() == 1 { "is" } else { "are" }
            )
        }
    };
    let plain = |verdict| Judged { verdict, nan: None };
    let by_nan = |verdict, conds: &[&str]| Judged {
        verdict,
        nan: Some(nan_in(conds)),
    };
    Ok(match (&watch.failure, &watch.success) {
        (None, None) => plain(Verdict::Success),
        (None, Some(s)) => match holds(s.as_str())? {
            (_, true) => by_nan(Verdict::Failure, &[s.as_str()]),
            (true, false) => plain(Verdict::Success),
            (false, false) => plain(Verdict::Failure),
        },
        (Some(f), None) => match holds(f.as_str())? {
            (_, true) => by_nan(Verdict::Inconclusive, &[f.as_str()]),
            (true, false) => plain(Verdict::Failure),
            (false, false) => plain(Verdict::Success),
        },
        (Some(f), Some(s)) => match holds(f.as_str())? {
            (true, false) => plain(Verdict::Failure),
            (_, f_nan) => match holds(s.as_str())? {
                _ if f_nan => by_nan(Verdict::Inconclusive, &[f.as_str(), s.as_str()]),
                (_, true) => by_nan(Verdict::Inconclusive, &[f.as_str(), s.as_str()]),
                (true, false) => plain(Verdict::Success),
                (false, false) => plain(Verdict::Inconclusive),
            },
        },
    })
}

/// What the watch does after a measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Keep measuring.
    Go,
    /// The watch failed; the message says which limit was passed.
    Fail(String),
    /// The inconclusive limit was passed: `on_inconclusive` decides.
    Inconclusive(String),
}

/// Running counts of a watch.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Tally {
    pub measurements: u32,
    pub successes: u32,
    pub failures: u32,
    pub inconclusive: u32,
    pub errors: u32,
    #[serde(skip)]
    consecutive_failures: u32,
    #[serde(skip)]
    consecutive_errors: u32,
    /// Inconclusive measurements no longer count (after `continue` or an approval).
    #[serde(skip)]
    inconclusive_waived: u32,
}

impl Tally {
    /// Counts `verdict` and says whether the watch goes on.
    pub fn add(&mut self, watch: &Watch, verdict: Verdict) -> Next {
        self.measurements += 1;
        if verdict != Verdict::Error {
            self.consecutive_errors = 0;
        }
        if verdict != Verdict::Failure {
            self.consecutive_failures = 0;
        }
        match verdict {
            Verdict::Success => self.successes += 1,
            Verdict::Error => {
                self.errors += 1;
                self.consecutive_errors += 1;
                let limit = watch
                    .consecutive_error_limit
                    .unwrap_or(DEFAULT_CONSECUTIVE_ERROR_LIMIT);
                if self.consecutive_errors > limit {
                    return Next::Fail(format!(
                        "{} plugin errors in a row (consecutive_error_limit: {limit})",
                        self.consecutive_errors
                    ));
                }
            }
            Verdict::Failure => {
                self.failures += 1;
                self.consecutive_failures += 1;
                if let Some(limit) = watch.consecutive_failure_limit
                    && self.consecutive_failures > limit
                {
                    return Next::Fail(format!(
                        "{} failed measurements in a row (consecutive_failure_limit: {limit})",
                        self.consecutive_failures
                    ));
                }
                if let Some(limit) = watch.effective_failure_limit()
                    && self.failures > limit
                {
                    return Next::Fail(format!(
                        "{} failed measurement{} (failure_limit: {limit})",
                        self.failures,
                        if self.failures == 1 { "" } else { "s" }
                    ));
                }
            }
            Verdict::Inconclusive => {
                self.inconclusive += 1;
                let limit = watch.inconclusive_limit.unwrap_or(0);
                if self.inconclusive - self.inconclusive_waived > limit {
                    return Next::Inconclusive(format!(
                        "{} inconclusive measurement{} (inconclusive_limit: {limit})",
                        self.inconclusive,
                        if self.inconclusive == 1 { "" } else { "s" }
                    ));
                }
            }
        }
        Next::Go
    }

    /// Measurements that count toward `count`: every one but the errors.
    pub fn counted(&self) -> u32 {
        self.measurements - self.errors
    }

    /// Why a watch that reached its end has not passed: it never saw a
    /// successful measurement. `None` when it may pass.
    pub fn unproven(&self) -> Option<String> {
        (self.successes == 0).then(|| {
            format!(
                "the watch ended without a successful measurement ({} measurements: {} failed, {} inconclusive, {} errors); a watch passes only when at least one measurement succeeds",
                self.measurements, self.failures, self.inconclusive, self.errors
            )
        })
    }

    /// Inconclusive measurements so far no longer count against the limit.
    pub fn waive_inconclusive(&mut self) {
        self.inconclusive_waived = self.inconclusive;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::playbook::model::OnInconclusive;
    use crate::playbook::scalars::{Cel, DurationSpec};
    use serde_json::json;

    fn watch() -> Watch {
        Watch {
            interval: DurationSpec("1s".into()),
            count: Some(10),
            duration: None,
            success: None,
            failure: None,
            failure_limit: None,
            consecutive_failure_limit: None,
            inconclusive_limit: None,
            consecutive_error_limit: None,
            on_inconclusive: OnInconclusive::Approve,
        }
    }

    fn run(w: &Watch, verdicts: &[Verdict]) -> (usize, Next) {
        let mut t = Tally::default();
        for (i, v) in verdicts.iter().enumerate() {
            let next = t.add(w, *v);
            if next != Next::Go {
                return (i + 1, next);
            }
        }
        (verdicts.len(), Next::Go)
    }

    use Verdict::{Error as E, Failure as F, Inconclusive as I, Success as S};

    #[test]
    fn by_default_the_first_failure_stops_the_watch() {
        assert_eq!(
            run(&watch(), &[S, S, F, S]),
            (
                3,
                Next::Fail("1 failed measurement (failure_limit: 0)".into())
            )
        );
    }

    #[test]
    fn a_consecutive_limit_of_one_stops_on_the_second_failure_in_a_row() {
        let w = Watch {
            consecutive_failure_limit: Some(1),
            ..watch()
        };
        // Failures apart are tolerated (no total limit next to a consecutive one) ...
        assert_eq!(run(&w, &[F, S, F, S, F, S]), (6, Next::Go));
        // ... two in a row are not: the seeds' "health checks fail twice in a row".
        assert_eq!(
            run(&w, &[S, F, F, S]),
            (
                3,
                Next::Fail("2 failed measurements in a row (consecutive_failure_limit: 1)".into())
            )
        );
    }

    #[test]
    fn a_total_failure_limit_counts_all_failures() {
        let w = Watch {
            failure_limit: Some(2),
            consecutive_failure_limit: Some(5),
            ..watch()
        };
        assert_eq!(
            run(&w, &[F, S, F, S, F]),
            (
                5,
                Next::Fail("3 failed measurements (failure_limit: 2)".into())
            )
        );
    }

    #[test]
    fn plugin_errors_in_a_row_have_their_own_limit() {
        assert_eq!(run(&watch(), &[E, E, E, E, S, E, E, E, E]), (9, Next::Go));
        assert_eq!(
            run(&watch(), &[E, E, E, E, E]),
            (
                5,
                Next::Fail("5 plugin errors in a row (consecutive_error_limit: 4)".into())
            )
        );
    }

    #[test]
    fn inconclusive_measurements_pass_to_on_inconclusive_and_can_be_waived() {
        let w = Watch {
            inconclusive_limit: Some(1),
            ..watch()
        };
        let mut t = Tally::default();
        assert_eq!(t.add(&w, I), Next::Go);
        assert_eq!(
            t.add(&w, I),
            Next::Inconclusive("2 inconclusive measurements (inconclusive_limit: 1)".into())
        );
        t.waive_inconclusive();
        assert_eq!(t.add(&w, I), Next::Go);
        assert_eq!(t.inconclusive, 3);
    }

    #[test]
    fn conditions_decide_the_verdict() {
        let vars = Map::new();
        let out = |rate: f64| json!({ "error_rate": rate }).as_object().unwrap().clone();
        let both = Watch {
            success: Some(Cel("result.error_rate < 0.005".into())),
            failure: Some(Cel("result.error_rate > 0.01".into())),
            ..watch()
        };
        let verdict = |w: &Watch, o: &Map<String, Value>| judge(w, o, &vars).map(|j| j.verdict);
        assert_eq!(verdict(&both, &out(0.001)), Ok(S));
        assert_eq!(verdict(&both, &out(0.02)), Ok(F));
        assert_eq!(verdict(&both, &out(0.008)), Ok(I));
        let success_only = Watch {
            failure: None,
            ..both.clone()
        };
        assert_eq!(verdict(&success_only, &out(0.008)), Ok(F));
        assert_eq!(verdict(&watch(), &out(0.5)), Ok(S));
        let wrong = Watch {
            success: Some(Cel("result.error_rate".into())),
            ..watch()
        };
        assert!(judge(&wrong, &out(0.5), &vars).is_err());
    }

    #[test]
    fn a_nan_measurement_follows_argo_rollouts_table() {
        let vars = Map::new();
        let nan = json!({ "error_rate": { "$nonfinite": "NaN" }, "errors": 20 })
            .as_object()
            .unwrap()
            .clone();
        let inf = json!({ "error_rate": { "$nonfinite": "+Inf" } })
            .as_object()
            .unwrap()
            .clone();
        let w = |success: Option<&str>, failure: Option<&str>| Watch {
            success: success.map(|c| Cel(c.into())),
            failure: failure.map(|c| Cel(c.into())),
            ..watch()
        };
        let judged = |w: &Watch, o: &Map<String, Value>| judge(w, o, &vars).unwrap();
        let why = Some("`result.error_rate` is NaN".to_owned());
        // Only `success`: a NaN fails the measurement, even through a negation
        // that IEEE makes true.
        for s in ["result.error_rate < 0.01", "!(result.error_rate >= 0.01)"] {
            assert_eq!(
                judged(&w(Some(s), None), &nan),
                Judged {
                    verdict: F,
                    nan: why.clone()
                },
                "{s}"
            );
        }
        // Both, or only `failure`: inconclusive.
        let both = w(
            Some("result.error_rate < 0.005"),
            Some("result.error_rate > 0.01"),
        );
        assert_eq!(
            judged(&both, &nan),
            Judged {
                verdict: I,
                nan: why.clone()
            }
        );
        let failure_only = w(None, Some("result.error_rate > 0.01"));
        assert_eq!(
            judged(&failure_only, &nan),
            Judged {
                verdict: I,
                nan: why.clone()
            }
        );
        // A failure that holds without a NaN still fails.
        let other = w(
            Some("result.error_rate < 0.005"),
            Some("result.errors > 10"),
        );
        assert_eq!(judged(&other, &nan).verdict, F);
        // A condition that tests for NaN first decides.
        let accepts = w(
            Some("result.error_rate != result.error_rate || result.error_rate < 0.005"),
            None,
        );
        assert_eq!(
            judged(&accepts, &nan),
            Judged {
                verdict: S,
                nan: None
            }
        );
        // Infinities order as numbers.
        assert_eq!(
            judged(&both, &inf),
            Judged {
                verdict: F,
                nan: None
            }
        );
        assert_eq!(
            judged(&w(Some("result.error_rate < 0.01"), None), &inf).verdict,
            F
        );
    }

    #[test]
    fn errors_do_not_count_toward_count_and_no_success_is_no_pass() {
        let w = Watch {
            failure_limit: Some(5),
            inconclusive_limit: Some(5),
            ..watch()
        };
        let mut t = Tally::default();
        for v in [E, S, E, E, F] {
            assert_eq!(t.add(&w, v), Next::Go);
        }
        assert_eq!((t.measurements, t.counted()), (5, 2));
        assert_eq!(t.unproven(), None, "one success is enough");
        // A metrics source that is down: only errors, then the error limit.
        let mut down = Tally::default();
        assert_eq!(run(&w, &[E, E, E, E]).1, Next::Go);
        for _ in 0..4 {
            down.add(&w, E);
        }
        assert_eq!(down.counted(), 0);
        assert!(down.unproven().is_some());
        // Failures and inconclusive ones under their limits still do not pass.
        let mut none = Tally::default();
        for v in [F, I, F] {
            assert_eq!(none.add(&w, v), Next::Go);
        }
        assert_eq!(
            none.unproven().as_deref(),
            Some(
                "the watch ended without a successful measurement (3 measurements: 2 failed, 1 inconclusive, 0 errors); a watch passes only when at least one measurement succeeds"
            )
        );
    }
}
