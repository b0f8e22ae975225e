//! Manual approvals that any process can answer.
//!
//! The engine asks through the [`Approvals`] trait and waits for a verdict
//! ([`wait`]); it never talks to a person. Front ends answer through the same
//! trait: the CLI's terminal prompt (`cli::prompt`), `runner approve`, later the
//! server. What a request and a decision are, how decisions make a verdict
//! ([`verdict`]: any rejection rejects, each listed role must approve) and what
//! `runner approve` checks before it records an answer ([`submit`]) are the
//! same whatever keeps them; [`FileApprovals`] ([`mailbox`]), a mailbox of
//! files under the state directory, is the default store.
//!
//! Anyone who can write to the store can approve: roles (`--role tech-lead`) are
//! declared, not authenticated. The record says who (see [`crate::identity`])
//! claimed which role.

use std::io;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub mod mailbox;

pub use mailbox::{FileApprovals, Mailbox};

/// How often [`wait`] looks at the store.
const POLL: Duration = Duration::from_millis(200);

/// What a run waits for; kept by the store while it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The run that waits.
    pub run_id: String,
    /// The approval step.
    pub step: String,
    /// The question, rendered.
    pub prompt: String,
    /// Roles that must each approve; empty: one approval from anyone.
    pub approvers: Vec<String>,
    /// When the run stops waiting (RFC 3339, UTC).
    pub deadline: String,
    /// Who may not approve (the run's starter, when the step says
    /// `prevent_self_approval`); their rejection still counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_approved_by: Option<String>,
}

impl Request {
    /// A request whose deadline is `timeout` from now.
    pub fn new(
        run_id: &str,
        step: &str,
        prompt: &str,
        approvers: &[String],
        timeout: Duration,
    ) -> Request {
        let deadline = SystemTime::now()
            .checked_add(timeout)
            .unwrap_or_else(SystemTime::now);
        Request {
            run_id: run_id.to_owned(),
            step: step.to_owned(),
            prompt: prompt.to_owned(),
            approvers: approvers.to_vec(),
            deadline: rfc3339(deadline),
            not_approved_by: None,
        }
    }

    /// Whether `decision` counts for this request: an approval by the one
    /// who may not approve does not (their rejection does).
    pub fn counts(&self, decision: &Decision) -> bool {
        !(decision.approved && self.not_approved_by.as_deref() == Some(decision.by.as_str()))
    }
}

/// One answer to a request: approve or reject, by whom, when, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// `true` approves, `false` rejects.
    pub approved: bool,
    /// Who answered (see [`crate::identity`]).
    pub by: String,
    /// Where that name came from (`--as`, `RUNNER_USER`, `git user.email`,
    /// `os user`, …); absent in decisions of older runners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by_source: Option<String>,
    /// The role they answered as (`--role`), if any.
    #[serde(default)]
    pub role: Option<String>,
    /// When (RFC 3339, UTC).
    pub at: String,
    /// Why, in their words.
    #[serde(default)]
    pub comment: Option<String>,
    /// How the answer came: `terminal` or `command`.
    pub via: String,
}

impl Decision {
    /// A decision made now by `by`.
    pub fn now(
        approved: bool,
        by: &crate::identity::Principal,
        role: Option<String>,
        comment: Option<String>,
        via: &str,
    ) -> Self {
        Decision {
            approved,
            by: by.name.clone(),
            by_source: Some(by.source.as_str().to_owned()),
            role,
            at: rfc3339(SystemTime::now()),
            comment,
            via: via.to_owned(),
        }
    }

    /// Who decided, with where the name came from when it was recorded:
    /// `alice (os user)`.
    pub fn who(&self) -> String {
        crate::identity::recorded(Some(&self.by), self.by_source.as_deref()).unwrap_or_default()
    }

