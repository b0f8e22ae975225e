//! Where the sandbox's notifications go: what Slack, an incident webhook and an
//! e-mail relay would have received, printed readably and appended, one JSON object a
//! line, to `notifications.jsonl`.
//!
//! - HTTP on 127.0.0.1: `POST /slack` (a Slack incoming webhook: answers `ok`),
//!   `POST /webhook` (answers `{"ok":true}`), `POST /email` (records from the SMTP
//!   sink); `GET /` returns the log so far.
//! - SMTP on 127.0.0.1 ([`start_smtp`]): Debian's `python3-aiosmtpd` running
//!   `smtp_sink.py`, which posts each mail to `/email`.
//!
//! Each line of the log: `time` (UTC), `channel` (`slack`, `webhook`, `email`),
//! `title`, `severity`, `text`, `fields`, `link` as far as the payload has them
//! (Slack Block Kit as the `notify` plugin builds it, the webhook's default
//! `{title, text, severity, fields, link}`, or an e-mail's `[severity] title`
//! subject), and the `payload` as received (e-mails: `from`, `to`, `subject`,
//! `attachments` instead).

use std::fs::OpenOptions;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::demo::{bind, header, port_of, serve};
use crate::process::Processes;

/// Requests larger than this are refused (413).
const MAX_BODY: u64 = 4 << 20;
/// The SMTP sink's source, written next to the log when it starts.
const SMTP_SINK_PY: &str = include_str!("smtp_sink.py");
/// The Python that has `aiosmtpd` on Debian (a pyenv or venv `python3` may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// The running HTTP sink; stopped on drop.
pub(crate) struct NotifySink {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl NotifySink {
    /// Listens on `port` (or a free one), appending to `log`; prints each
    /// notification on stdout when `print`.
    pub(crate) fn start(
        port: Option<u16>,
        log: PathBuf,
        print: bool,
    ) -> Result<NotifySink, String> {
        let server = bind(port, "the notification sink")?;
        let port = port_of(&server)?;
        let stop = Arc::new(AtomicBool::new(false));
        let writer = Arc::new(Mutex::new(log));
        let thread = serve(server, stop.clone(), "notify-sink", move |rq| {
            receive(rq, &writer, print);
        })?;
        Ok(NotifySink {
            port,
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for NotifySink {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn receive(mut rq: tiny_http::Request, log: &Mutex<PathBuf>, print: bool) {
    let path = rq.url().split('?').next().unwrap_or("/").to_owned();
    let post = *rq.method() == tiny_http::Method::Post;
    let respond = |rq: tiny_http::Request, code: u16, body: &str, kind: &str| {
        let _ = rq.respond(
            tiny_http::Response::from_string(body)
                .with_status_code(code)
                .with_header(header("Content-Type", kind)),
        );
    };
    let channel = match path.as_str() {
        "/" if !post => {
            let file = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let text = std::fs::read_to_string(file).unwrap_or_default();
            return respond(rq, 200, &text, "application/x-ndjson");
        }
        "/slack" | "/webhook" | "/email" if post => &path[1..],
        "/slack" | "/webhook" | "/email" => {
            return respond(rq, 405, "POST only\n", "text/plain");
        }
        _ => {
            return respond(
                rq,
                404,
                "POST to /slack, /webhook or /email\n",
                "text/plain",
            );
        }
    };
    if rq.body_length().is_some_and(|n| n as u64 > MAX_BODY) {
        return respond(rq, 413, "too large\n", "text/plain");
    }
    let mut raw = Vec::new();
    if let Err(e) = rq.as_reader().take(MAX_BODY).read_to_end(&mut raw) {
        return respond(rq, 400, &format!("reading the body: {e}\n"), "text/plain");
    }
    let text = String::from_utf8_lossy(&raw);
    let payload = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()));
    let record = summarise(channel, payload);
    let line = format!("{record}\n");
    {
        let file = log.lock().unwrap_or_else(|e| e.into_inner());
        let written = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&*file)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "sandbox: notification sink: appending to {}: {e}",
                file.display()
            );
        }
    }
    if print {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(readable(&record).as_bytes());
        let _ = out.flush();
    }
    match channel {
        "slack" => respond(rq, 200, "ok", "text/plain"),
        _ => respond(rq, 200, "{\"ok\":true}\n", "application/json"),
    }
}

/// The log record of one notification: its gist, then what was received.
pub fn summarise(channel: &str, payload: Value) -> Value {
    let mut record = Map::new();
    record.insert("time".into(), json!(crate::clock::utc_now()));
    record.insert("channel".into(), json!(channel));
    let mut gist = Map::new();
    match channel {
        "slack" => slack_gist(&payload, &mut gist),
        "email" => email_gist(&payload, &mut gist),
        _ => {
            for key in ["title", "severity", "text", "fields", "link", "attachments"] {
                if let Some(v) = payload.get(key).filter(|v| !v.is_null()) {
                    gist.insert(key.into(), v.clone());
                }
            }
        }
    }
    record.extend(gist);
    if channel == "email" {
        // The SMTP sink's record is already the gist's source: keep it flat.
        if let Value::Object(fields) = payload {
            for (k, v) in fields {
                if k != "channel" {
                    record.entry(k).or_insert(v);
                }
            }
        }
    } else {
        record.insert("payload".into(), payload);
    }
    Value::Object(record)
}

/// Title, text, severity, fields and link from a Slack message as the `notify` plugin
/// builds it (Block Kit in a coloured attachment), or from plain `text`.
fn slack_gist(payload: &Value, gist: &mut Map<String, Value>) {
    let blocks = payload
        .pointer("/attachments/0/blocks")
        .or_else(|| payload.get("blocks"))
        .and_then(Value::as_array);
    let mut fields = Map::new();
    for block in blocks.into_iter().flatten() {
        let text = block.pointer("/text/text").and_then(Value::as_str);
        match (block.get("type").and_then(Value::as_str), text) {
            (Some("header"), Some(t)) => {
                gist.entry("title").or_insert(json!(t));
            }
            (Some("section"), Some(t)) => {
                // `<url|Report>` is the link; anything else the text.
                match t.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
                    Some(link) if !link.contains(char::is_whitespace) => {
                        let url = link.split('|').next().unwrap_or(link);
                        gist.entry("link").or_insert(json!(url));
                    }
                    _ => {
                        gist.entry("text").or_insert(json!(t));
                    }
                }
            }
            _ => {}
        }
        for field in block
            .get("fields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(t) = field.get("text").and_then(Value::as_str) else {
                continue;
            };
            // "*Name*\nvalue"
            let (name, value) = t.split_once('\n').unwrap_or((t, ""));
            let name = name.trim_matches('*');
            if name == "Severity" {
                gist.insert("severity".into(), json!(value));
            } else {
                fields.insert(name.into(), json!(value));
            }
        }
    }
    if !gist.contains_key("text")
        && let Some(t) = payload.get("text").and_then(Value::as_str)
    {
        gist.insert("text".into(), json!(t));
    }
    if !fields.is_empty() {
        gist.insert("fields".into(), Value::Object(fields));
    }
}

