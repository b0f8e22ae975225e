//! Answering approval steps over HTTP, and what waits for whom.
//!
//! Every way of answering (the API, Slack, a signed link) ends in
//! [`decide_as`]: the caller's roles are checked against the step's (or, for
//! a step without roles, against `access.operate`), the run's starter is
//! refused under `prevent_self_approval`, and the decision is recorded with
//! the authenticated principal through the same `Approvals` store the engine
//! waits on ([`crate::engine::approval::submit`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::runs::{check_run, quoted};
use super::{ApiError, App, JsonBody};
use crate::engine::approval::{self, Approvals, Decision};
use crate::record;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecideBody {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    comment: Option<String>,
    /// The role to answer as; by default the first role of the step's that
    /// the caller holds and that has not approved yet.
    #[serde(default)]
    role: Option<String>,
}

/// Records `approved` by `caller` for `step` of `run_id`, after the checks:
/// the caller holds the role (or, for a step without roles, an operator's
/// role), is not the run's starter when the step forbids self-approval.
/// An answer to an approval step, before it is checked.
pub struct Answer {
    pub approved: bool,
    /// The role to answer as (else chosen from the caller's).
    pub role: Option<String>,
    pub comment: Option<String>,
    /// How it came: `api`, `slack`, `link`.
    pub via: &'static str,
}

pub fn decide_as(
    app: &App,
    caller: &Caller,
    run_id: &str,
    step: &str,
    answer: Answer,
) -> Result<Decision, ApiError> {
    let Answer {
        approved,
        role,
        comment,
        via,
    } = answer;
    check_run(run_id)?;
    approval::check_step_id(step).map_err(ApiError::bad_request)?;
    let Some(request) = app.approvals.request(run_id, step) else {
        let pending = app.approvals.pending(run_id);
        return Err(if pending.is_empty() {
            ApiError::not_found(format!(
                "run `{run_id}` is not waiting for any approval (it was decided, timed out, or the run ended)"
            ))
        } else {
            ApiError::not_found(format!(
                "run `{run_id}` is not waiting for an approval of step `{step}`; it waits for: {}",
                quoted(&pending)
            ))
        });
    };
    let role = if request.approvers.is_empty() {
        if !caller.has_any(&app.config.access.operate) {
            return Err(ApiError::forbidden(format!(
                "step `{step}` names no approver roles, so it takes an answer from an operator: `{}` needs one of the roles {} (access.operate)",
                caller.name,
                quoted(&app.config.access.operate)
            )));
        }
        None
    } else {
        match role {
            Some(r) if !request.approvers.contains(&r) => {
                return Err(ApiError::forbidden(format!(
                    "step `{step}` takes no answer as `{r}`; it needs: {}",
                    quoted(&request.approvers)
                )));
            }
            Some(r) if !caller.has(&r) => {
                return Err(ApiError::forbidden(format!(
                    "`{}` does not hold the role `{r}`; step `{step}` needs: {}",
                    caller.name,
                    quoted(&request.approvers)
                )));
            }
            Some(r) => Some(r),
            None => {
                let decided: Vec<String> = app
                    .approvals
                    .decisions(run_id, step)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|d| request.counts(d))
                    .filter_map(|d| d.role)
                    .collect();
                let mine: Vec<&String> =
                    request.approvers.iter().filter(|r| caller.has(r)).collect();
                let Some(first) = mine.iter().find(|r| !decided.contains(r)).or(mine.first())
                else {
                    return Err(ApiError::forbidden(format!(
                        "`{}` holds none of the roles step `{step}` of run `{run_id}` needs: {}",
                        caller.name,
                        quoted(&request.approvers)
                    )));
                };
                Some((*first).clone())
            }
        }
    };
    let decision = Decision::now(
        approved,
        &caller.principal(),
        role,
        comment.filter(|c| !c.trim().is_empty()),
        via,
    );
    if !request.counts(&decision) {
        return Err(ApiError::forbidden(format!(
            "step `{step}` of run `{run_id}` may not be approved by `{}`, who started the run (the step says `prevent_self_approval`); another person must approve it (a rejection is taken)",
            caller.name
        )));
    }
    approval::submit(app.approvals.as_ref(), run_id, step, decision.clone())
        .map_err(ApiError::conflict)?;
    Ok(decision)
}

/// `POST /api/v1/runs/{id}/approvals/{step}`.
pub async fn decide(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    JsonBody(body): JsonBody<DecideBody>,
) -> Result<axum::Json<Value>, ApiError> {
    let approved = match body.decision.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "decision `{other}` is not `approve` or `reject`"
            )));
        }
    };
    let decision = tokio::task::block_in_place(|| {
        decide_as(
            &app,
            &caller,
            &id,
            &step,
            Answer {
                approved,
                role: body.role,
                comment: body.comment,
                via: "api",
            },
        )
    })?;
    Ok(axum::Json(
        json!({ "run": id, "step": step, "decision": decision }),
    ))
}

/// `GET /api/v1/approvals`: what waits for the caller: every pending request
/// of a running run that one of their roles can answer and that they have not
/// answered, oldest first.
pub async fn pending(
    State(app): State<Arc<App>>,
    caller: Caller,
) -> Result<axum::Json<Value>, ApiError> {
    let running = app
        .read(|j| {
            j.list(&record::Filter {
                status: Some("running"),
                ..Default::default()
            })
        })
        .await?;
    let mut mine = Vec::new();
    for run in running.iter().rev() {
        for step in app.approvals.pending(&run.id) {
            let Some(request) = app.approvals.request(&run.id, &step) else {
                continue;
            };
            let can = if request.approvers.is_empty() {
                caller.has_any(&app.config.access.operate)
            } else {
                caller.has_any(&request.approvers)
            };
            let answered = app
                .approvals
                .decisions(&run.id, &step)
                .unwrap_or_default()
                .iter()
                .any(|d| d.by == caller.name);
            let own = request.not_approved_by.as_deref() == Some(caller.name.as_str());
            if can && !answered {
                mine.push(json!({
                    "run": run.id,
                    "playbook": run.playbook,
                    "request": request,
                    "started_by": run.started_by,
                    "self_approval_refused": own,
                    "url": app.link(&format!("/api/v1/runs/{}", run.id)),
                }));
            }
        }
    }
    Ok(axum::Json(json!({ "approvals": mine })))
}
