//! Runs started by alerts and webhooks.
//!
//! `POST /api/v1/hooks/alertmanager` takes Alertmanager's webhook (version 4)
//! with a token of the configured role (`http_config.authorization` in
//! Alertmanager); `POST /api/v1/hooks/generic/NAME` takes any JSON signed
//! with HMAC-SHA256 over `TIMESTAMP.BODY` (`X-Runner-Timestamp`,
//! `X-Runner-Signature: sha256=HEX`), within five minutes, each signature
//! once. An alert firing again while the run it started is active starts
//! nothing (its fingerprint, or the hook's `dedup` value, is the key); a
//! resolved alert starts nothing. Every delivery is written to `hooks.jsonl`
//! in the state directory with what came of it. The alert (or body) is kept
//! with the run it started (its `trigger`), and its `startsAt` can be an
//! input, so time to detect and to restore can be computed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::config::{AlertField, InputFrom};
use super::{ApiError, App};
use crate::identity::{Principal, Source};

/// How far a signed request's timestamp may be from now.
const WINDOW: Duration = Duration::from_secs(300);

pub struct Hooks {
    log: Option<PathBuf>,
    /// Keys of runs being started (not yet in the journal).
    starting: Mutex<HashSet<String>>,
    /// Signatures seen within the window, with when they expire.
    seen: Mutex<HashMap<String, u64>>,
    log_lock: Mutex<()>,
}

impl Hooks {
    pub fn new(state_dir: Option<&FsPath>) -> Hooks {
        Hooks {
            log: state_dir.map(|s| s.join("hooks.jsonl")),
            starting: Mutex::new(HashSet::new()),
            seen: Mutex::new(HashMap::new()),
            log_lock: Mutex::new(()),
        }
    }

    fn write(&self, entry: &Value) {
        let Some(path) = &self.log else { return };
        let _guard = self.log_lock.lock().unwrap_or_else(|e| e.into_inner());
        let line = format!("{entry}\n");
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!("cannot write {}: {e}", path.display());
        }
    }

    /// Refuses a signature seen before within the window; remembers it.
    pub fn once(&self, signature: &str, now: u64) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|_, until| *until > now);
        seen.insert(signature.to_owned(), now + WINDOW.as_secs() * 2)
            .is_none()
    }
}

/// One alert of Alertmanager's webhook, version 4.
#[derive(Debug, Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    starts_at: String,
    #[serde(default)]
    ends_at: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Message {
    version: String,
    #[serde(default)]
    group_key: String,
    #[serde(default)]
    receiver: String,
    alerts: Vec<Alert>,
}

pub async fn alertmanager(
    State(app): State<Arc<App>>,
    caller: Caller,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(config) = app.config.alertmanager.clone() else {
        return Err(ApiError::not_found(
            "this server takes no alerts (no `alertmanager:` in its configuration)",
        ));
    };
    if !caller.has(&config.role) {
        return Err(ApiError::forbidden(format!(
            "`{}` may not deliver alerts: that needs the role `{}` (alertmanager.role)",
            caller.name, config.role
        )));
    }
    let message: Message = super::parse_json(&body)?;
    if message.version != "4" {
        return Err(ApiError::bad_request(format!(
            "Alertmanager webhook version `{}` is not supported; version 4 is",
            message.version
        )));
    }
    let mut results = Vec::new();
    for alert in &message.alerts {
        let mut entry = json!({
            "at": crate::clock::now_rfc3339(),
            "hook": "alertmanager",
            "receiver": message.receiver,
            "group_key": message.group_key,
            "fingerprint": alert.fingerprint,
            "labels": alert.labels,
            "status": alert.status,
        });
        let outcome = alert_outcome(&app, &config.routes, alert).await;
        merge(&mut entry, &outcome);
        app.hooks.write(&entry);
        results.push(outcome);
    }
    Ok(axum::Json(json!({ "alerts": results })))
}

fn merge(into: &mut Value, from: &Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        for (k, v) in b {
            a.insert(k.clone(), v.clone());
        }
    }
}