/// Title and severity from an e-mail's `[severity] title` subject.
fn email_gist(payload: &Value, gist: &mut Map<String, Value>) {
    let subject = payload.get("subject").and_then(Value::as_str).unwrap_or("");
    match subject
        .strip_prefix('[')
        .and_then(|rest| rest.split_once("] "))
    {
        Some((severity, title)) => {
            gist.insert("title".into(), json!(title));
            gist.insert("severity".into(), json!(severity));
        }
        None => {
            gist.insert("title".into(), json!(subject));
        }
    }
    if let Some(text) = payload.get("text") {
        gist.insert("text".into(), text.clone());
    }
}

/// A few indented lines for the terminal.
pub fn readable(record: &Value) -> String {
    let s = |key: &str| record.get(key).and_then(Value::as_str).unwrap_or("");
    let indent = " ".repeat(20);
    let mut out = format!("[{}] {:<9}", crate::clock::local_hms(), s("channel"));
    if !s("severity").is_empty() {
        out.push_str(&format!("[{}] ", s("severity")));
    }
    let title = s("title");
    out.push_str(if title.is_empty() {
        "(no title)"
    } else {
        title
    });
    out.push('\n');
    if let Some(to) = record.get("to").and_then(Value::as_array) {
        let to: Vec<&str> = to.iter().filter_map(Value::as_str).collect();
        out.push_str(&format!("{indent}to: {}\n", to.join(", ")));
    }
    for line in s("text").lines().filter(|l| !l.trim().is_empty()).take(12) {
        out.push_str(&format!("{indent}{}\n", line.trim_end()));
    }
    if let Some(fields) = record.get("fields").and_then(Value::as_object) {
        let shown: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}: {}",
                    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                )
            })
            .collect();
        if !shown.is_empty() {
            out.push_str(&format!("{indent}{}\n", shown.join("  ·  ")));
        }
    }
    if let Some(list) = record.get("attachments").and_then(Value::as_array)
        && !list.is_empty()
    {
        let names: Vec<String> = list
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        out.push_str(&format!("{indent}attachments: {}\n", names.join(", ")));
    }
    if !s("link").is_empty() {
        out.push_str(&format!("{indent}link: {}\n", s("link")));
    }
    if title.is_empty()
        && s("text").is_empty()
        && let Some(payload) = record.get("payload")
    {
        let mut raw = payload.to_string();
        if raw.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|i| raw.is_char_boundary(*i))
                .unwrap_or(0);
            raw.truncate(cut);
            raw.push('…');
        }
        out.push_str(&format!("{indent}{raw}\n"));
    }
    out
}

