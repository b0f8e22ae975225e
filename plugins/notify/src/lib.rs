//! `notify`: tell people — Slack, a JSON webhook, or e-mail over SMTP.
//!
//! Why a plugin: every seed process announces the incident, the rollback and
//! the report. Webhook URLs and SMTP credentials are secrets (a Slack webhook
//! URL is a credential): the step names a granted secret, never the value,
//! and the runner redacts the value from everything the step reports.
//!
//! Delivery is retried with exponential backoff (`attempts`, 3 by default)
//! inside the step: a notice that fails once because a webhook hiccupped should
//! not need a playbook `retry:`. A refused request (the host is not granted) is
//! not retried.
//!
//! E-mail goes over the `tcp` capability (the SMTP server's `host:port` must be
//! granted) as plain SMTP: EHLO, AUTH PLAIN when the URL has a user, MAIL FROM,
//! RCPT TO, DATA. No STARTTLS: use a relay on the runner's network.
//!
//! # Text from inputs is text
//!
//! Titles, texts and fields carry run inputs, which alerts and API callers
//! supply. Slack reads `<!channel>`, `<@U123>` and `<http://x|label>` in its
//! `mrkdwn` text as mentions and links, so every text that Slack parses has `&`,
//! `<` and `>` escaped as Slack's formatting guide requires (`&amp;`, `&lt;`,
//! `&gt;`): an input can neither ping a channel nor forge a link. The `link`
//! input, the one link the plugin writes, must be an http(s) URL without `<`, `>`
//! or `|`. In e-mail, a line break in a header value becomes a space (no header
//! can be added) and every line break of the body, bare CR and bare LF included,
//! becomes CRLF before dot-stuffing, so no text can end the message early or
//! smuggle SMTP commands.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use runner_sdk::http::{HttpError, Request};
use runner_sdk::serde_json::{Map, Value, json};
use runner_sdk::{Info, Output, Plugin, StepError, capability, log, parse_duration, secrets};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    channel: Channel,
    title: String,
    #[serde(default)]
    text: String,
    #[serde(default)]
    severity: Option<String>,
    #[serde(default)]
    fields: BTreeMap<String, String>,
    #[serde(default)]
    link: Option<String>,
    /// Slack and webhook: the granted secret holding the URL.
    #[serde(default)]
    webhook_secret: Option<String>,
    /// Slack: Approve / Reject buttons for this approval step of this run,
    /// answered through `runner serve` (its Slack interactivity URL).
    #[serde(default)]
    approval: Option<Approval>,
    /// Webhook: the JSON body; default `{title, text, severity, fields, link}`.
    #[serde(default)]
    payload: Option<Value>,
    /// E-mail: recipients.
    #[serde(default)]
    to: Option<Recipients>,
    #[serde(default)]
    from: Option<String>,
    /// E-mail: the granted secret holding `smtp://[user:password@]host:port`.
    #[serde(default)]
    smtp_secret: Option<String>,
    /// Files (in granted folders) attached to an e-mail, or listed in a message.
    #[serde(default)]
    attachments: Vec<String>,
    #[serde(default = "three")]
    attempts: u32,
    #[serde(default = "one_second")]
    backoff: String,
    #[serde(default = "ten_seconds")]
    timeout: String,
}

fn three() -> u32 {
    3
}
fn one_second() -> String {
    "1s".into()
}
fn ten_seconds() -> String {
    "10s".into()
}

/// Which approval the buttons answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Approval {
    run: String,
    step: String,
}