async fn alert_outcome(app: &Arc<App>, routes: &[super::config::Route], alert: &Alert) -> Value {
    let fp = &alert.fingerprint;
    if alert.status == "resolved" {
        return json!({ "fingerprint": fp, "outcome": "resolved", "message": "a resolved alert starts nothing" });
    }
    let Some(route) = routes.iter().find(|r| {
        r.matchers
            .iter()
            .all(|(k, v)| alert.labels.get(k) == Some(v))
    }) else {
        return json!({ "fingerprint": fp, "outcome": "no_route", "message": "no route of alertmanager.routes matches the alert's labels" });
    };
    let mut inputs = serde_json::Map::new();
    for (name, from) in &route.inputs {
        let value = match from {
            InputFrom::Label { label } => alert.labels.get(label).cloned(),
            InputFrom::Annotation { annotation } => alert.annotations.get(annotation).cloned(),
            InputFrom::Alert { alert: field } => Some(match field {
                AlertField::StartsAt => alert.starts_at.clone(),
                AlertField::Fingerprint => alert.fingerprint.clone(),
                AlertField::Status => alert.status.clone(),
                AlertField::GeneratorUrl => alert.generator_url.clone(),
            }),
            InputFrom::Field { .. } => None,
            InputFrom::Value(v) => Some(v.text()),
        };
        match value {
            Some(v) => {
                inputs.insert(name.clone(), Value::String(v));
            }
            None => {
                return json!({ "fingerprint": fp, "outcome": "refused", "route": route.name, "message": format!("input `{name}`: the alert has no such label or annotation") });
            }
        }
    }
    let key = format!("alertmanager:{fp}");
    let trigger = json!({ "dedup": key, "route": route.name, "alert": alert }).to_string();
    let outcome = start_once(
        app,
        &key,
        &route.playbook,
        route.environment.as_deref(),
        &inputs,
        Principal::named(&route.name, Source::Alert),
        (format!("alertmanager:{}", route.name), trigger),
    )
    .await;
    let mut v = outcome;
    v["fingerprint"] = json!(fp);
    v["route"] = json!(route.name);
    v
}

/// Starts a run for `key` unless one for it is active.
async fn start_once(
    app: &Arc<App>,
    key: &str,
    playbook: &str,
    environment: Option<&str>,
    inputs: &serde_json::Map<String, Value>,
    actor: Principal,
    trigger: (String, String),
) -> Value {
    if !app
        .hooks
        .starting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key.to_owned())
    {
        return json!({ "outcome": "duplicate", "message": "a run for it is being started" });
    }
    let result = async {
        if let Some(run) = active_run(app, key).await? {
            return Ok(json!({ "outcome": "duplicate", "run": run, "message": format!("run {run} for it is still active") }));
        }
        let request = super::runs::catalog_request(app, playbook, environment, inputs)?;
        let (status, value) =
            super::runs::start_request(app, request, actor, Some(trigger)).await?;
        Ok::<_, ApiError>(json!({
            "outcome": if status == StatusCode::CREATED { "started" } else { "accepted" },
            "run": value["id"],
            "status": value["status"],
        }))
    }
    .await;
    app.hooks
        .starting
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    result.unwrap_or_else(
        |e| json!({ "outcome": "refused", "message": e.message, "problems": e.problems }),
    )
}

/// The running (or queued) run whose trigger has dedup key `key`.
async fn active_run(app: &App, key: &str) -> Result<Option<String>, ApiError> {
    let is_key = |text: &str, key: &str| {
        serde_json::from_str::<Value>(text).is_ok_and(|t| t["dedup"].as_str() == Some(key))
    };
    if let Some(queue) = app.queue.clone() {
        let undone = tokio::task::spawn_blocking(move || queue.undone())
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?
            .map_err(ApiError::journal)?;
        if let Some((id, _)) = undone.iter().find(|(_, s)| {
            s.trigger
                .as_ref()
                .is_some_and(|(_, body)| is_key(body, key))
        }) {
            return Ok(Some(id.clone()));
        }
    }
    let key = key.to_owned();
    app.read(move |j| {
        let running = j.list(&crate::record::Filter {
            status: Some("running"),
            ..Default::default()
        })?;
        for run in running {
            for s in j.sources(&run.id)? {
                if s.kind == crate::record::SourceKind::Trigger && is_key(&s.text, &key) {
                    return Ok(Some(run.id));
                }
            }
        }
        Ok(None)
    })
    .await
}

