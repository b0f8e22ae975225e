//! The sandbox as the end-to-end tests use it: started, probed, reset and dropped.
//!
//! Needs the control plane (`scripts/kube-control-plane.sh build`), `prometheus`,
//! `git` and Debian's `python3-aiosmtpd`; fails without them, naming what is missing.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use runner_sandbox::demo::get;
use runner_sandbox::{
    BAD_IMAGE, IMAGE, PRODUCTION, REPLICAS, SERVICE, STAGING, Sandbox, SandboxOptions,
};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `probe` every 200 ms until it returns `Ok`, or panics after [`DEADLINE`]
/// with the last `Err`.
fn eventually<T>(what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match probe() {
            Ok(v) => return v,
            Err(seen) if start.elapsed() > DEADLINE => {
                panic!("not {what} after {DEADLINE:?}; last seen: {seen}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}

fn port(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

/// The one number of a PromQL answer.
fn number(sb: &Sandbox, promql: &str) -> Result<f64, String> {
    let result = sb.prometheus_query(promql)?;
    runner_sandbox::prometheus::scalar(&result).ok_or_else(|| format!("{promql}: {result}"))
}

fn post(port: u16, path: &str, body: &Value) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut s, &mut text).unwrap();
    let code = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, text.split_once("\r\n\r\n").unwrap().1.to_owned())
}

/// One e-mail through the SMTP sink, authenticating as the notify plugin would.
fn send_mail(server: &str) {
    let stream = TcpStream::connect(server).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut expect = |code: &str| loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with(code), "expected {code}, got {line:?}");
        if line.as_bytes().get(3) != Some(&b'-') {
            break;
        }
    };
    expect("220");
    for (cmd, code) in [
        ("EHLO test", "250"),
        // "\0sandbox\0sandbox"
        ("AUTH PLAIN AHNhbmRib3gAc2FuZGJveA==", "235"),
        ("MAIL FROM:<runner@localhost>", "250"),
        ("RCPT TO:<oncall@example.com>", "250"),
        ("DATA", "354"),
    ] {
        write!(w, "{cmd}\r\n").unwrap();
        expect(code);
    }
    write!(
        w,
        "From: runner@localhost\r\nTo: oncall@example.com\r\nSubject: [P2] Hotfix report\r\n\r\nThe report is attached.\r\n.\r\n"
    )
    .unwrap();
    expect("250");
    write!(w, "QUIT\r\n").unwrap();
}

