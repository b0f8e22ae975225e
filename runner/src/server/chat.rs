//! Approvals answered away from a terminal: Slack's buttons and signed links.
//!
//! Slack (`POST /api/v1/hooks/slack/interactive`): the request is verified by
//! Slack's v0 signature (HMAC-SHA256 of `v0:TIMESTAMP:BODY` with the app's
//! signing secret), its timestamp must be within five minutes and each
//! signature is taken once; the Slack user is mapped to a principal by
//! `slack.users`, whose roles are those the token file gives that principal.
//! A Slack user the configuration does not name decides nothing.
//!
//! Links (`/api/v1/approvals/link`): an operator asks the server for the
//! links of one approval step for named principals
//! (`POST /api/v1/runs/{id}/approvals/{step}/links`) and sends them, by
//! e-mail for example. A link carries the run, the step, the principal, the
//! decision and an expiry, signed with HMAC-SHA256. Opening it (GET) only
//! shows what it would do, as mail scanners open links; the button on that
//! page (POST) decides, once: a principal who has answered the step cannot
//! answer again with a link.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::approvals::{Answer, decide_as};
use super::auth::Caller;
use super::{ApiError, App, JsonBody};
use crate::engine::approval::Approvals;
use crate::identity::Source;

/// The caller a principal name stands for, with the roles the token file
/// gives them, authenticated by `source`.
fn principal(app: &App, name: &str, source: Source) -> Result<Caller, ApiError> {
    let tokens = app.tokens.read().unwrap_or_else(|e| e.into_inner());
    if !tokens.knows(name) {
        return Err(ApiError::forbidden(format!(
            "`{name}` is not a principal of the token file; nothing is decided for an unknown principal"
        )));
    }
    Ok(Caller {
        name: name.to_owned(),
        roles: tokens.roles_of(name),
        source,
    })
}

#[derive(Deserialize)]
struct SlackPayload {
    #[serde(rename = "type")]
    kind: String,
    user: SlackUser,
    #[serde(default)]
    actions: Vec<SlackAction>,
}

#[derive(Deserialize)]
struct SlackUser {
    id: String,
}

#[derive(Deserialize)]
struct SlackAction {
    action_id: String,
    #[serde(default)]
    value: String,
}

/// What a button's `value` holds.
#[derive(Deserialize, serde::Serialize)]
pub struct ButtonValue {
    pub run: String,
    pub step: String,
}

pub async fn slack(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(config) = app.config.slack.clone() else {
        return Err(ApiError::not_found(
            "this server takes no Slack interactions (no `slack:` in its configuration)",
        ));
    };
    let key = super::hooks::key_from_env(&config.signing_secret_env)?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    super::hooks::verify(
        &app.hooks,
        &key,
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
        |ts| {
            let mut base = format!("v0:{ts}:").into_bytes();
            base.extend_from_slice(&body);
            base
        },
        "v0=",
    )?;
    let payload = url::form_urlencoded::parse(&body)
        .find(|(k, _)| k == "payload")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| ApiError::bad_request("the body has no `payload` field"))?;
    let payload: SlackPayload = super::parse_json(payload.as_bytes())?;
    if payload.kind != "block_actions" {
        return Err(ApiError::bad_request(format!(
            "Slack interaction `{}` is not handled; only block_actions (buttons) are",
            payload.kind
        )));
    }
    let Some(name) = config.users.get(&payload.user.id) else {
        return Err(ApiError::forbidden(format!(
            "Slack user `{}` is not mapped to a principal (slack.users); nothing was decided",
            payload.user.id
        )));
    };
    let caller = principal(&app, name, Source::Slack)?;
    let action = payload
        .actions
        .first()
        .ok_or_else(|| ApiError::bad_request("the interaction has no action"))?;
    let approved = match action.action_id.as_str() {
        "approve" => true,
        "reject" => false,
        other => {
            return Err(ApiError::bad_request(format!(
                "action `{other}` is not `approve` or `reject`"
            )));
        }
    };
    let target: ButtonValue = super::parse_json(action.value.as_bytes())?;
    let decision = tokio::task::block_in_place(|| {
        decide_as(
            &app,
            &caller,
            &target.run,
            &target.step,
            Answer {
                approved,
                role: None,
                comment: None,
                via: "slack",
            },
        )
    })?;
    Ok(axum::Json(json!({
        "replace_original": true,
        "text": format!("step `{}` of run `{}`: {}", target.step, target.run, decision.describe()),
    })))
}

