//! Asking a human: opening an approval request in the `Approvals` store, waiting
//! for its verdict, and reporting both as events. Apart from `approval`, which is
//! the store itself (its mailbox of files and its rules) and knows nothing of a
//! run's events.

use std::time::Duration;

use super::approval;
use super::vars::seconds;
use super::{Event, Executor};

/// Who may answer a question.
pub(super) struct Answerers<'a> {
    /// Roles that must each approve; empty: anyone.
    pub(super) roles: &'a [String],
    /// Who may not approve (the run's starter, under `prevent_self_approval`).
    pub(super) not: Option<String>,
}

impl Executor<'_> {
    /// Asks for an approval through [`approval::Approvals`]; whoever answers
    /// (a terminal, `runner approve`) answers there.
    pub(super) async fn ask(
        &self,
        stage: Option<&str>,
        step: &str,
        prompt: &str,
        who: Answerers<'_>,
        timeout: Duration,
        run_id: &str,
    ) -> Asked {
        let Answerers {
            roles: approvers,
            not: not_approved_by,
        } = who;
        let Some(approvals) = self.approvals else {
            return Asked::Unavailable(
                "approvals need a state directory (set RUNNER_STATE_DIR or HOME)".into(),
            );
        };
        let request = approval::Request {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            prompt: prompt.to_owned(),
            approvers: approvers.to_vec(),
            deadline: approval::rfc3339(std::time::SystemTime::now() + timeout),
            not_approved_by,
        };
        if let Err(e) = approvals.open(&request) {
            return Asked::Unavailable(format!("cannot open the approval request: {e}"));
        }
        self.emit(Event::ApprovalRequested {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            prompt: prompt.to_owned(),
            approvers: approvers.to_vec(),
            timeout_s: seconds(timeout),
            answer_with: if approvers.is_empty() {
                format!("runner approve {run_id} {step} [--reject] [--comment TEXT]")
            } else {
                format!("runner approve {run_id} {step} --role ROLE [--reject] [--comment TEXT]")
            },
        });
        let outcome = approval::wait(approvals, &request, timeout).await;
        approvals.close(run_id, step);
        let (name, decisions, asked) = match outcome {
            approval::Outcome::Approved(d) => {
                let by = d
                    .iter()
                    .map(|d| match &d.role {
                        Some(r) => format!("{} as {r}", d.who()),
                        None => d.who(),
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                ("approved", d, Asked::Approved(by))
            }
            approval::Outcome::Rejected(d) => {
                let why = match &d.comment {
                    Some(c) => format!("rejected by {}: {c}", d.who()),
                    None => format!("rejected by {}", d.who()),
                };
                ("rejected", vec![d], Asked::Rejected(why))
            }
            approval::Outcome::TimedOut => ("timed_out", Vec::new(), Asked::TimedOut),
        };
        self.emit(Event::ApprovalDecided {
            stage: stage.map(str::to_owned),
            step: step.to_owned(),
            outcome: name,
            decisions,
        });
        asked
    }
}

/// The answer to an approval request.
pub(super) enum Asked {
    Approved(String),
    Rejected(String),
    TimedOut,
    Unavailable(String),
}
