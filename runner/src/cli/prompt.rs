//! Approvals answered on the terminal the run was started from.
//!
//! The engine asks for approvals through the approvals store and waits for a
//! verdict there; it never reads the terminal. This front end watches the run's
//! events: when a step asks for an approval (and stdin is a terminal), it asks
//! the question on stderr, one per missing role, and records each answer in
//! the same store `runner approve` writes to (`via: "terminal"`). When the
//! step is decided some other way (another shell, a timeout), a question still
//! on the screen is dropped with a note.
//!
//! The terminal is read by one detached thread for the whole process, never
//! joined: a read that never returns cannot hold up the run or its exit. (Not
//! `spawn_blocking`: dropping a tokio runtime waits for its blocking tasks.)

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::engine::approval::{Approvals, Decision, Request, Verdict, verdict};
use crate::identity::Principal;

/// Where the questions go (stderr; a buffer in tests).
type Prompts = Box<dyn Write + Send>;

/// Asks the run's approval questions on the terminal.
pub struct Prompter {
    approvals: Arc<dyn Approvals>,
    by: Principal,
    announced: bool,
    lines: &'static Mutex<Receiver<String>>,
    prompts: Arc<dyn Fn() -> Prompts + Send + Sync>,
    talks: HashMap<String, Arc<Talk>>,
}

impl Prompter {
    /// Questions on stderr, answers from stdin, recorded in `approvals` as
    /// given by `by`. `announced`: the front end shows the request itself (the
    /// live tree), so only the questions are asked.
    pub fn new(approvals: Arc<dyn Approvals>, by: Principal, announced: bool) -> Prompter {
        Prompter::with_io(
            approvals,
            by,
            announced,
            stdin_lines(),
            Arc::new(|| Box::new(io::stderr()) as Prompts),
        )
    }

    fn with_io(
        approvals: Arc<dyn Approvals>,
        by: Principal,
        announced: bool,
        lines: &'static Mutex<Receiver<String>>,
        prompts: Arc<dyn Fn() -> Prompts + Send + Sync>,
    ) -> Prompter {
        Prompter {
            approvals,
            by,
            announced,
            lines,
            prompts,
            talks: HashMap::new(),
        }
    }

    /// Step `step` of run `run_id` waits for an approval: ask.
    pub fn requested(&mut self, run_id: &str, step: &str) {
        let Some(request) = self.approvals.request(run_id, step) else {
            return;
        };
        let talk = Arc::new(Talk::default());
        let (approvals, lines, mut out) = (self.approvals.clone(), self.lines, (self.prompts)());
        let (by, announced, thread_talk) = (self.by.clone(), self.announced, talk.clone());
        let spawned = std::thread::Builder::new()
            .name("approval-prompt".into())
            .spawn(move || {
                let who = Who {
                    by: &by,
                    announced,
                };
                let record = |d: Decision| {
                    if let Err(e) = approvals.record(&request.run_id, &request.step, &d) {
                        let _ = writeln!(
                            io::stderr(),
                            "error: your answer was not recorded: {e}; answer again, or with `runner approve`"
                        );
                    }
                };
                converse(&*approvals, &request, lines, &mut out, &thread_talk, who, &record);
            });
        if spawned.is_ok() {
            self.talks.insert(step.to_owned(), talk);
        }
    }

    /// Step `step` was decided (`outcome`: approved, rejected, timed_out, by
    /// `decisions`): a question still on the screen is moot; say so.
    pub fn decided(&mut self, step: &str, outcome: &str, decisions: &[Decision]) -> Option<String> {
        let talk = self.talks.remove(step)?;
        if !talk.stop() {
            return None;
        }
        Some(match outcome {
            "timed_out" => format!("\nno decision on step `{step}` in time"),
            _ => format!(
                "\nstep `{step}` was decided from another shell ({}); no answer is needed here",
                describe_all(decisions)
            ),
        })
    }
}

impl Drop for Prompter {
    fn drop(&mut self) {
        for talk in self.talks.values() {
            talk.stop();
        }
    }
}

/// What the waiting task and the question thread share.
#[derive(Default)]
struct Talk {
    /// Set by the waiting side: stop asking.
    done: AtomicBool,
    /// Set by the question thread while a question waits for its answer.
    awaiting: AtomicBool,
}

impl Talk {
    /// Stops the questions; tells whether one was waiting for an answer.
    fn stop(&self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        self.awaiting.load(Ordering::SeqCst)
    }

    fn is_done(&self) -> bool {
        self.done.load(Ordering::SeqCst)
    }
}

fn describe_all(decisions: &[Decision]) -> String {
    decisions
        .iter()
        .map(Decision::describe)
        .collect::<Vec<_>>()
        .join("; ")
}

