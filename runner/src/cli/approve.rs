//! `runner approve`: answers a run that waits for a manual approval, from any shell
//! or CI job on the machine (see [`crate::engine::approval`]).

use super::{ApproveArgs, EXIT_INVALID, EXIT_OK, print};
use crate::engine::approval::{Decision, submit};

/// Records the decision; 0 with a one-line confirmation, 2 with the reason.
pub fn approve(args: &ApproveArgs) -> u8 {
    let service = super::exec::service(Some(&super::JournalArg {
        journal: None,
        database: args.database.clone(),
    }));
    let approvals = if service.settings().database.is_some() {
        match service.shared_approvals() {
            Ok(a) => a,
            Err(e) => {
                eprintln!("error: {e}");
                return EXIT_INVALID;
            }
        }
    } else {
        let Some(approvals) = service.approvals() else {
            eprintln!(
                "no state directory to look for the run's approvals in; set RUNNER_STATE_DIR to an absolute path (or HOME) as for the run"
            );
            return EXIT_INVALID;
        };
        approvals
    };
    let decision = Decision::now(
        !args.reject,
        &crate::identity::current(args.actor.as_deref()),
        args.role.clone(),
        args.comment.clone().filter(|c| !c.trim().is_empty()),
        "command",
    );
    let confirmation = format!(
        "step `{}` of run `{}`: {}\n",
        args.step,
        args.run_id,
        decision.describe()
    );
    match submit(&*approvals, &args.run_id, &args.step, decision) {
        Ok(()) => {
            print(&confirmation);
            EXIT_OK
        }
        Err(message) => {
            eprintln!("{message}");
            EXIT_INVALID
        }
    }
}