/// The fields a link signs.
#[derive(Debug, Deserialize, serde::Serialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct Link {
    pub run: String,
    pub step: String,
    #[serde(rename = "as")]
    pub principal: String,
    /// `approve` or `reject`.
    pub decision: String,
    /// Unix seconds after which the link is refused.
    pub exp: u64,
    pub sig: String,
}

/// What a link's signature covers.
fn link_text(l: &Link) -> String {
    format!(
        "runner-approval-link\n{}\n{}\n{}\n{}\n{}",
        l.run, l.step, l.principal, l.decision, l.exp
    )
}

fn link_mac(key: &[u8], l: &Link) -> ring::hmac::Tag {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, link_text(l).as_bytes())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn links_key(app: &App) -> Result<(Vec<u8>, u64), ApiError> {
    let Some(links) = &app.config.links else {
        return Err(ApiError::not_found(
            "this server makes no approval links (no `links:` in its configuration)",
        ));
    };
    Ok((super::hooks::key_from_env(&links.secret_env)?, links.ttl_s))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinksBody {
    /// The principals to make links for.
    principals: Vec<String>,
}

/// `POST /api/v1/runs/{id}/approvals/{step}/links`: approve and reject links
/// for each principal named (operators only).
pub async fn make_links(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path((id, step)): Path<(String, String)>,
    JsonBody(body): JsonBody<LinksBody>,
) -> Result<axum::Json<Value>, ApiError> {
    if !caller.has_any(&app.config.access.operate) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not make approval links: that needs a role of access.operate",
            caller.name
        )));
    }
    let (key, ttl) = links_key(&app)?;
    crate::engine::approval::check_run_id(&id).map_err(ApiError::bad_request)?;
    crate::engine::approval::check_step_id(&step).map_err(ApiError::bad_request)?;
    if app.approvals.request(&id, &step).is_none() {
        return Err(ApiError::not_found(format!(
            "run `{id}` is not waiting for an approval of step `{step}`"
        )));
    }
    let mut out = Vec::new();
    for name in &body.principals {
        principal(&app, name, Source::Link)?;
        let mut made = json!({ "principal": name });
        for decision in ["approve", "reject"] {
            let mut link = Link {
                run: id.clone(),
                step: step.clone(),
                principal: name.clone(),
                decision: decision.to_owned(),
                exp: now() + ttl,
                sig: String::new(),
            };
            link.sig = super::auth::hex(link_mac(&key, &link).as_ref());
            let query = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("run", link.run.as_str()),
                    ("step", link.step.as_str()),
                    ("as", link.principal.as_str()),
                    ("decision", link.decision.as_str()),
                    ("exp", &link.exp.to_string()),
                    ("sig", &link.sig),
                ])
                .finish();
            let path = format!("/api/v1/approvals/link?{query}");
            made[decision] = app.link(&path).unwrap_or(path).into();
        }
        out.push(made);
    }
    Ok(axum::Json(json!({ "links": out })))
}