    /// `approved by alice (os user) as tech-lead ("looks fine")`, for messages.
    pub fn describe(&self) -> String {
        let mut text = format!(
            "{} by {}",
            if self.approved {
                "approved"
            } else {
                "rejected"
            },
            self.who()
        );
        if let Some(role) = &self.role {
            text.push_str(&format!(" as {role}"));
        }
        if let Some(comment) = &self.comment {
            text.push_str(&format!(" ({comment:?})"));
        }
        text
    }
}

/// Where a run's approval requests wait and their answers are kept: the one
/// place every front end (the terminal of the run, `runner approve`, later a
/// server and its web page) answers through, and the engine reads from. The
/// default is [`FileApprovals`], the mailbox of files under the state dir.
///
/// Implementations check the ids they are given (they may become file names
/// or keys) and refuse bad ones with `InvalidInput`.
pub trait Approvals: Send + Sync {
    /// Announces that the run waits for `request.step`; answers are taken from
    /// now on. Open a step once per run: answers already recorded count.
    fn open(&self, request: &Request) -> io::Result<()>;
    /// The request `run_id` waits on for `step`, if it waits.
    fn request(&self, run_id: &str, step: &str) -> Option<Request>;
    /// The steps `run_id` waits on, sorted.
    fn pending(&self, run_id: &str) -> Vec<String>;
    /// Why no answer can be given to `run_id` at all (no such run waits or ever
    /// waited), for `runner approve`'s message; `Ok` when it has requests.
    fn known(&self, run_id: &str) -> Result<(), String>;
    /// Every answer recorded for `step`, oldest first.
    fn decisions(&self, run_id: &str, step: &str) -> io::Result<Vec<Decision>>;
    /// Records `decision` as is, without the checks of [`submit`].
    fn record(&self, run_id: &str, step: &str, decision: &Decision) -> io::Result<()>;
    /// The run no longer waits for `step`; the answers stay as the record.
    fn close(&self, run_id: &str, step: &str);

    /// Returns when an answer for `step` may have come, and at the latest
    /// after `within`. The default looks again every 200 ms; a store that
    /// hears of answers (a database's notifications) returns as one comes.
    fn changed<'a>(
        &'a self,
        _run_id: &'a str,
        _step: &'a str,
        within: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>> {
        Box::pin(tokio::time::sleep(POLL.min(within)))
    }
}

/// What `runner approve` does: records `decision` for `step` of `run_id`.
///
/// Refused, with a message that says what is wrong and what to do, when the run
/// does not wait for that step (the message lists what it does wait for, or says
/// there is no such run), when `decision.role` is not one of the request's roles,
/// or when the request lists roles and `decision.role` is `None`. A request without
/// roles takes an answer from anyone; a role given then is only recorded.
pub fn submit(
    approvals: &dyn Approvals,
    run_id: &str,
    step: &str,
    decision: Decision,
) -> Result<(), String> {
    check_id(run_id, IdKind::Run)?;
    check_id(step, IdKind::Step)?;
    approvals.known(run_id)?;
    let Some(request) = approvals.request(run_id, step) else {
        let pending = approvals.pending(run_id);
        return Err(match pending.first() {
            None => format!(
                "run `{run_id}` is not waiting for any approval now (it was decided, timed out, or the run ended)"
            ),
            Some(first) => format!(
                "run `{run_id}` is not waiting for an approval of step `{step}`; it waits for: {}. For example: runner approve {run_id} {first}",
                quoted(&pending)
            ),
        });
    };
    if !request.counts(&decision) {
        return Err(format!(
            "step `{step}` of run `{run_id}` may not be approved by `{}`, who started the run (the step says `prevent_self_approval`); another person must approve it (a rejection is taken)",
            decision.by
        ));
    }
    if !request.approvers.is_empty() {
        match &decision.role {
            None => {
                return Err(format!(
                    "step `{step}` of run `{run_id}` needs an answer from each of these roles: {}; say which one you answer as with --role ROLE (e.g. --role {})",
                    quoted(&request.approvers),
                    request.approvers[0]
                ));
            }
            Some(role) if !request.approvers.contains(role) => {
                return Err(format!(
                    "step `{step}` of run `{run_id}` takes no answer as `{role}`; its roles are: {}. Use --role with one of them",
                    quoted(&request.approvers)
                ));
            }
            Some(_) => {}
        }
    }
    approvals
        .record(run_id, step, &decision)
        .map_err(|e| e.to_string())
}