impl Approval {
    /// The buttons' value: what `runner serve` reads back.
    fn value(&self) -> Result<String, StepError> {
        let fits = |id: &str| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !fits(&self.run) || !fits(&self.step) {
            return Err(StepError::invalid_input(
                "`approval`: run and step must be ids (letters, digits, `-`, `_`, `.`; at most 128)"
                    .to_string(),
            ));
        }
        Ok(json!({ "run": self.run, "step": self.step }).to_string())
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Channel {
    Slack,
    Webhook,
    Email,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Recipients {
    One(String),
    Many(Vec<String>),
}

impl Recipients {
    fn list(&self) -> Vec<String> {
        match self {
            Recipients::One(s) => s
                .split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect(),
            Recipients::Many(v) => v.clone(),
        }
    }
}

/// A delivery failure: `Err(true)` may pass on a later attempt.
type Delivery = Result<String, (bool, String)>;

struct Notify;

impl Plugin for Notify {
    type Input = Input;

    fn info() -> Info {
        Info::new(
            "notify",
            env!("CARGO_PKG_VERSION"),
            "Slack, webhook and e-mail notifications",
        )
        .input_schema(schema())
        .sinks(&[
            ("title", "chat"),
            ("text", "chat"),
            ("fields", "chat"),
            ("link", "url"),
            ("to", "chat"),
        ])
        .capabilities(&[capability::SECRETS, "http?", "tcp?", "fs?"])
    }

    fn run(mut input: Input) -> Result<Output, StepError> {
        // `link: ${{ run.url }}` is empty when the web UI's address is unknown.
        input.link = input.link.take().filter(|l| !l.trim().is_empty());
        if input.approval.is_some() && input.channel != Channel::Slack {
            return Err(StepError::invalid_input(
                "`approval` buttons are Slack's: use it with `channel: slack`".to_string(),
            ));
        }
        let attempts = input.attempts.max(1);
        let mut wait = parse_duration(&input.backoff)
            .map_err(|e| StepError::invalid_input(format!("`backoff`: {e}")))?;
        let timeout = parse_duration(&input.timeout)
            .map_err(|e| StepError::invalid_input(format!("`timeout`: {e}")))?;
        let mut last = String::new();
        for attempt in 1..=attempts {
            let outcome = match input.channel {
                Channel::Slack | Channel::Webhook => post(&input, timeout)?,
                Channel::Email => email(&input, timeout)?,
            };
            match outcome {
                Ok(detail) => {
                    return Ok(Output::new()
                        .set("channel", format!("{:?}", input.channel).to_lowercase())
                        .set("attempts", attempt)
                        .set("detail", &detail)
                        .summary(format!("{}: {}", detail, input.title)));
                }
                Err((retry, why)) => {
                    last = why;
                    if !retry || attempt == attempts {
                        break;
                    }
                    log::warn(format!(
                        "attempt {attempt} of {attempts} failed: {last}; again in {wait:?}"
                    ));
                    std::thread::sleep(wait);
                    wait *= 2;
                }
            }
        }
        Err(StepError::failed(format!(
            "the notification was not delivered: {last}"
        )))
    }
}

fn secret(name: &Option<String>, what: &str) -> Result<String, StepError> {
    let Some(name) = name else {
        return Err(StepError::invalid_input(format!(
            "`{what}` is required for this channel"
        )));
    };
    secrets::get(name)
}

/// Slack's incoming webhook or a generic JSON webhook.
fn post(input: &Input, timeout: Duration) -> Result<Delivery, StepError> {
    let url = secret(&input.webhook_secret, "webhook_secret")?;
    let body = match (input.channel, &input.payload) {
        (Channel::Slack, _) => slack(input)?,
        (_, Some(p)) => p.clone(),
        (_, None) => json!({
            "title": input.title,
            "text": input.text,
            "severity": input.severity,
            "fields": input.fields,
            "link": input.link,
            "attachments": input.attachments,
        }),
    };
    let response = Request::post(&url).json(&body)?.timeout(timeout).send();
    Ok(match response {
        Ok(r) if (200..300).contains(&r.status) => Ok(format!("delivered ({})", r.status)),
        // 429 and 5xx may pass later; other statuses are the request's fault.
        Ok(r) => Err((
            r.status == 429 || r.status >= 500,
            format!(
                "the webhook answered {}: {}",
                r.status,
                r.text().chars().take(200).collect::<String>()
            ),
        )),
        Err(e @ (HttpError::Denied(_) | HttpError::Invalid(_))) => return Err(e.into()),
        Err(e) => Err((true, e.to_string())),
    })
}

/// Severity colour for Slack attachments.
fn colour(severity: Option<&str>) -> &'static str {
    match severity.map(|s| s.to_ascii_lowercase()).as_deref() {
        Some("p0" | "p1" | "critical" | "error") => "#d40e0d",
        Some("p2" | "high" | "warning") => "#e8912d",
        Some("p3" | "low" | "info") => "#2eb67d",
        _ => "#999999",
    }
}

/// Text for a place where Slack parses mrkdwn: `&`, `<` and `>` escaped, so an
/// input cannot make a mention (`<!channel>`) or a link (`<http://x|y>`).
fn mrkdwn(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The title for a header block: escaped like all Slack text, and cut to
/// Slack's 150 characters without splitting an escape.
fn header_text(title: &str) -> String {
    let mut out = String::new();
    for c in title.chars() {
        let piece = mrkdwn(c.encode_utf8(&mut [0; 4]));
        if out.chars().count() + piece.chars().count() > 150 {
            break;
        }
        out.push_str(&piece);
    }
    out
}

/// The `link` input as Slack's `<url|Report>`: an http(s) URL that cannot end
/// the link or change its label.
fn slack_link(link: &str) -> Result<String, StepError> {
    let scheme_ok = link.starts_with("http://") || link.starts_with("https://");
    if !scheme_ok
        || link
            .chars()
            .any(|c| matches!(c, '<' | '>' | '|') || c.is_whitespace() || c.is_control())
    {
        return Err(StepError::invalid_input(format!(
            "`link` `{}` must be an http(s) URL without `<`, `>`, `|` or spaces",
            link.escape_debug()
        )));
    }
    Ok(format!("<{}|Report>", link.replace('&', "&amp;")))
}

/// A Block Kit message: the title as a header, the text, the fields, a link,
/// inside an attachment coloured by severity. Every text Slack shows is
/// escaped, the `plain_text` header too (Slack's rule for all message text).
fn slack(input: &Input) -> Result<Value, StepError> {
    let mut blocks = vec![json!({
        "type": "header",
        "text": { "type": "plain_text", "text": header_text(&input.title) }
    })];
    if !input.text.is_empty() {
        blocks.push(
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": mrkdwn(&input.text) } }),
        );
    }
    let mut fields: Vec<Value> = Vec::new();
    if let Some(s) = &input.severity {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*Severity*\n{}", mrkdwn(s)) }));
    }
    for (k, v) in &input.fields {
        fields.push(json!({ "type": "mrkdwn", "text": format!("*{}*\n{}", mrkdwn(k), mrkdwn(v)) }));
    }
    if !fields.is_empty() {
        blocks.push(
            json!({ "type": "section", "fields": fields.into_iter().take(10).collect::<Vec<_>>() }),
        );
    }
    if let Some(link) = &input.link {
        blocks.push(
            json!({ "type": "section", "text": { "type": "mrkdwn", "text": slack_link(link)? } }),
        );
    }
    if let Some(approval) = &input.approval {
        let value = approval.value()?;
        let button = |id: &str, label: &str, style: &str| {
            json!({ "type": "button", "action_id": id, "style": style, "value": value,
                    "text": { "type": "plain_text", "text": label } })
        };
        blocks.push(json!({
            "type": "actions",
            "block_id": "runner-approval",
            "elements": [button("approve", "Approve", "primary"), button("reject", "Reject", "danger")],
        }));
    }
    Ok(json!({
        "text": mrkdwn(&input.title),
        "attachments": [{ "color": colour(input.severity.as_deref()), "blocks": blocks }]
    }))
}

/// `smtp://[user:password@]host:port` into its parts.
fn smtp_url(url: &str) -> Result<(Option<(String, String)>, String), StepError> {
    let bad = || {
        StepError::invalid_input(
            "the SMTP secret is not `smtp://[user:password@]host:port`".to_string(),
        )
    };
    let rest = url
        .strip_prefix("smtp://")
        .ok_or_else(bad)?
        .trim_end_matches('/');
    let (auth, addr) = match rest.rsplit_once('@') {
        Some((auth, addr)) => {
            let (u, p) = auth.split_once(':').ok_or_else(bad)?;
            (Some((percent_decode(u), percent_decode(p))), addr)
        }
        None => (None, rest),
    };
    if !addr.contains(':') {
        return Err(bad());
    }
    Ok((auth, addr.to_owned()))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One header value without line breaks (no header injection).
fn header(value: &str) -> String {
    value.replace(['\r', '\n'], " ")
}

/// Text with every line break (CRLF, bare CR, bare LF) written as CRLF, the
/// only line end SMTP knows: a bare CR or LF cannot be read as a line end by one
/// server and not by another.
fn crlf(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace('\n', "\r\n")
}

fn email(input: &Input, timeout: Duration) -> Result<Delivery, StepError> {
    let url = secret(&input.smtp_secret, "smtp_secret")?;
    let (auth, addr) = smtp_url(&url)?;
    let to = input.to.as_ref().map(Recipients::list).unwrap_or_default();
    if to.is_empty() {
        return Err(StepError::invalid_input("`to` names no recipient"));
    }
    let from = input
        .from
        .clone()
        .unwrap_or_else(|| "runner@localhost".into());
    for a in to.iter().chain([&from]) {
        if a.contains(['\r', '\n', '<', '>']) || !a.contains('@') {
            return Err(StepError::invalid_input(format!(
                "`{a}` is not an e-mail address"
            )));
        }
    }
    let mut attachments = Vec::new();
    for path in &input.attachments {
        let data = std::fs::read(path).map_err(|e| {
            StepError::failed(format!(
                "cannot read attachment `{path}` (is its folder granted under `fs`?): {e}"
            ))
        })?;
        attachments.push((path.rsplit('/').next().unwrap_or(path).to_owned(), data));
    }
    let message = mime(input, &from, &to, &attachments);
    Ok(smtp(&addr, auth, &from, &to, &message, timeout))
}

/// The message: plain text, or multipart/mixed with base64 attachments.
fn mime(input: &Input, from: &str, to: &[String], attachments: &[(String, Vec<u8>)]) -> String {
    let subject = match &input.severity {
        Some(s) => format!("[{s}] {}", input.title),
        None => input.title.clone(),
    };
    let mut body = input.text.clone();
    for (k, v) in &input.fields {
        body.push_str(&format!("\n{k}: {v}"));
    }
    if let Some(link) = &input.link {
        body.push_str(&format!("\nReport: {link}"));
    }
    let mut m = format!(
        "From: {}\r\nTo: {}\r\nSubject: {}\r\nMIME-Version: 1.0\r\n",
        header(from),
        header(&to.join(", ")),
        header(&subject)
    );
    if attachments.is_empty() {
        m.push_str(
            "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        );
        m.push_str(&crlf(&body));
        return m;
    }
    let boundary = "runner-notify-boundary-7f1e";
    m.push_str(&format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}\r\n",
        crlf(&body)
    ));
    for (name, data) in attachments {
        let encoded = base64(data);
        m.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/octet-stream; name=\"{n}\"\r\nContent-Disposition: attachment; filename=\"{n}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            n = header(name).replace('"', "")
        ));
        for line in encoded.as_bytes().chunks(76) {
            m.push_str(std::str::from_utf8(line).unwrap_or(""));
            m.push_str("\r\n");
        }
    }
    m.push_str(&format!("--{boundary}--\r\n"));
    m
}

/// One SMTP conversation. Temporary failures (4xx, no connection) may pass later.
fn smtp(
    addr: &str,
    auth: Option<(String, String)>,
    from: &str,
    to: &[String],
    message: &str,
    timeout: Duration,
) -> Delivery {
    let stream = TcpStream::connect(addr).map_err(|e| {
        (
            true,
            format!("cannot connect to the SMTP server {addr}: {e}"),
        )
    })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    // One stream, read through a buffer and written directly (sockets cannot be
    // cloned under WASI).
    let mut reader = BufReader::new(&stream);
    let writer = &stream;
    let mut reply = |expect: u16| -> Result<String, (bool, String)> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            reader
                .read_line(&mut line)
                .map_err(|e| (true, format!("the SMTP server stopped answering: {e}")))?;
            if line.is_empty() {
                return Err((true, "the SMTP server closed the connection".into()));
            }
            text.push_str(line.trim_end());
            // `250-…` continues, `250 …` ends.
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                break;
            }
            text.push(' ');
        }
        let code: u16 = text.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
        if code / 100 == expect / 100 {
            Ok(text)
        } else {
            Err((
                code / 100 == 4,
                format!("the SMTP server answered `{text}`"),
            ))
        }
    };
    let send = |line: &str| -> Result<(), (bool, String)> {
        let mut w = writer;
        w.write_all(line.as_bytes())
            .and_then(|()| w.write_all(b"\r\n"))
            .map_err(|e| (true, format!("writing to the SMTP server: {e}")))
    };
    reply(220)?;
    send("EHLO runner")?;
    reply(250)?;
    if let Some((user, password)) = auth {
        send(&format!(
            "AUTH PLAIN {}",
            base64(format!("\0{user}\0{password}").as_bytes())
        ))?;
        reply(235)?;
    }
    send(&format!("MAIL FROM:<{from}>"))?;
    reply(250)?;
    for r in to {
        send(&format!("RCPT TO:<{r}>"))?;
        reply(250)?;
    }
    send("DATA")?;
    reply(354)?;
    // Dot-stuffing: a line starting with `.` gets another.
    let stuffed: Vec<String> = message
        .split("\r\n")
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}")
            } else {
                l.to_owned()
            }
        })
        .collect();
    send(&stuffed.join("\r\n"))?;
    send(".")?;
    let accepted = reply(250)?;
    send("QUIT")?;
    Ok(format!(
        "sent to {} recipient{} ({accepted})",
        to.len(),
        if to.len() == 1 { "" } else { "s" }
    ))
}