/// Checks a link's signature and expiry; the caller it stands for.
fn check_link(app: &App, link: &Link) -> Result<(Caller, bool), ApiError> {
    let (key, _) = links_key(app)?;
    let Some(mac) = super::hooks::decode_hex(&link.sig) else {
        return Err(ApiError::unauthorized(
            "the link's signature is not hexadecimal",
        ));
    };
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &key);
    ring::hmac::verify(&hmac_key, link_text(link).as_bytes(), &mac)
        .map_err(|_| ApiError::unauthorized("the link's signature does not match it"))?;
    if now() > link.exp {
        return Err(ApiError::unauthorized(
            "the link has expired; ask for a new one, or answer with a token",
        ));
    }
    let approved = match link.decision.as_str() {
        "approve" => true,
        "reject" => false,
        _ => {
            return Err(ApiError::bad_request(
                "the link's decision is not approve or reject",
            ));
        }
    };
    Ok((principal(app, &link.principal, Source::Link)?, approved))
}

/// `GET /api/v1/approvals/link?…`: what the link would do, with a button.
pub async fn show_link(
    State(app): State<Arc<App>>,
    Query(link): Query<Link>,
) -> Result<Response, ApiError> {
    let (caller, approved) = check_link(&app, &link)?;
    let request = app.approvals.request(&link.run, &link.step).ok_or_else(|| {
        ApiError::new(
            StatusCode::GONE,
            "the run no longer waits for this approval (it was decided, timed out, or the run ended)",
        )
    })?;
    let e = html_escape;
    let hidden: String = [
        ("run", &link.run),
        ("step", &link.step),
        ("as", &link.principal),
        ("decision", &link.decision),
        ("exp", &link.exp.to_string()),
        ("sig", &link.sig),
    ]
    .iter()
    .map(|(k, v)| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", e(v)))
    .collect();
    let verb = if approved { "Approve" } else { "Reject" };
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>{verb} {step}</title><body><h1>{verb} step <code>{step}</code> of run <code>{run}</code></h1><p>{prompt}</p><p>As <strong>{who}</strong>; roles needed: {roles}.</p><form method=\"post\" action=\"/api/v1/approvals/link\">{hidden}<label>Comment <input name=\"comment\"></label> <button type=\"submit\">{verb}</button></form></body></html>",
        step = e(&link.step),
        run = e(&link.run),
        prompt = e(&request.prompt),
        who = e(&caller.name),
        roles = if request.approvers.is_empty() {
            "any operator".to_owned()
        } else {
            e(&request.approvers.join(", "))
        },
    );
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; form-action 'self'",
            ),
        ],
        page,
    )
        .into_response())
}

/// `POST /api/v1/approvals/link` (the page's form): decides, once.
pub async fn use_link(
    State(app): State<Arc<App>>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let mut fields: std::collections::BTreeMap<String, String> =
        url::form_urlencoded::parse(&body).into_owned().collect();
    let comment = fields.remove("comment");
    let field = |k: &str| {
        fields
            .get(k)
            .cloned()
            .ok_or_else(|| ApiError::bad_request(format!("not an approval link: no `{k}`")))
    };
    let link = Link {
        run: field("run")?,
        step: field("step")?,
        principal: field("as")?,
        decision: field("decision")?,
        exp: field("exp")?
            .parse()
            .map_err(|_| ApiError::bad_request("not an approval link: `exp` is not a number"))?,
        sig: field("sig")?,
    };
    let (caller, approved) = check_link(&app, &link)?;
    let answered = app
        .approvals
        .decisions(&link.run, &link.step)
        .unwrap_or_default()
        .iter()
        .any(|d| d.by == caller.name);
    if answered {
        return Err(ApiError::new(
            StatusCode::GONE,
            format!(
                "`{}` has answered this step already; a link is used once",
                caller.name
            ),
        ));
    }
    let decision = tokio::task::block_in_place(|| {
        decide_as(
            &app,
            &caller,
            &link.run,
            &link.step,
            Answer {
                approved,
                role: None,
                comment,
                via: "link",
            },
        )
    })?;
    Ok(axum::Json(
        json!({ "run": link.run, "step": link.step, "decision": decision }),
    ))
}

/// Text made safe inside HTML elements and attribute values.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}
