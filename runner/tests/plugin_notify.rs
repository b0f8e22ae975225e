//! The `notify` plugin end to end: Slack and webhook payloads recorded by a real
//! HTTP server on loopback, e-mail delivered to a real SMTP server (Debian's
//! `python3-aiosmtpd`, which `.ci/run` installs) writing to a maildir.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;

/// Records every request body; answers with the scripted statuses, then 200.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl Hook {
    fn start(script: &[u16]) -> Hook {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let statuses = Arc::new(Mutex::new(
            script.iter().copied().collect::<VecDeque<u16>>(),
        ));
        let (s, b) = (server.clone(), bodies.clone());
        std::thread::spawn(move || {
            for mut request in s.incoming_requests() {
                let mut body = String::new();
                let _ = request.as_reader().read_to_string(&mut body);
                b.lock().unwrap().push(body);
                let status = statuses.lock().unwrap().pop_front().unwrap_or(200);
                let _ = request
                    .respond(tiny_http::Response::from_string("ok").with_status_code(status));
            }
        });
        Hook {
            port,
            bodies,
            server,
        }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .map(|b| serde_json::from_str(b).unwrap_or(Value::Null))
            .collect()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// A real SMTP server delivering into a maildir.
struct Smtp {
    port: u16,
    maildir: PathBuf,
    child: Child,
}

impl Smtp {
    fn start(dir: &Path) -> Smtp {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = dir.join("maildir");
        let child = Command::new("/usr/bin/python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run /usr/bin/python3 -m aiosmtpd (Debian: apt-get install python3-aiosmtpd; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP server never listened");
            std::thread::sleep(Duration::from_millis(100));
        }
        Smtp {
            port,
            maildir,
            child,
        }
    }

    fn messages(&self) -> Vec<String> {
        std::fs::read_dir(self.maildir.join("new"))
            .map(|d| {
                d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs one notify step; grants and secrets as given. Exit code and the step.
fn notify(dir: &Path, grants: &str, secrets: &[(&str, String)], with: &str) -> (i32, Value) {
    use std::os::unix::fs::PermissionsExt;
    let secrets_file = dir.join("secrets");
    let text: String = secrets.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&secrets_file, text).unwrap();
    std::fs::set_permissions(&secrets_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let playbook = common::one_step("notify", grants, "tell", with);
    let (code, events) = common::exec(
        dir,
        &playbook,
        &["--secrets", secrets_file.to_str().unwrap()],
    );
    (code, common::finished(&events, "tell").clone())
}

#[test]
fn a_slack_message_is_block_kit_coloured_by_severity() {
    let dir = common::scratch("notify-slack");
    let hook = Hook::start(&[]);
    let (code, step) = notify(
        &dir,
        &format!(
            "{{ http: [\"http://127.0.0.1:{}\"], secrets: [SLACK_WEBHOOK] }}",
            hook.port
        ),
        &[(
            "SLACK_WEBHOOK",
            format!("http://127.0.0.1:{}/services/T0/B0/x", hook.port),
        )],
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: "Rollback of api", severity: P1, text: "error rate 2.1%", fields: { service: api, version: "1.2.4" }, link: "http://reports/run-1" }"#,
    );
    assert_eq!(code, 0, "{step}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    let m = &bodies[0];
    assert_eq!(m["text"], "Rollback of api");
    let a = &m["attachments"][0];
    assert_eq!(a["color"], "#d40e0d");
    assert_eq!(a["blocks"][0]["type"], "header");
    assert_eq!(a["blocks"][0]["text"]["text"], "Rollback of api");
    assert_eq!(a["blocks"][1]["text"]["text"], "error rate 2.1%");
    let fields: Vec<&str> = a["blocks"][2]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["*Severity*\nP1", "*service*\napi", "*version*\n1.2.4"]
    );
    assert_eq!(
        a["blocks"][3]["text"]["text"],
        "<http://reports/run-1|Report>"
    );
    // The webhook URL is a secret: it is not in what the step reports.
    assert!(!step.to_string().contains("/services/T0/B0/x"), "{step}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Approval buttons: what `runner serve`'s Slack interaction reads back.
#[test]
fn a_slack_message_can_carry_approval_buttons() {
    let dir = common::scratch("notify-slack-buttons");
    let hook = Hook::start(&[]);
    let grants = format!(
        "{{ http: [\"http://127.0.0.1:{}\"], secrets: [SLACK_WEBHOOK] }}",
        hook.port
    );
    let secrets = [(
        "SLACK_WEBHOOK",
        format!("http://127.0.0.1:{}/services/T0/B0/x", hook.port),
    )];
    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: "Deploy?", approval: { run: "1-2-abc", step: confirm } }"#,
    );
    assert_eq!(code, 0, "{step}");
    let bodies = hook.bodies();
    let blocks = bodies[0]["attachments"][0]["blocks"].as_array().unwrap();
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    let ids: Vec<&str> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["approve", "reject"]);
    let value: serde_json::Value =
        serde_json::from_str(actions["elements"][0]["value"].as_str().unwrap()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({ "run": "1-2-abc", "step": "confirm" })
    );
    // An id that is not one, or buttons on another channel: refused, nothing sent.
    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: t, approval: { run: "a b", step: confirm } }"#,
    );
    assert_eq!(code, 1, "{step}");
    assert_eq!(hook.bodies().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_webhook_is_retried_with_backoff_on_5xx_but_not_on_4xx() {
    let dir = common::scratch("notify-webhook");
    let hook = Hook::start(&[503, 502, 200]);
    let grants = format!(
        "{{ http: [\"http://127.0.0.1:{}\"], secrets: [HOOK] }}",
        hook.port
    );
    let secrets = [("HOOK", format!("http://127.0.0.1:{}/incident", hook.port))];
    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: webhook, webhook_secret: HOOK, title: "INC-1 declared", severity: P0, payload: { summary: "INC-1", priority: P0 }, backoff: 10ms }"#,
    );
    assert_eq!(code, 0, "{step}");
    assert_eq!(step["outputs"]["attempts"], 3);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[2],
        serde_json::json!({ "summary": "INC-1", "priority": "P0" })
    );
    // A 400 is the request's fault: one attempt, then failed.
    let hook = Hook::start(&[400]);
    let grants = format!(
        "{{ http: [\"http://127.0.0.1:{}\"], secrets: [HOOK] }}",
        hook.port
    );
    let secrets = [("HOOK", format!("http://127.0.0.1:{}/incident", hook.port))];
    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: webhook, webhook_secret: HOOK, title: "x", backoff: 10ms }"#,
    );
    assert_eq!(code, 1);
    assert_eq!(hook.bodies().len(), 1);
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("the webhook answered 400"),
        "{step}"
    );
    // The default payload carries the notice's fields.
    let hook = Hook::start(&[]);
    let grants = format!(
        "{{ http: [\"http://127.0.0.1:{}\"], secrets: [HOOK] }}",
        hook.port
    );
    let secrets = [("HOOK", format!("http://127.0.0.1:{}/incident", hook.port))];
    let (code, _) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: webhook, webhook_secret: HOOK, title: "t", text: "body", severity: P2 }"#,
    );
    assert_eq!(code, 0);
    assert_eq!(hook.bodies()[0]["title"], "t");
    assert_eq!(hook.bodies()[0]["severity"], "P2");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_email_reaches_a_real_smtp_server_with_its_attachment() {
    let dir = common::scratch("notify-email");
    let smtp = Smtp::start(&dir);
    std::fs::create_dir_all(dir.join("artifacts")).unwrap();
    std::fs::write(
        dir.join("artifacts/report.md"),
        "# Hotfix report\nall green\n",
    )
    .unwrap();
    let (code, step) = notify(
        &dir,
        &format!(
            "{{ tcp: [\"127.0.0.1:{}\"], secrets: [SMTP_URL], fs: [{{ path: artifacts }}] }}",
            smtp.port
        ),
        &[("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port))],
        r#"{ channel: email, smtp_secret: SMTP_URL, to: "oncall@example.com, lead@example.com", title: "Hotfix INC-1 done", severity: P1, text: "Rolled out 1.2.4.", attachments: [artifacts/report.md] }"#,
    );
    assert_eq!(code, 0, "{step}");
    assert!(
        step["summary"]
            .as_str()
            .unwrap()
            .starts_with("sent to 2 recipients"),
        "{step}"
    );
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let m = &messages[0];
    assert!(m.contains("Subject: [P1] Hotfix INC-1 done"), "{m}");
    assert!(
        m.contains("To: oncall@example.com, lead@example.com"),
        "{m}"
    );
    assert!(m.contains("Rolled out 1.2.4."), "{m}");
    assert!(m.contains("filename=\"report.md\""), "{m}");
    // The attachment, base64: "# Hotfix report\nall green\n".
    assert!(m.contains("IyBIb3RmaXggcmVwb3J0CmFsbCBncmVlbgo="), "{m}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn email_needs_its_endpoint_granted_and_a_server_that_answers() {
    let dir = common::scratch("notify-email-deny");
    let smtp = Smtp::start(&dir);
    // No tcp grant: denied, naming the grant to add.
    let (code, step) = notify(
        &dir,
        "{ secrets: [SMTP_URL] }",
        &[("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port))],
        r#"{ channel: email, smtp_secret: SMTP_URL, to: a@example.com, title: t, attempts: 1 }"#,
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied", "{step}");
    assert!(
        step["error"].as_str().unwrap().contains(&format!(
            "add `127.0.0.1:{}` to `plugins.p.grants.tcp`",
            smtp.port
        )),
        "{step}"
    );
    assert!(smtp.messages().is_empty());
    // A server that is down: retried, then failed.
    let port = smtp.port;
    drop(smtp);
    let (code, step) = notify(
        &dir,
        &format!("{{ tcp: [\"127.0.0.1:{port}\"], secrets: [SMTP_URL] }}"),
        &[("SMTP_URL", format!("smtp://127.0.0.1:{port}"))],
        r#"{ channel: email, smtp_secret: SMTP_URL, to: a@example.com, title: t, attempts: 2, backoff: 10ms }"#,
    );
    assert_eq!(code, 1);
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("cannot connect to the SMTP server"),
        "{step}"
    );
    // A secret that is not granted: denied.
    let (code, step) = notify(
        &dir,
        "{ secrets: [OTHER] }",
        &[("OTHER", "x".into())],
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: t }"#,
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "denied");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_webhook_or_smtp_server_that_never_answers_times_out_each_attempt() {
    let dir = common::scratch("notify-hang");
    let hung = common::Silent::start();
    let (code, step) = notify(
        &dir,
        &format!(
            "{{ http: [\"http://127.0.0.1:{}\"], secrets: [HOOK] }}",
            hung.port
        ),
        &[("HOOK", format!("http://127.0.0.1:{}/hook", hung.port))],
        r#"{ channel: webhook, webhook_secret: HOOK, title: t, timeout: 300ms, attempts: 2, backoff: 10ms }"#,
    );
    assert_eq!(code, 1, "{step}");
    assert!(
        step["error"].as_str().unwrap().contains("timed out"),
        "{step}"
    );
    // Each attempt gave up on its own connection.
    assert_eq!(hung.connections(), 2, "{step}");
    let hung = common::Silent::start();
    let (code, step) = notify(
        &dir,
        &format!(
            "{{ tcp: [\"127.0.0.1:{}\"], secrets: [SMTP_URL] }}",
            hung.port
        ),
        &[("SMTP_URL", format!("smtp://127.0.0.1:{}", hung.port))],
        r#"{ channel: email, smtp_secret: SMTP_URL, to: a@example.com, title: t, timeout: 300ms, attempts: 1 }"#,
    );
    assert_eq!(code, 1, "{step}");
    assert!(
        step["error"]
            .as_str()
            .unwrap()
            .contains("the SMTP server stopped answering"),
        "{step}"
    );
    assert_eq!(hung.connections(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Inputs in a Slack message stay text: `<!channel>`, a user mention and a forged
/// link arrive escaped as Slack requires (`&lt;` `&gt;` `&amp;`) in every text
/// Slack parses, and a `link` that would close Slack's `<url|label>` is refused
/// before anything is sent.
#[test]
fn slack_text_from_inputs_cannot_mention_or_link() {
    let dir = common::scratch("notify-slack-escape");
    let hook = Hook::start(&[]);
    let grants = format!(
        "{{ http: [\"http://127.0.0.1:{}\"], secrets: [SLACK_WEBHOOK] }}",
        hook.port
    );
    let secrets = [(
        "SLACK_WEBHOOK",
        format!("http://127.0.0.1:{}/services/T0/B0/x", hook.port),
    )];
    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: "<!channel> rollback", severity: "<!here>", text: "see <http://evil.example|the report> & <@U0123>", fields: { "<!everyone>": "<http://evil.example|click>" } }"#,
    );
    assert_eq!(code, 0, "{step}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1);
    let m = &bodies[0];
    assert_eq!(m["text"], "&lt;!channel&gt; rollback");
    let blocks = &m["attachments"][0]["blocks"];
    assert_eq!(blocks[0]["text"]["text"], "&lt;!channel&gt; rollback");
    assert_eq!(
        blocks[1]["text"]["text"],
        "see &lt;http://evil.example|the report&gt; &amp; &lt;@U0123&gt;"
    );
    assert_eq!(blocks[2]["fields"][0]["text"], "*Severity*\n&lt;!here&gt;");
    assert_eq!(
        blocks[2]["fields"][1]["text"],
        "*&lt;!everyone&gt;*\n&lt;http://evil.example|click&gt;"
    );
    // No text anywhere in the message opens a Slack control sequence.
    assert!(!m.to_string().contains('<'), "{m}");

    let (code, step) = notify(
        &dir,
        &grants,
        &secrets,
        r#"{ channel: slack, webhook_secret: SLACK_WEBHOOK, title: t, link: "http://reports/run-1|click here> <!channel" }"#,
    );
    assert_eq!(code, 1);
    assert_eq!(step["error_kind"], "invalid-input", "{step}");
    assert_eq!(hook.bodies().len(), 1, "nothing more was sent");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Line breaks in a title cannot add a header, and bare CR, bare LF and a lone
/// `.` line in the text cannot end the message early and smuggle SMTP commands
/// into the conversation: a real SMTP server receives one message, whose
/// headers are the plugin's and whose body holds the hostile text as text.
#[test]
fn email_text_cannot_add_headers_or_smuggle_commands() {
    let dir = common::scratch("notify-email-inject");
    let smtp = Smtp::start(&dir);
    let (code, step) = notify(
        &dir,
        &format!(
            "{{ tcp: [\"127.0.0.1:{}\"], secrets: [SMTP_URL] }}",
            smtp.port
        ),
        &[("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port))],
        r#"{ channel: email, smtp_secret: SMTP_URL, to: oncall@example.com, title: "Rollback\r\nX-Injected: by-title\nBcc: evil@example.com", text: "first\rX-Bare-CR: yes\nsecond\r\n.\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<evil@example.com>\r\nDATA\r\nX-Injected: smuggled\r\n\r\nforged\n.\nQUIT\r\n", fields: { "note\r\nX-Injected": "by-field" } }"#,
    );
    assert_eq!(code, 0, "{step}");
    let messages = smtp.messages();
    assert_eq!(
        messages.len(),
        1,
        "one message, nothing smuggled: {messages:?}"
    );
    // The maildir may keep the message's CRLF or write LF: read both as LF, so
    // that only a bare CR is left as `\r`.
    let m = messages[0].replace("\r\n", "\n");
    assert!(!m.contains('\r'), "a bare CR reached the server: {m:?}");
    let (headers, body) = m.split_once("\n\n").unwrap_or_else(|| panic!("{m}"));
    assert!(
        headers.contains("Subject: Rollback  X-Injected: by-title Bcc: evil@example.com"),
        "{headers}"
    );
    for line in headers.lines() {
        assert!(
            !line.starts_with("X-Injected")
                && !line.starts_with("Bcc")
                && !line.starts_with("X-Bare-CR"),
            "an injected header: {headers}"
        );
        // aiosmtpd records the envelope (`X-MailFrom`, `X-RcptTo`): no evil
        // recipient there either.
        assert!(
            line.starts_with("Subject:") || !line.contains("evil"),
            "{headers}"
        );
    }
    // The hostile text is in the body, line by line; its lone `.` lines came
    // through dot-stuffing as text.
    for part in [
        "first\nX-Bare-CR: yes\nsecond\n.\nMAIL FROM:<evil@example.com>",
        "X-Injected: smuggled\n\nforged\n.\nQUIT",
        "note\nX-Injected: by-field",
    ] {
        assert!(body.contains(part), "{part:?} not in the body: {body:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