/// The lines typed on stdin, read by one detached thread for the whole process, so
/// that a question nobody answered does not swallow the answer to the next one.
fn stdin_lines() -> &'static Mutex<Receiver<String>> {
    static LINES: OnceLock<Mutex<Receiver<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        let _ = std::thread::Builder::new()
            .name("stdin-lines".into())
            .spawn(move || {
                let stdin = io::stdin();
                let mut line = String::new();
                loop {
                    line.clear();
                    match stdin.lock().read_line(&mut line) {
                        Ok(0) | Err(_) => return, // end of input: the channel closes
                        Ok(_) => {
                            if tx.send(line.clone()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        Mutex::new(rx)
    })
}

/// Asks the question on `out` and reads answers from `lines` until the request is
/// decided, `talk` is stopped, or the input ends; each answer goes to `answer`.
fn converse(
    approvals: &dyn Approvals,
    request: &Request,
    lines: &Mutex<Receiver<String>>,
    out: &mut dyn Write,
    talk: &Talk,
    who: Who<'_>,
    answer: &dyn Fn(Decision),
) {
    let by = who.by;
    // One conversation at a time (parallel approval steps take turns).
    let lines = loop {
        if talk.is_done() {
            return;
        }
        match lines.try_lock() {
            Ok(guard) => break guard,
            Err(std::sync::TryLockError::Poisoned(p)) => break p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                std::thread::sleep(Duration::from_millis(100))
            }
        }
    };
    // Lines typed before the question was shown answer nothing.
    while lines.try_recv().is_ok() {}
    let read = |out: &mut dyn Write, question: &str| -> Option<String> {
        if talk.is_done() {
            return None;
        }
        let _ = write!(out, "{question}");
        let _ = out.flush();
        talk.awaiting.store(true, Ordering::SeqCst);
        let reply = loop {
            if talk.is_done() {
                break None;
            }
            match lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => break Some(line.trim().to_owned()),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break None,
            }
        };
        talk.awaiting.store(false, Ordering::SeqCst);
        reply
    };
    let roles: Vec<Option<&String>> = if request.approvers.is_empty() {
        vec![None]
    } else {
        request.approvers.iter().map(Some).collect()
    };
    let how = match request.approvers.first() {
        Some(role) => format!(
            "runner approve {} {} --role {role}",
            request.run_id, request.step
        ),
        None => format!("runner approve {} {}", request.run_id, request.step),
    };
    if who.announced {
        let _ = writeln!(
            out,
            "answer here, or from another shell with the command above:"
        );
    } else {
        announce(out, request, &how);
    }
    for role in roles {
        // Someone may have answered for this role from elsewhere meanwhile.
        let decisions = approvals
            .decisions(&request.run_id, &request.step)
            .unwrap_or_default();
        match verdict(&request.approvers, &decisions) {
            Verdict::Pending { missing } => {
                if role.is_some_and(|r| !missing.contains(r)) {
                    continue;
                }
            }
            _ => return,
        }
        let question = match role {
            Some(role) => format!("approve as {role}? [y/N] "),
            None => "approve? [y/N] ".to_owned(),
        };
        let approved = loop {
            let Some(reply) = read(out, &question) else {
                return;
            };
            match reply.to_ascii_lowercase().as_str() {
                "y" | "yes" => break true,
                "" | "n" | "no" => break false,
                _ => {
                    let _ = writeln!(out, "answer y (approve) or n (reject)");
                }
            }
        };
        let ask = if approved {
            "comment (optional): "
        } else {
            "reason (optional): "
        };
        let Some(comment) = read(out, ask) else {
            return;
        };
        let comment = Some(comment).filter(|c| !c.is_empty());
        answer(Decision::now(
            approved,
            by,
            role.cloned(),
            comment,
            "terminal",
        ));
        if !approved {
            return;
        }
    }
}

/// The request, on the terminal, for a front end that did not show it.
fn announce(out: &mut dyn Write, request: &Request, how: &str) {
    let _ = writeln!(
        out,
        "\napproval needed for step `{}` of run `{}`: {}\n{}answer here, or from another shell: {how} (until {})",
        request.step,
        request.run_id,
        // The prompt may quote a plugin's outputs through `${{ }}`.
        crate::host::text::printable(&request.prompt),
        if request.approvers.is_empty() {
            String::new()
        } else {
            format!(
                "each of these must approve: {}; ",
                request.approvers.join(", ")
            )
        },
        request.deadline,
    );
}

/// Who answers on the terminal, and whether the front end showed the request
/// already (the live tree).
#[derive(Clone, Copy)]
struct Who<'a> {
    by: &'a Principal,
    announced: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::approval::testing::*;
    use crate::engine::approval::{FileApprovals, Outcome, submit, wait};

    fn sink() -> Arc<dyn Fn() -> Prompts + Send + Sync> {
        Arc::new(|| Box::new(io::sink()) as Prompts)
    }

    /// What the terminal shows: the whole request when nobody showed it, only
    /// the question when the live tree did (it printed the request itself);
    /// the answer is recorded with who sits at the terminal.
    #[test]
    fn the_terminal_repeats_no_request_the_live_tree_showed() {
        for announced in [false, true] {
            let tmp = TempDir::new(&format!("announce-{announced}"));
            let approvals: Arc<dyn Approvals> = Arc::new(FileApprovals::new(&tmp.0));
            let req = request("r1", "deploy", &[]);
            approvals.open(&req).unwrap();
            let (tx, rx) = std::sync::mpsc::channel();
            let lines: &'static Mutex<Receiver<String>> = Box::leak(Box::new(Mutex::new(rx)));
            let typer = std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                tx.send("y\n".to_owned()).unwrap();
                tx.send("\n".to_owned()).unwrap();
                tx
            });
            let mut out = Vec::new();
            let answers = std::sync::Mutex::new(Vec::new());
            let who = Who {
                by: &alice(),
                announced,
            };
            converse(
                &*approvals,
                &req,
                lines,
                &mut out,
                &Talk::default(),
                who,
                &|d| answers.lock().unwrap().push(d),
            );
            drop(typer.join().unwrap());
            let shown = String::from_utf8(out).unwrap();
            assert_eq!(
                shown.matches(&req.prompt).count(),
                usize::from(!announced),
                "{shown}"
            );
            assert_eq!(shown.matches("approve? [y/N]").count(), 1, "{shown}");
            let answers = answers.into_inner().unwrap();
            assert_eq!(answers.len(), 1);
            assert!(answers[0].approved);
            assert_eq!(answers[0].who(), "alice (--as)");
        }
    }

    #[test]
    fn terminal_answers_are_decisions_recorded_in_the_mailbox() {
        let tmp = TempDir::new("terminal");
        let approvals: Arc<dyn Approvals> = Arc::new(FileApprovals::new(&tmp.0));
        let req = request("r1", "deploy", &["tech-lead", "on-call"]);
        approvals.open(&req).unwrap();
        // on-call answers from another shell; the terminal answers for tech-lead.
        submit(&*approvals, "r1", "deploy", decision(true, Some("on-call"))).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines: &'static Mutex<Receiver<String>> = Box::leak(Box::new(Mutex::new(rx)));
        let typer = std::thread::spawn(move || {
            // After the question is up (earlier lines are discarded).
            std::thread::sleep(Duration::from_millis(300));
            tx.send("maybe\n".to_owned()).unwrap();
            tx.send("y\n".to_owned()).unwrap();
            tx.send("  looks right \n".to_owned()).unwrap();
            tx
        });
        let mut prompter = Prompter::with_io(approvals.clone(), alice(), false, lines, sink());
        prompter.requested("r1", "deploy");
        let outcome = runtime().block_on(wait(&*approvals, &req, Duration::from_secs(20)));
        let notes = prompter.decided("deploy", "approved", &[]);
        drop(typer.join().unwrap());
        let Outcome::Approved(by) = outcome else {
            panic!("not approved: {outcome:?}");
        };
        let vias: Vec<_> = by
            .iter()
            .map(|d| (d.role.clone().unwrap(), d.via.clone()))
            .collect();
        assert_eq!(
            vias,
            vec![
                ("tech-lead".to_owned(), "terminal".to_owned()),
                ("on-call".to_owned(), "command".to_owned())
            ]
        );
        assert_eq!(by[0].comment.as_deref(), Some("looks right"));
        assert!(by[0].approved);
        assert_eq!(approvals.decisions("r1", "deploy").unwrap().len(), 2);
        assert_eq!(notes, None);
    }

    #[test]
    fn a_question_on_the_terminal_is_dropped_when_another_shell_decides() {
        let tmp = TempDir::new("terminal-moot");
        let approvals: Arc<dyn Approvals> = Arc::new(FileApprovals::new(&tmp.0));
        let req = request("r1", "deploy", &[]);
        approvals.open(&req).unwrap();
        // Nobody types anything.
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let lines: &'static Mutex<Receiver<String>> = Box::leak(Box::new(Mutex::new(rx)));
        let approval = decision(true, None);
        let mut prompter = Prompter::with_io(approvals.clone(), alice(), false, lines, sink());
        prompter.requested("r1", "deploy");
        let outcome = runtime().block_on(async {
            let other = approvals.clone();
            let sent = approval.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(300)).await;
                submit(&*other, "r1", "deploy", sent)
            });
            wait(&*approvals, &req, Duration::from_secs(20)).await
        });
        let Outcome::Approved(by) = &outcome else {
            panic!("not approved: {outcome:?}");
        };
        // What the run's front end prints (a line of its own).
        let notes = prompter.decided("deploy", "approved", by).map(|n| n + "\n");
        assert_eq!(outcome, Outcome::Approved(vec![approval]));
        assert_eq!(
            notes.as_deref(),
            Some(
                "\nstep `deploy` was decided from another shell (approved by alice); no answer is needed here\n"
            )
        );
        drop(tx);
    }
}