/// HMAC-SHA256 of `timestamp.body` with `key`, as `sha256=HEX`.
pub fn signature(key: &[u8], timestamp: &str, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(timestamp.as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", super::auth::hex(ctx.sign().as_ref()))
}

/// Checks a signed request: a timestamp within five minutes of now, the
/// signature (constant time), not seen before. 401 otherwise.
pub fn verify(
    hooks: &Hooks,
    key: &[u8],
    timestamp: Option<&str>,
    given: Option<&str>,
    basestring: impl FnOnce(&str) -> Vec<u8>,
    expected_prefix: &str,
) -> Result<(), ApiError> {
    let (Some(ts), Some(given)) = (timestamp, given) else {
        return Err(ApiError::unauthorized(
            "the request is not signed (a timestamp and a signature header are needed)",
        ));
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let Ok(at) = ts.trim().parse::<u64>() else {
        return Err(ApiError::unauthorized(
            "the signature's timestamp is not a number of seconds",
        ));
    };
    if now.abs_diff(at) > WINDOW.as_secs() {
        return Err(ApiError::unauthorized(
            "the signature's timestamp is more than five minutes from the server's clock (a replay, or a clock to fix)",
        ));
    }
    let Some(hex) = given.trim().strip_prefix(expected_prefix) else {
        return Err(ApiError::unauthorized(format!(
            "the signature does not start with `{expected_prefix}`"
        )));
    };
    let Some(mac) = decode_hex(hex) else {
        return Err(ApiError::unauthorized("the signature is not hexadecimal"));
    };
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::verify(&key, &basestring(ts.trim()), &mac)
        .map_err(|_| ApiError::unauthorized("the signature does not match the body"))?;
    if !hooks.once(given.trim(), now) {
        return Err(ApiError::unauthorized(
            "this signed request was received before; a replay starts nothing",
        ));
    }
    Ok(())
}

pub(super) fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The signing key in environment variable `name`.
pub fn key_from_env(name: &str) -> Result<Vec<u8>, ApiError> {
    match std::env::var(name) {
        Ok(k) if !k.is_empty() => Ok(k.into_bytes()),
        _ => Err(ApiError::unavailable(format!(
            "the signing key is not set: the server's environment lacks `{name}`"
        ))),
    }
}

pub async fn generic(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    let Some(hook) = app.config.webhooks.iter().find(|h| h.name == name).cloned() else {
        return Err(ApiError::not_found(format!(
            "no webhook `{name}` (webhooks: in the server's configuration)"
        )));
    };
    let key = key_from_env(&hook.secret_env)?;
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    verify(
        &app.hooks,
        &key,
        header("x-runner-timestamp"),
        header("x-runner-signature"),
        |ts| {
            let mut base = format!("{ts}.").into_bytes();
            base.extend_from_slice(&body);
            base
        },
        "sha256=",
    )?;
    let doc: Value = super::parse_json(&body)?;
    let mut inputs = serde_json::Map::new();
    for (input, from) in &hook.inputs {
        let value = match from {
            InputFrom::Field { field } => match doc.pointer(field) {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => {
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "input `{input}`: the body has no string, number or boolean at `{field}`"
                        ),
                    ));
                }
            },
            InputFrom::Value(v) => v.text(),
            _ => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "input `{input}` of webhook `{name}` takes a constant or `{{field: /pointer}}`"
                    ),
                ));
            }
        };
        inputs.insert(input.clone(), Value::String(value));
    }
    let dedup = match &hook.dedup {
        Some(pointer) => match doc.pointer(pointer) {
            Some(v) => format!(
                "webhook:{name}:{}",
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            ),
            None => {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("the body has no value at `{pointer}` (the webhook's dedup)"),
                ));
            }
        },
        None => format!(
            "webhook:{name}:{}",
            super::auth::hex(&super::auth::sha256(&body))
        ),
    };
    let trigger = json!({ "dedup": dedup, "webhook": name, "body": doc }).to_string();
    let outcome = start_once(
        &app,
        &dedup,
        &hook.playbook,
        hook.environment.as_deref(),
        &inputs,
        Principal::named(&format!("webhook {name}"), Source::Alert),
        (format!("webhook:{name}"), trigger),
    )
    .await;
    let mut entry = json!({ "at": crate::clock::now_rfc3339(), "hook": format!("generic:{name}"), "dedup": dedup });
    merge(&mut entry, &outcome);
    app.hooks.write(&entry);
    if outcome["outcome"] == "refused" {
        let mut e = ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            outcome["message"].as_str().unwrap_or("refused").to_owned(),
        );
        if let Ok(p) = serde_json::from_value(outcome["problems"].clone()) {
            e.problems = p;
        }
        return Err(e);
    }
    Ok(axum::Json(outcome))
}