/// Starts the SMTP sink on 127.0.0.1:`port` (logs and its script in `dir`), posting
/// to `sink_url` (falling back to appending to `log`); AUTH, when used, must give
/// `password`. Returns once it accepts connections.
pub(crate) fn start_smtp(
    processes: &mut Processes,
    dir: &Path,
    port: u16,
    sink_url: &str,
    log: &Path,
    password: &str,
) -> Result<(), String> {
    if !Path::new(PYTHON).is_file() {
        return Err(format!(
            "{PYTHON} not found (Debian: apt-get install python3-aiosmtpd)"
        ));
    }
    let script = dir.join("smtp_sink.py");
    std::fs::write(&script, SMTP_SINK_PY).map_err(|e| format!("{}: {e}", script.display()))?;
    let mut cmd = Command::new(PYTHON);
    cmd.arg(&script)
        .arg(port.to_string())
        .arg(sink_url)
        .arg(log)
        .arg(password)
        .env("PYTHONUNBUFFERED", "1");
    processes.spawn(dir, "smtp-sink", cmd)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exited) = processes.exited() {
            return Err(format!(
                "the SMTP sink exited ({exited}); is python3-aiosmtpd installed?\n{}",
                crate::process::tail(&dir.join("smtp-sink.log"))
            ));
        }
        if smtp_banner(port) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the SMTP sink does not answer on 127.0.0.1:{port} after 30 s\n{}",
                crate::process::tail(&dir.join("smtp-sink.log"))
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Whether an SMTP server greets on 127.0.0.1:`port`.
fn smtp_banner(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 3];
    let greeted = stream.read_exact(&mut buf).is_ok() && &buf == b"220";
    let _ = stream.write_all(b"QUIT\r\n");
    greeted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_block_kit_is_summarised() {
        // As plugins/notify builds it.
        let payload = json!({ "attachments": [{ "color": "#d62728", "blocks": [
            { "type": "header", "text": { "type": "plain_text", "text": "HOTFIX-1: started" } },
            { "type": "section", "text": { "type": "mrkdwn", "text": "login fails" } },
            { "type": "section", "fields": [
                { "type": "mrkdwn", "text": "*Severity*\nP1" },
                { "type": "mrkdwn", "text": "*service*\nshop" },
            ]},
            { "type": "section", "text": { "type": "mrkdwn", "text": "<http://r/1|Report>" } },
        ]}]});
        let r = summarise("slack", payload);
        assert_eq!(r["title"], "HOTFIX-1: started");
        assert_eq!(r["text"], "login fails");
        assert_eq!(r["severity"], "P1");
        assert_eq!(r["fields"], json!({ "service": "shop" }));
        assert_eq!(r["link"], "http://r/1");
        assert!(r["payload"]["attachments"].is_array());
        let shown = readable(&r);
        assert!(
            shown.contains("slack    [P1] HOTFIX-1: started\n"),
            "{shown}"
        );
        assert!(shown.contains("service: shop"), "{shown}");
    }

    #[test]
    fn webhook_email_and_junk_are_summarised() {
        let r = summarise(
            "webhook",
            json!({ "title": "INC", "severity": "P0", "text": null }),
        );
        assert_eq!(
            (r["title"].as_str(), r["severity"].as_str()),
            (Some("INC"), Some("P0"))
        );
        assert!(r.get("text").is_none());
        let r = summarise(
            "email",
            json!({ "channel": "email", "subject": "[P2] Report", "to": ["a@b"], "text": "hi" }),
        );
        assert_eq!(
            (r["title"].as_str(), r["severity"].as_str()),
            (Some("Report"), Some("P2"))
        );
        assert_eq!(r["to"], json!(["a@b"]));
        assert!(readable(&r).contains("to: a@b"));
        let r = summarise("webhook", json!("not json"));
        assert!(readable(&r).contains("\"not json\""));
    }
}