fn schema() -> Value {
    let duration = |what: &str| json!({ "type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$", "description": what });
    let mut p = Map::new();
    p.insert(
        "channel".into(),
        json!({ "enum": ["slack", "webhook", "email"], "description": "Where the notice goes." }),
    );
    p.insert(
        "title".into(),
        json!({ "type": "string", "minLength": 1, "description": "Headline / subject." }),
    );
    p.insert(
        "text".into(),
        json!({ "type": "string", "description": "Body text (Slack mrkdwn)." }),
    );
    p.insert("severity".into(), json!({ "type": "string", "description": "P0-P3 or critical/warning/info: Slack colour, e-mail subject prefix." }));
    p.insert("fields".into(), json!({ "type": "object", "additionalProperties": { "type": "string" }, "description": "Name/value pairs shown as fields." }));
    p.insert(
        "link".into(),
        json!({ "type": "string", "description": "A link: the run's page in the web UI (`${{ run.url }}`, empty when the server's public URL is not configured) or a report. Empty: no link." }),
    );
    p.insert("webhook_secret".into(), json!({ "type": "string", "description": "slack, webhook: the granted secret holding the webhook URL (its host must be granted under `http`)." }));
    p.insert("approval".into(), json!({ "type": "object", "required": ["run", "step"], "additionalProperties": false, "properties": { "run": { "type": "string" }, "step": { "type": "string" } }, "description": "slack: Approve / Reject buttons for approval step `step` of run `run` (`${{ run.id }}`), answered through `runner serve` (docs/server.md)." }));
    p.insert("payload".into(), json!({ "description": "webhook: the JSON body (build it with `${{ }}`); default {title, text, severity, fields, link, attachments}." }));
    p.insert("to".into(), json!({ "oneOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }], "description": "email: recipients (a list, or a comma-separated string)." }));
    p.insert(
        "from".into(),
        json!({ "type": "string", "description": "email: sender (default runner@localhost)." }),
    );
    p.insert("smtp_secret".into(), json!({ "type": "string", "description": "email: the granted secret holding `smtp://[user:password@]host:port` (the endpoint granted under `tcp`)." }));
    p.insert("attachments".into(), json!({ "type": "array", "items": { "type": "string" }, "description": "Files in granted folders: attached to e-mails, listed in webhook payloads." }));
    p.insert("attempts".into(), json!({ "type": "integer", "minimum": 1, "maximum": 10, "description": "Delivery attempts (default 3)." }));
    p.insert(
        "backoff".into(),
        duration("Wait before the second attempt, doubled after each (default 1s)."),
    );
    p.insert("timeout".into(), duration("Per attempt (default 10s)."));
    json!({ "type": "object", "properties": p, "required": ["channel", "title"], "additionalProperties": false })
}

runner_sdk::export_plugin!(Notify);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_urls() {
        assert_eq!(base64(b"\0user\0pass"), "AHVzZXIAcGFzcw==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(
            smtp_url("smtp://u%40x:p%3Aw@127.0.0.1:2525").unwrap(),
            (Some(("u@x".into(), "p:w".into())), "127.0.0.1:2525".into())
        );
        assert_eq!(
            smtp_url("smtp://127.0.0.1:25").unwrap(),
            (None, "127.0.0.1:25".into())
        );
        assert!(smtp_url("http://x:25").is_err());
        assert!(smtp_url("smtp://host").is_err());
    }

    #[test]
    fn headers_cannot_be_injected() {
        assert_eq!(header("a\r\nBcc: x@y"), "a  Bcc: x@y");
        assert_eq!(crlf("a\rb\nc\r\nd\n\re"), "a\r\nb\r\nc\r\nd\r\n\r\ne");
    }

    #[test]
    fn slack_text_cannot_mention_or_link() {
        assert_eq!(
            mrkdwn("<!channel> & <http://evil|click>"),
            "&lt;!channel&gt; &amp; &lt;http://evil|click&gt;"
        );
        assert_eq!(header_text(&"<".repeat(100)), "&lt;".repeat(37));
        assert_eq!(
            slack_link("https://r.example/run?a=1&b=2").unwrap(),
            "<https://r.example/run?a=1&amp;b=2|Report>"
        );
        for bad in ["http://x|click", "http://x>", "javascript:x", "http://a b"] {
            assert!(slack_link(bad).is_err(), "{bad}");
        }
    }
}