/// Where the decisions of a request stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided yet. `missing`: roles still to approve (empty when the request
    /// has no roles: anyone may answer).
    Pending { missing: Vec<String> },
    /// Approved; the approvals that made it (one per role, in the order of the
    /// roles; or the first approval when there are no roles).
    Approved(Vec<Decision>),
    /// Rejected by this decision (the first rejection).
    Rejected(Decision),
}

/// The verdict of `decisions` (oldest first) for a request with roles `approvers`.
/// Any rejection rejects. With roles, approved once every role has an approval;
/// approvals without a role or with another role do not count. Without roles, the
/// first approval approves.
pub fn verdict(approvers: &[String], decisions: &[Decision]) -> Verdict {
    if let Some(rejection) = decisions.iter().find(|d| !d.approved) {
        return Verdict::Rejected(rejection.clone());
    }
    if approvers.is_empty() {
        return match decisions.first() {
            Some(d) => Verdict::Approved(vec![d.clone()]),
            None => Verdict::Pending {
                missing: Vec::new(),
            },
        };
    }
    let mut approvals = Vec::new();
    let mut missing: Vec<String> = Vec::new();
    for role in approvers {
        if approvals
            .iter()
            .any(|d: &Decision| d.role.as_ref() == Some(role))
            || missing.contains(role)
        {
            continue; // a role listed twice
        }
        match decisions.iter().find(|d| d.role.as_ref() == Some(role)) {
            Some(d) => approvals.push(d.clone()),
            None => missing.push(role.clone()),
        }
    }
    if missing.is_empty() {
        Verdict::Approved(approvals)
    } else {
        Verdict::Pending { missing }
    }
}

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved, by these decisions (see [`Verdict::Approved`]).
    Approved(Vec<Decision>),
    /// Rejected by this decision.
    Rejected(Decision),
    /// No verdict before the timeout.
    TimedOut,
}

/// Waits up to `timeout` for a verdict on `request`, looking at `approvals`
/// whenever they may have changed ([`Approvals::changed`]). Whoever answers (`runner approve`, a terminal, later a server)
/// answers through the same store; the engine never talks to a person itself.
/// The request must be opened first ([`Approvals::open`]) so that answers are
/// taken; close it afterwards.
pub async fn wait(approvals: &dyn Approvals, request: &Request, timeout: Duration) -> Outcome {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        // An approval the request does not take counts for nothing, however
        // it got into the store.
        let decisions: Vec<Decision> = approvals
            .decisions(&request.run_id, &request.step)
            .unwrap_or_default()
            .into_iter()
            .filter(|d| request.counts(d))
            .collect();
        match verdict(&request.approvers, &decisions) {
            Verdict::Pending { .. } => {}
            Verdict::Approved(by) => return Outcome::Approved(by),
            Verdict::Rejected(by) => return Outcome::Rejected(by),
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return Outcome::TimedOut;
        }
        approvals
            .changed(&request.run_id, &request.step, deadline - now)
            .await;
    }
}

/// Refuses a run id that could not be one (it would become a file name).
pub fn check_run_id(id: &str) -> Result<(), String> {
    check_id(id, IdKind::Run)
}

/// Refuses a step id that could not be one.
pub fn check_step_id(id: &str) -> Result<(), String> {
    check_id(id, IdKind::Step)
}

/// Which id a name is, for messages and for what it may contain.
#[derive(Clone, Copy)]
enum IdKind {
    Run,
    Step,
}