#[test]
fn sandbox_serves_measures_notifies_resets_and_stops() {
    let began = Instant::now();
    let mut sb = Sandbox::start(SandboxOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let started = began.elapsed();
    let dir = sb.dir().to_owned();
    let prometheus = sb
        .prometheus_url()
        .expect("prometheus is installed (apt-get install prometheus)");

    // --- the environment file and its secrets
    let env = std::fs::read_to_string(sb.env_file()).unwrap();
    for line in [
        "kube_context: sandbox".to_owned(),
        format!("kubeconfig: {}", sb.kubeconfig_path().display()),
        format!("  production_url: {}", sb.production_url()),
        format!("  staging_url: {}", sb.staging_url()),
        format!("  prometheus_url: {prometheus}"),
        format!("  git_remote: {}", sb.git_remote().display()),
        "  base_tag: v1.4.2".to_owned(),
        "  fixed_image: demo/shop:1.4.3".to_owned(),
    ] {
        assert!(env.lines().any(|l| l == line), "no `{line}` in\n{env}");
    }
    let secrets = std::fs::read_to_string(sb.secrets_file()).unwrap();
    assert!(
        secrets.contains(&format!("SLACK_WEBHOOK={}/slack\n", sb.notify_url())),
        "{secrets}"
    );
    for file in [sb.secrets_file(), sb.env_file(), sb.kubeconfig_path()] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }

    // --- the fronts answer from the 4 good pods
    for url in [sb.production_url(), sb.staging_url()] {
        let (code, body) = get(port(&url), "/health").unwrap();
        assert_eq!(code, 200, "{url}/health: {body}");
        let health: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(health, json!({ "status": "ok", "version": "1.4.2" }));
        for path in ["/", "/api/orders"] {
            let (code, body) = get(port(&url), path).unwrap();
            assert_eq!(code, 200, "{url}{path}: {body}");
            serde_json::from_str::<Value>(&body).unwrap();
        }
        assert_eq!(get(port(&url), "/nope").unwrap().0, 404);
    }
    let pods = sb.serving(PRODUCTION);
    assert_eq!(pods.len(), REPLICAS as usize, "{pods:?}");
    assert!(
        pods.iter()
            .all(|p| p.image == IMAGE && p.track == "stable" && !p.bad)
    );

    // --- the git remote has the releases
    let tags = Command::new("git")
        .arg("-C")
        .arg(sb.git_remote())
        .args(["tag", "--list"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&tags.stdout)
            .lines()
            .collect::<Vec<_>>(),
        ["v1.4.0", "v1.4.1", "v1.4.2"]
    );

    // --- notifications: Slack, a webhook and an e-mail land in the log
    let slack = json!({ "attachments": [{ "color": "#d62728", "blocks": [
        { "type": "header", "text": { "type": "plain_text", "text": "HOTFIX-1: hotfix started" } },
        { "type": "section", "fields": [{ "type": "mrkdwn", "text": "*Severity*\nP1" }] },
    ]}]});
    assert_eq!(
        post(sb.ports().notify, "/slack", &slack),
        (200, "ok".to_owned())
    );
    assert_eq!(
        post(
            sb.ports().notify,
            "/webhook",
            &json!({ "title": "INC-1", "severity": "P0" })
        )
        .0,
        200
    );
    send_mail(&sb.smtp_server());
    let log = eventually("three notifications in the log", || {
        let log = sb.notifications();
        if log.len() == 3 {
            Ok(log)
        } else {
            Err(format!("{log:?}"))
        }
    });
    let gist: Vec<_> = log
        .iter()
        .map(|n| {
            (
                n["channel"].as_str(),
                n["title"].as_str(),
                n["severity"].as_str(),
            )
        })
        .collect();
    assert!(
        gist.contains(&(Some("slack"), Some("HOTFIX-1: hotfix started"), Some("P1"))),
        "{log:?}"
    );
    assert!(
        gist.contains(&(Some("webhook"), Some("INC-1"), Some("P0"))),
        "{log:?}"
    );
    assert!(
        gist.contains(&(Some("email"), Some("Hotfix report"), Some("P2"))),
        "{log:?}"
    );
    let mail = log.iter().find(|n| n["channel"] == "email").unwrap();
    assert_eq!(mail["to"], json!(["oncall@example.com"]));
    assert_eq!(mail["authenticated"], true);

    // --- Prometheus has rates of the background traffic within seconds
    let stable_rate = format!(
        "sum(rate(http_requests_total{{namespace=\"{PRODUCTION}\",service=\"{SERVICE}\",track=\"stable\"}}[30s]))"
    );
    let rate = eventually("a request rate in Prometheus", || {
        number(&sb, &stable_rate).and_then(|r| {
            if r > 0.0 {
                Ok(r)
            } else {
                Err(format!("rate {r}"))
            }
        })
    });
    let rate_seen = began.elapsed();
    assert!(rate < 100.0, "{rate}");

    // --- a bad canary in staging: 500s and latency with track="canary"
    let kubeconfig = sb.kubeconfig_path().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let config = kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).unwrap(),
            &Default::default(),
        )
        .await
        .unwrap();
        let api: Api<Deployment> =
            Api::namespaced(kube::Client::try_from(config).unwrap(), STAGING);
        let patch = json!({ "spec": { "replicas": 1, "template": { "spec": {
            "containers": [{ "name": SERVICE, "image": BAD_IMAGE }] } } } });
        api.patch(
            &format!("{SERVICE}-canary"),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    });
    eventually("a bad canary pod serving staging", || {
        let pods = sb.serving(STAGING);
        if pods.iter().any(|p| p.track == "canary" && p.bad) {
            Ok(())
        } else {
            Err(format!("{pods:?}"))
        }
    });
    let canary_errors = format!(
        "sum(increase(http_requests_total{{namespace=\"{STAGING}\",service=\"{SERVICE}\",track=\"canary\",code=\"500\"}}[1m]))"
    );
    eventually("500s of the canary in Prometheus", || {
        number(&sb, &canary_errors).and_then(|n| if n > 0.0 { Ok(n) } else { Err(format!("{n}")) })
    });
    let canary_latency = format!(
        "sum(rate(http_request_duration_seconds_sum{{namespace=\"{STAGING}\",track=\"canary\"}}[1m])) / sum(rate(http_request_duration_seconds_count{{namespace=\"{STAGING}\",track=\"canary\"}}[1m]))"
    );
    let latency = eventually("the canary's mean latency in Prometheus", || {
        number(&sb, &canary_latency)
    });
    // Bad pods add ~600 ms; the [1m] window may still hold some of the good
    // canary's fast answers from before the image changed, so only "far slower
    // than a good pod's ~5 ms" is certain.
    assert!(
        (0.3..1.5).contains(&latency),
        "mean canary latency {latency} s"
    );
    // Production is untouched: its stable pods still answer 200 only.
    let prod_errors =
        format!("sum(rate(http_requests_total{{namespace=\"{PRODUCTION}\",code=~\"5..\"}}[1m]))");
    assert_eq!(number(&sb, &prod_errors), Ok(0.0));

    // --- reset: the canary is gone, the metrics, log and remote are fresh
    let before_reset = Instant::now();
    sb.reset().unwrap_or_else(|e| panic!("{e}"));
    let reset_took = before_reset.elapsed();
    assert!(
        sb.serving(STAGING)
            .iter()
            .all(|p| p.track == "stable" && p.image == IMAGE)
    );
    assert!(sb.notifications().is_empty());
    let canary_series = format!("http_requests_total{{namespace=\"{STAGING}\",track=\"canary\"}}");
    assert_eq!(sb.prometheus_query(&canary_series), Ok(json!([])));
    assert_eq!(get(port(&sb.staging_url()), "/health").unwrap().0, 200);

    // --- dropped: nothing listens, the folder is gone
    let ports = sb.ports();
    let before_drop = Instant::now();
    drop(sb);
    let stopped = before_drop.elapsed();
    for port in [
        ports.production,
        ports.staging,
        ports.notify,
        ports.metrics,
        ports.prometheus,
        ports.smtp,
    ] {
        assert!(
            TcpStream::connect(("127.0.0.1", port)).is_err(),
            "port {port} still open"
        );
    }
    assert!(!dir.exists(), "{} still exists", dir.display());
    eprintln!(
        "sandbox: started in {:.1} s, rates in Prometheus {:.1} s after start, reset {:.1} s, stopped in {:.1} s",
        started.as_secs_f64(),
        rate_seen.as_secs_f64(),
        reset_took.as_secs_f64(),
        stopped.as_secs_f64()
    );
}