/// Ids become file names: letters, digits, `-`, `_` (and `.` inside run ids, not
/// first); at most 128 characters. Step ids may not hold `.`, which separates the
/// parts of the mailbox's file names.
fn check_id(id: &str, kind: IdKind) -> Result<(), String> {
    let (what, dots) = match kind {
        IdKind::Run => ("run id", true),
        IdKind::Step => ("step id", false),
    };
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{id}` is not a {what}: use letters, digits, `-` and `_`{}",
            if dots { " (and `.`, not first)" } else { "" }
        ))
    }
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub use crate::clock::rfc3339;

#[cfg(test)]
pub(crate) mod testing {
    //! What the approval tests here and in `cli::prompt` share.
    use std::fs;
    use std::path::PathBuf;

    use super::mailbox::next_seq;
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir().join(format!(
                "runner-approval-{name}-{}-{}",
                std::process::id(),
                next_seq()
            ));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn alice() -> crate::identity::Principal {
        crate::identity::Principal {
            name: "alice".into(),
            source: crate::identity::Source::Flag,
        }
    }

    pub(crate) fn decision(approved: bool, role: Option<&str>) -> Decision {
        Decision {
            approved,
            by: "alice".into(),
            by_source: None,
            role: role.map(str::to_owned),
            at: "2025-01-31T09:05:00Z".into(),
            comment: None,
            via: "command".into(),
        }
    }

    pub(crate) fn roles(names: &[&str]) -> Vec<String> {
        names.iter().map(|r| (*r).to_owned()).collect()
    }

    pub(crate) fn request(run: &str, step: &str, approvers: &[&str]) -> Request {
        Request::new(
            run,
            step,
            "roll back?",
            &roles(approvers),
            Duration::from_secs(60),
        )
    }

    pub(crate) fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::UNIX_EPOCH;

    use super::testing::*;
    use super::*;

    #[test]
    fn without_roles_the_first_approval_approves() {
        assert_eq!(verdict(&[], &[]), Verdict::Pending { missing: vec![] });
        let first = decision(true, None);
        let mut second = decision(true, Some("on-call"));
        second.by = "bob".into();
        assert_eq!(
            verdict(&[], &[first.clone(), second]),
            Verdict::Approved(vec![first])
        );
    }

    #[test]
    fn with_two_roles_one_missing_is_pending() {
        let lead = decision(true, Some("tech-lead"));
        let approvers = roles(&["tech-lead", "on-call"]);
        assert_eq!(
            verdict(&approvers, std::slice::from_ref(&lead)),
            Verdict::Pending {
                missing: roles(&["on-call"])
            }
        );
        let call = decision(true, Some("on-call"));
        assert_eq!(
            verdict(&approvers, &[call.clone(), lead.clone()]),
            Verdict::Approved(vec![lead, call])
        );
    }

    #[test]
    fn any_rejection_rejects() {
        let approvers = roles(&["tech-lead", "on-call"]);
        let no = decision(false, Some("on-call"));
        let all = [
            decision(true, Some("tech-lead")),
            no.clone(),
            decision(true, Some("on-call")),
        ];
        assert_eq!(verdict(&approvers, &all), Verdict::Rejected(no.clone()));
        assert_eq!(
            verdict(&[], &[decision(true, None), no.clone()]),
            Verdict::Rejected(no)
        );
    }

    #[test]
    fn approvals_of_unlisted_roles_do_not_count() {
        let approvers = roles(&["tech-lead"]);
        let all = [decision(true, Some("intern")), decision(true, None)];
        assert_eq!(
            verdict(&approvers, &all),
            Verdict::Pending {
                missing: roles(&["tech-lead"])
            }
        );
    }

    #[test]
    fn submit_refuses_a_run_that_does_not_wait() {
        let tmp = TempDir::new("no-run");
        let err = submit(
            &FileApprovals::new(&tmp.0),
            "r1",
            "deploy",
            decision(true, None),
        )
        .unwrap_err();
        assert_eq!(
            err,
            format!(
                "no run `r1` is waiting for an approval (nothing in {}); check the run id in the run's output, and that RUNNER_STATE_DIR is the same as the run's",
                tmp.0.join("approvals/r1").display()
            )
        );
        // The run exists and waits, but for another step.
        let mailbox = Mailbox::new(&tmp.0, "r1");
        mailbox.open(&request("r1", "confirm", &[])).unwrap();
        let err = submit(
            &FileApprovals::new(&tmp.0),
            "r1",
            "deploy",
            decision(true, None),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "run `r1` is not waiting for an approval of step `deploy`; it waits for: `confirm`. For example: runner approve r1 confirm"
        );
        mailbox.close("confirm");
        let err = submit(
            &FileApprovals::new(&tmp.0),
            "r1",
            "confirm",
            decision(true, None),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "run `r1` is not waiting for any approval now (it was decided, timed out, or the run ended)"
        );
        assert_eq!(mailbox.decisions("confirm").unwrap(), vec![]);
    }

    #[test]
    fn submit_refuses_a_role_the_request_does_not_list() {
        let tmp = TempDir::new("role");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        mailbox
            .open(&request("r1", "deploy", &["tech-lead", "on-call"]))
            .unwrap();
        let err = submit(
            &FileApprovals::new(&tmp.0),
            "r1",
            "deploy",
            decision(true, Some("intern")),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "step `deploy` of run `r1` takes no answer as `intern`; its roles are: `tech-lead`, `on-call`. Use --role with one of them"
        );
        assert_eq!(mailbox.decisions("deploy").unwrap(), vec![]);
    }

    #[test]
    fn submit_needs_a_role_when_the_request_lists_roles() {
        let tmp = TempDir::new("no-role");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        mailbox
            .open(&request("r1", "deploy", &["tech-lead", "on-call"]))
            .unwrap();
        let err = submit(
            &FileApprovals::new(&tmp.0),
            "r1",
            "deploy",
            decision(true, None),
        )
        .unwrap_err();
        assert_eq!(
            err,
            "step `deploy` of run `r1` needs an answer from each of these roles: `tech-lead`, `on-call`; say which one you answer as with --role ROLE (e.g. --role tech-lead)"
        );
    }

    #[test]
    fn submit_refuses_ids_that_are_not_file_names() {
        let tmp = TempDir::new("ids");
        for (run, step) in [
            ("..", "deploy"),
            ("r1", "../x"),
            ("", "deploy"),
            ("r1", ""),
            ("a/b", "s"),
        ] {
            assert!(
                submit(&FileApprovals::new(&tmp.0), run, step, decision(true, None)).is_err(),
                "{run} {step}"
            );
        }
        let mailbox = Mailbox::new(&tmp.0, "r1");
        let err = mailbox.open(&request("r1", "a.b", &[])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!tmp.0.join("approvals").exists());
    }

    #[test]
    fn open_submit_decisions_round_trip() {
        let tmp = TempDir::new("round-trip");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        let req = request("r1", "deploy", &["tech-lead", "on-call"]);
        mailbox.open(&req).unwrap();
        assert_eq!(mailbox.request("deploy"), Some(req));
        assert_eq!(mailbox.pending(), vec!["deploy".to_owned()]);
        let mut first = decision(true, Some("tech-lead"));
        first.comment = Some("checked the diff".into());
        let second = decision(false, Some("on-call"));
        submit(&FileApprovals::new(&tmp.0), "r1", "deploy", first.clone()).unwrap();
        submit(&FileApprovals::new(&tmp.0), "r1", "deploy", second.clone()).unwrap();
        // Garbage and half-written files are skipped.
        fs::write(mailbox.dir().join("deploy.decision.9-garbled.json"), "{").unwrap();
        fs::write(mailbox.dir().join(".deploy.decision.1.json.7-0.tmp"), "{").unwrap();
        assert_eq!(mailbox.decisions("deploy").unwrap(), vec![first, second]);
        assert_eq!(mailbox.decisions("other").unwrap(), vec![]);
        mailbox.close("deploy");
        assert_eq!(mailbox.pending(), Vec::<String>::new());
        assert_eq!(mailbox.decisions("deploy").unwrap().len(), 2);
    }

    #[test]
    fn wait_returns_approved_when_another_process_approves() {
        let tmp = TempDir::new("wait-approved");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        let req = request("r1", "deploy", &["tech-lead"]);
        mailbox.open(&req).unwrap();
        let approval = decision(true, Some("tech-lead"));
        let outcome = runtime().block_on(async {
            let state = tmp.0.clone();
            let sent = approval.clone();
            let answer = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                submit(&FileApprovals::new(&state), "r1", "deploy", sent)
            });
            let outcome = wait(&FileApprovals::new(&tmp.0), &req, Duration::from_secs(20)).await;
            assert_eq!(answer.await.unwrap(), Ok(()));
            outcome
        });
        assert_eq!(outcome, Outcome::Approved(vec![approval]));
    }

    /// `prevent_self_approval`: the run's starter may reject but not approve,
    /// through `submit` and however else an approval got into the store.
    #[test]
    fn the_runs_starter_may_not_approve_when_the_step_says_so() {
        let tmp = TempDir::new("self-approval");
        let store = FileApprovals::new(&tmp.0);
        let mut req = request("r1", "deploy", &[]);
        req.not_approved_by = Some("alice".into());
        store.open(&req).unwrap();
        let own = decision(true, None);
        let e = submit(&store, "r1", "deploy", own.clone()).unwrap_err();
        assert!(
            e.contains("may not be approved by `alice`, who started the run")
                && e.contains("prevent_self_approval"),
            "{e}"
        );
        assert!(store.decisions("r1", "deploy").unwrap().is_empty());
        // Written past `submit`: the waiting run does not count it.
        store.record("r1", "deploy", &own).unwrap();
        let outcome = runtime().block_on(wait(&store, &req, Duration::from_millis(300)));
        assert_eq!(outcome, Outcome::TimedOut);
        // Someone else approves.
        let mut bob = decision(true, None);
        bob.by = "bob".into();
        submit(&store, "r1", "deploy", bob.clone()).unwrap();
        let outcome = runtime().block_on(wait(&store, &req, Duration::from_millis(300)));
        assert_eq!(outcome, Outcome::Approved(vec![bob]));
        // The starter's rejection is taken.
        let mut req2 = request("r1", "again", &[]);
        req2.not_approved_by = Some("alice".into());
        store.open(&req2).unwrap();
        let no = decision(false, None);
        submit(&store, "r1", "again", no.clone()).unwrap();
        let outcome = runtime().block_on(wait(&store, &req2, Duration::from_millis(300)));
        assert_eq!(outcome, Outcome::Rejected(no));
    }

    #[test]
    fn wait_times_out_without_an_answer() {
        let tmp = TempDir::new("wait-timeout");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        let req = request("r1", "deploy", &[]);
        mailbox.open(&req).unwrap();
        let outcome = runtime().block_on(wait(
            &FileApprovals::new(&tmp.0),
            &req,
            Duration::from_millis(300),
        ));
        assert_eq!(outcome, Outcome::TimedOut);
    }

    #[test]
    fn wait_returns_rejected_on_a_rejection() {
        let tmp = TempDir::new("wait-rejected");
        let mailbox = Mailbox::new(&tmp.0, "r1");
        let req = request("r1", "deploy", &["tech-lead", "on-call"]);
        mailbox.open(&req).unwrap();
        let mut no = decision(false, Some("on-call"));
        no.comment = Some("error rate is dropping".into());
        let outcome = runtime().block_on(async {
            let state = tmp.0.clone();
            let sent = no.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                submit(&FileApprovals::new(&state), "r1", "deploy", sent)
            });
            wait(&FileApprovals::new(&tmp.0), &req, Duration::from_secs(20)).await
        });
        assert_eq!(outcome, Outcome::Rejected(no));
    }

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3_723); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T01:02:03Z");
        let later = UNIX_EPOCH + Duration::from_secs(1_738_314_300);
        assert_eq!(rfc3339(later), "2025-01-31T09:05:00Z");
    }
}
