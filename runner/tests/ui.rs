//! The web UI in a real browser: Debian's chromium, headless, driven through
//! chromedriver (WebDriver) against `runner serve` on 127.0.0.1.
//!
//! One browser for the whole story, in order, as an on-call engineer lives
//! it: log in; start a run from the UI; watch its tree advance without a
//! reload; a viewer sees no Approve button and a forged POST is refused; the
//! tech lead approves from the page and the run goes on; an operator re-runs
//! it from a step and cancels the new run from its page; a plugin's hostile
//! summary is shown inert; the stats page draws its charts; the page of a
//! 60-step run is weighed and timed (printed, for docs/performance.md, never
//! asserted). Screenshots of the run and stats pages are written to
//! `$CARGO_TARGET_TMPDIR/ui/` (docs/ui/ holds the current ones).
//!
//! Beside it, the session rules over plain HTTP, where every header can be
//! read and forged: the cookie's flags, a wrong token, a login form from
//! elsewhere, CSRF on forms and on API calls made with the cookie, logout,
//! a revoked token ending its sessions, CSP and no-store on every page, and
//! a secret the run used appearing on no page.

mod common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::serve::Server;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const HOSTILE: &str = r#"version: 1
name: hostile
plugins:
  echo: { uses: echo }
stages:
  - id: s
    steps:
      - id: shout
        uses: echo
        with: { message: "<script>window.pwned=1</script><img src=x onerror=window.pwned=2> \u001b[31mred\u001b]0;title\u0007 \u202eevil" }
"#;

/// Three steps a second and a half apart, then an approval for a tech lead,
/// then one more step: slow enough to be watched.
const LIVE: &str = r#"version: 1
name: live
inputs:
  service: { type: string, pattern: "[a-z]+", default: shop }
plugins:
  echo: { uses: echo }
stages:
  - id: build
    steps:
      - id: one
        uses: echo
        with: { message: "built ${{ inputs.service }}; page ${{ run.url }}", sleep_ms: 1500 }
      - id: two
        uses: echo
        needs: [one]
        with: { message: "tested", sleep_ms: 1500 }
      - id: three
        uses: echo
        needs: [two]
        with: { message: "packed", sleep_ms: 1500 }
  - id: deploy
    steps:
      - id: go
        approval: { prompt: "Deploy to production?", approvers: [tech-lead], timeout: 5m, on_timeout: fail }
      - id: ship
        uses: echo
        needs: [go]
        with: { message: "shipped" }
"#;

fn sixty() -> String {
    let mut text =
        String::from("version: 1\nname: sixty\nplugins:\n  echo: { uses: echo }\nstages:\n");
    for stage in 0..6 {
        text.push_str(&format!("  - id: stage{stage}\n    steps:\n"));
        for step in 0..10 {
            text.push_str(&format!(
                "      - id: step{stage}_{step}\n        uses: echo\n        with: {{ message: \"step {step} of stage {stage} done\" }}\n"
            ));
        }
    }
    text
}

/// chromedriver on a free loopback port, and a headless chromium session.
struct Browser {
    driver: Child,
    client: Option<Client>,
    _profile: std::path::PathBuf,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect("chromedriver is missing: install Debian's chromium and chromium-driver (.ci/run does)");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = common::scratch("ui-profile");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--disable-dev-shm-usage",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a chromium session");
        Browser {
            driver,
            client: Some(client),
            _profile: profile,
        }
    }

    fn c(&self) -> &Client {
        self.client.as_ref().unwrap()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits (at most `secs`) until `script` returns true in the page.
async fn until(c: &Client, script: &str, secs: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(Value::Bool(true)) = c.execute(script, vec![]).await {
            return;
        }
        if Instant::now() > deadline {
            let text = c
                .execute(
                    "return document.body ? document.body.innerText : ''",
                    vec![],
                )
                .await
                .unwrap_or_default();
            panic!("{what}: not seen within {secs}s; the page says:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_of(c: &Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Clicks the element `css` finds.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn login(c: &Client, base: &str, token: &str) {
    c.goto(&format!("{base}/ui/runs")).await.unwrap();
    // Not logged in: the login page, which remembers where to go.
    let url = c.current_url().await.unwrap();
    assert_eq!(url.path(), "/ui/login", "{url}");
    c.find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(token)
        .await
        .unwrap();
    click(c, "form.login button").await;
    until(
        c,
        "return location.pathname === '/ui/runs' && !!document.querySelector('h1')",
        10,
        "the runs page after login",
    )
    .await;
}

async fn logout(c: &Client) {
    click(c, "form.who button").await;
    until(
        c,
        "return location.pathname === '/ui/login'",
        10,
        "the login page after logout",
    )
    .await;
}

/// A status cell's word for step `anchor` on the run page.
fn step_is(anchor: &str, word: &str) -> String {
    format!(
        "const li = document.getElementById({anchor:?}); return !!li && li.querySelector('.status').textContent.includes({word:?});"
    )
}

fn shots() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ui");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_in_a_real_browser() {
    let sixty = sixty();
    let server = Server::start_with(
        "ui",
        &[("hostile", HOSTILE), ("live", LIVE), ("sixty", &sixty)],
        "",
        &[],
    );
    let base = format!("http://{}", server.addr);
    let browser = Browser::start().await;
    let c = browser.c();

    // Log in as alice (operator, tech-lead) with her API token.
    login(c, &base, server.token("alice")).await;
    assert!(text_of(c, "form.who").await.contains("alice"));

    // Without the session's cookie a page sends one to the login page.
    let r = server.raw("GET", "/ui/runs", None, &[], None);
    assert_eq!(r.status, 303, "{}", r.headers);
    assert!(r.headers.contains("location: /ui/login"), "{}", r.headers);

    // Start `live` from the UI.
    c.goto(&format!("{base}/ui/start?playbook=live"))
        .await
        .unwrap();
    c.find(Locator::Css("input[name='input.service']"))
        .await
        .unwrap()
        .send_keys("shop")
        .await
        .unwrap();
    click(c, "form.start button").await;
    until(
        c,
        "return location.pathname.startsWith('/ui/runs/') && !!document.getElementById('run')",
        30,
        "the new run's page",
    )
    .await;
    let run_url = c.current_url().await.unwrap();
    let id = run_url.path().trim_start_matches("/ui/runs/").to_owned();

    // The tree advances without a reload: a mark left in the page survives
    // while the steps finish one after the other.
    c.execute("window.__noReload = 'still here'; return true;", vec![])
        .await
        .unwrap();
    until(
        c,
        &step_is("step-build.one", "succeeded"),
        30,
        "step one succeeded",
    )
    .await;
    // `run.url` is the run's page under the server's public URL.
    let one = text_of(c, "#step-build\\.one .summary").await;
    assert_eq!(
        one,
        format!("built shop; page http://runner.test/ui/runs/{id}")
    );
    until(
        c,
        &step_is("step-build.three", "succeeded"),
        30,
        "step three succeeded",
    )
    .await;
    until(
        c,
        &step_is("step-deploy.go", "waiting"),
        30,
        "the approval waiting",
    )
    .await;
    let mark = c
        .execute("return window.__noReload || null;", vec![])
        .await
        .unwrap();
    assert_eq!(mark, json!("still here"), "the page was reloaded");
    // The run page while it waits for the tech lead: the screenshot of a live run.
    std::fs::write(shots().join("run.png"), c.screenshot().await.unwrap()).unwrap();

    // carol (viewer) sees the run but no Approve button, and her forged
    // POSTs (no CSRF token; the API with the cookie but no header) are refused.
    logout(c).await;
    login(c, &base, server.token("carol")).await;
    c.goto(run_url.as_str()).await.unwrap();
    until(
        c,
        "return !!document.querySelector('.approval')",
        10,
        "the waiting approval",
    )
    .await;
    let buttons = c.find_all(Locator::Css(".approval button")).await.unwrap();
    assert!(buttons.is_empty(), "a viewer is offered buttons");
    assert!(
        text_of(c, ".approval")
            .await
            .contains("needs one of the roles tech-lead")
    );
    let forged = c
        .execute_async(
            r#"const done = arguments[0];
            Promise.all([
              fetch(location.pathname + '/approvals/go', { method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded' }, body: 'csrf=forged&decision=approve' }).then(r => r.status),
              fetch('/api/v1' + location.pathname.slice(3) + '/approvals/go', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ decision: 'approve' }) }).then(r => r.status),
            ]).then(done);"#,
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(forged, json!([403, 403]), "forged POSTs");
    // The run still waits.
    let api = server.call("GET", &format!("/api/v1/runs/{id}"), Some("carol"), None);
    assert_eq!(
        api.json()["run"]["status"],
        "running",
        "a forged POST moved the run"
    );

    // bob (tech-lead) approves from the page, with a comment; the run goes on.
    logout(c).await;
    login(c, &base, server.token("bob")).await;
    c.goto(&format!("{base}/ui/approvals")).await.unwrap();
    until(
        c,
        "return !!document.querySelector('form.decide')",
        10,
        "bob's waiting approval",
    )
    .await;
    assert!(text_of(c, "main").await.contains("Deploy to production?"));
    c.find(Locator::Css("form.decide input[name=comment]"))
        .await
        .unwrap()
        .send_keys("checked the canary")
        .await
        .unwrap();
    click(c, "form.decide button.approve").await;
    until(
        c,
        &format!("return location.pathname === '/ui/runs/{id}'"),
        10,
        "back on the run page",
    )
    .await;
    until(
        c,
        &step_is("step-deploy.ship", "succeeded"),
        30,
        "the step after the approval",
    )
    .await;
    until(
        c,
        "return document.getElementById('run').dataset.status === 'succeeded'",
        30,
        "the run succeeded",
    )
    .await;
    let decided = text_of(c, "#step-deploy\\.go").await;
    assert!(
        decided.contains("approved by bob (web session)") && decided.contains("checked the canary"),
        "{decided}"
    );

    // alice (operator) re-runs it from step three: a new run, one and two
    // kept, that waits for the tech lead again; she cancels it from its page.
    logout(c).await;
    login(c, &base, server.token("alice")).await;
    c.goto(run_url.as_str()).await.unwrap();
    c.find(Locator::Css("section.actions select[name=from]"))
        .await
        .unwrap()
        .select_by_value("three")
        .await
        .unwrap();
    click(c, "section.actions button[type=submit]").await;
    until(
        c,
        &format!(
            "return location.pathname.startsWith('/ui/runs/') && location.pathname !== '/ui/runs/{id}' && !!document.getElementById('run')"
        ),
        30,
        "the re-run's page",
    )
    .await;
    let rerun = c
        .current_url()
        .await
        .unwrap()
        .path()
        .trim_start_matches("/ui/runs/")
        .to_owned();
    until(
        c,
        &step_is("step-deploy.go", "waiting"),
        30,
        "the re-run waiting for its approval",
    )
    .await;
    let shown = server.call("GET", &format!("/api/v1/runs/{rerun}"), Some("carol"), None);
    let steps = shown.json()["steps"].clone();
    let three = steps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "three")
        .cloned()
        .unwrap_or_default();
    assert_eq!(three["status"], "succeeded", "{steps}");
    click(c, "section.actions button.danger").await;
    until(
        c,
        "return document.getElementById('run')?.dataset.status === 'interrupted'",
        30,
        "the cancelled re-run",
    )
    .await;
    let ended = server.wait_for(&rerun, |v| v["run"]["status"] != "running");
    assert_eq!(ended["run"]["status"], "interrupted", "{ended}");

    // A plugin's hostile summary is text: no element, no script ran, the
    // escape sequences and the direction override visible as marks.
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "hostile" })),
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let hostile = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&hostile, |v| v["run"]["status"] == "succeeded");
    c.goto(&format!("{base}/ui/runs/{hostile}")).await.unwrap();
    until(
        c,
        &step_is("step-s.shout", "succeeded"),
        10,
        "the hostile step",
    )
    .await;
    let summary = text_of(c, "#step-s\\.shout .summary").await;
    assert!(
        summary.contains("<script>window.pwned=1</script>"),
        "{summary}"
    );
    // No control character or override reaches the page; each is shown as
    // a mark (the host writes them escaped; the page makes any left visible).
    assert!(
        !summary.contains(['\u{1b}', '\u{7}', '\u{202e}']),
        "{summary:?}"
    );
    assert!(
        summary.contains("\\u{1b}[31mred") || summary.contains("\u{241b}[31mred"),
        "{summary:?}"
    );
    let inert = c
        .execute(
            "return [window.pwned === undefined, document.querySelectorAll('main script, main img').length];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(inert, json!([true, 0]));

    // The 60-step run: weighed and timed in the browser (a fresh profile
    // has nothing cached but what this test loaded: the CSS and JS).
    let started = server.call(
        "POST",
        "/api/v1/runs",
        Some("alice"),
        Some(&json!({ "playbook": "sixty" })),
    );
    assert_eq!(started.status, 201, "{}", started.body);
    let big = started.json()["id"].as_str().unwrap().to_owned();
    server.wait_for(&big, |v| v["run"]["status"] == "succeeded");
    let mut figures = Vec::new();
    for _ in 0..5 {
        c.goto(&format!("{base}/ui/runs/{big}")).await.unwrap();
        until(
            c,
            "return document.readyState === 'complete'",
            10,
            "the 60-step page loaded",
        )
        .await;
        let f = c
            .execute(
                r#"const n = performance.getEntriesByType('navigation')[0];
                const res = performance.getEntriesByType('resource');
                return { html: n.transferSize, body: n.decodedBodySize,
                         resources: res.reduce((s, r) => s + r.transferSize, 0),
                         uncached: res.reduce((s, r) => s + r.encodedBodySize, 0),
                         ttfb: n.responseStart - n.startTime,
                         dcl: n.domContentLoadedEventEnd - n.startTime,
                         load: n.loadEventEnd - n.startTime,
                         steps: document.querySelectorAll('li.step').length };"#,
                vec![],
            )
            .await
            .unwrap();
        figures.push(f);
    }
    assert_eq!(figures[0]["steps"], 60, "{figures:?}");
    let mut loads: Vec<f64> = figures
        .iter()
        .map(|f| f["load"].as_f64().unwrap())
        .collect();
    loads.sort_by(f64::total_cmp);
    let f = &figures[0];
    println!(
        "ui figures: 60-step run page: HTML {} B transferred ({} B decoded), CSS+JS {} B (first load, uncompressed), load event after {:.0} ms (first), median of 5 {:.0} ms, max {:.0} ms; time to first byte {:.0} ms",
        f["html"],
        f["body"],
        f["uncached"],
        loads
            .first()
            .map_or(0.0, |_| figures[0]["load"].as_f64().unwrap()),
        loads[loads.len() / 2],
        loads[loads.len() - 1],
        f["ttfb"].as_f64().unwrap_or(0.0),
    );

    // History and stats: a table and charts for each playbook.
    c.goto(&format!("{base}/ui/stats?days=7")).await.unwrap();
    until(
        c,
        "return document.querySelectorAll('figure.chart svg rect.bar').length > 0",
        10,
        "the stats charts",
    )
    .await;
    let table = text_of(c, "table.stats").await;
    for p in ["live", "hostile", "sixty"] {
        assert!(table.contains(p), "{table}");
    }
    std::fs::write(shots().join("stats.png"), c.screenshot().await.unwrap()).unwrap();
    println!("ui screenshots: {}", shots().display());

    // Every page, with and without a session: never a 5xx.
    let pages = [
        "/ui/runs",
        "/ui/runs?status=nonsense",
        "/ui/runs?since=forever",
        &format!("/ui/runs/{big}"),
        &format!("/ui/runs/{big}/live"),
        &format!("/ui/runs/{big}/artifacts/7"),
        "/ui/runs/..%2f..%2fetc",
        "/ui/runs/nope/approvals/x",
        "/ui/approvals",
        "/ui/start",
        "/ui/start?playbook=../../etc/passwd",
        "/ui/stats?days=0",
        "/ui/stats?days=x",
    ];
    for p in pages {
        let status = c
            .execute_async(
                "const done = arguments[1]; fetch(arguments[0]).then(r => done(r.status));",
                vec![json!(p)],
            )
            .await
            .unwrap();
        let s = status.as_u64().unwrap();
        assert!((200..500).contains(&s), "{p}: {s}");
        let anonymous = server.raw("GET", p, None, &[], None);
        assert!(
            (200..500).contains(&anonymous.status),
            "{p} without a session: {}",
            anonymous.status
        );
    }

    if let Some(client) = browser.client.as_ref() {
        let _ = client.clone().close().await;
    }
}

/// A playbook whose step prints a secret (the engine redacts it).
const LEAK: &str = r#"version: 1
name: leak
plugins:
  sh: { uses: exec, grants: { process: [{ run: sh, env: [T] }], secrets: [DEPLOY_TOKEN] } }
stages:
  - id: s
    steps:
      - id: careless
        uses: sh
        with: { program: sh, args: ["-c", "echo token=$T; echo $T >&2"], secret_env: { T: DEPLOY_TOKEN } }
"#;

const SECRET: &str = "s3cr3t-ui-9c41d2";

/// The value of `name=` in the response's Set-Cookie headers, and that
/// header's whole text.
fn set_cookie(r: &common::serve::Reply, name: &str) -> Option<(String, String)> {
    r.headers.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        if !k.eq_ignore_ascii_case("set-cookie") {
            return None;
        }
        let v = v.trim();
        let value = v.strip_prefix(&format!("{name}="))?.split(';').next()?;
        Some((value.to_owned(), v.to_owned()))
    })
}

/// The first hidden `csrf` field's value in a page.
fn csrf_of(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no csrf field in {page}"));
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn form_post(server: &Server, path: &str, cookie: &str, body: &str) -> common::serve::Reply {
    server.raw(
        "POST",
        path,
        None,
        &[
            ("Cookie", cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(body.as_bytes()),
    )
}

/// Logs `token` in over HTTP; the session cookie's header value.
fn http_login(server: &Server, token: &str) -> String {
    let form = server.raw("GET", "/ui/login", None, &[], None);
    let (nonce, _) = set_cookie(&form, "runner_login").expect("a login nonce");
    let r = form_post(
        server,
        "/ui/login",
        &format!("runner_login={nonce}"),
        &format!("token={token}&csrf={nonce}&next=%2Fui%2Fruns"),
    );
    assert_eq!(r.status, 303, "{}{}", r.headers, r.body);
    let (id, _) = set_cookie(&r, "runner_session").expect("a session cookie");
    format!("runner_session={id}")
}

#[test]
fn sessions_csrf_revocation_and_secrets_over_http() {
    use std::os::unix::fs::PermissionsExt;
    let dir = common::scratch("serve-ui-http");
    std::fs::create_dir_all(dir.join("playbooks")).unwrap();
    std::fs::create_dir_all(dir.join("environments")).unwrap();
    std::fs::write(dir.join("playbooks/leak.yaml"), LEAK).unwrap();
    let secrets = dir.join("secrets.env");
    std::fs::write(&secrets, format!("DEPLOY_TOKEN={SECRET}\n")).unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        dir.join("environments/prod.yaml"),
        format!("secrets_file: {}\n", secrets.display()),
    )
    .unwrap();
    let config = dir.join("serve.yaml");
    std::fs::write(
        &config,
        "catalog:\n  playbooks: playbooks\n  environments: environments\ntokens: tokens.yaml\n",
    )
    .unwrap();
    let tokens_file = dir.join("tokens.yaml");
    let mut tokens = std::collections::HashMap::new();
    for (who, roles) in [("alice", &["operator"][..]), ("carol", &["viewer"][..])] {
        tokens.insert(
            who.to_owned(),
            common::serve::add_token(&tokens_file, who, roles),
        );
    }
    let server = Server::spawn(dir.clone(), &config, tokens, &[]);

    // The login form: a nonce bound to a strict, HttpOnly cookie; a CSP.
    let form = server.raw("GET", "/ui/login", None, &[], None);
    assert_eq!(form.status, 200);
    let (nonce, header) = set_cookie(&form, "runner_login").expect("a login nonce");
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Strict"),
        "{header}"
    );
    assert_eq!(csrf_of(&form.body), nonce);
    let lower = form.headers.to_ascii_lowercase();
    assert!(
        lower.contains("content-security-policy: default-src 'none'; script-src 'self'"),
        "{}",
        form.headers
    );

    // A wrong token: 401, no session.
    let cookie = format!("runner_login={nonce}");
    let wrong = form_post(
        &server,
        "/ui/login",
        &cookie,
        &format!("token=rnr_not-a-token&csrf={nonce}"),
    );
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(wrong.body.contains("That token is not valid"));
    assert!(set_cookie(&wrong, "runner_session").is_none());
    // A right token posted from a form this server did not give (no nonce
    // cookie, or another nonce): 403, no session.
    let alice = server.token("alice").to_owned();
    for cookie in ["", "runner_login=other"] {
        let forged = form_post(
            &server,
            "/ui/login",
            cookie,
            &format!("token={alice}&csrf={nonce}"),
        );
        assert_eq!(forged.status, 403, "{}", forged.body);
        assert!(set_cookie(&forged, "runner_session").is_none());
    }
    // The right token: a session cookie, HttpOnly and strict, for the whole
    // site, not marked Secure on plain HTTP (it would not be sent back).
    let ok = form_post(
        &server,
        "/ui/login",
        &cookie,
        &format!("token={alice}&csrf={nonce}&next=%2Fui%2Fapprovals"),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert!(
        ok.headers
            .to_ascii_lowercase()
            .contains("location: /ui/approvals")
    );
    let (id, header) = set_cookie(&ok, "runner_session").expect("a session cookie");
    assert_eq!(id.len(), 43, "256 random bits in base64url: {id}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(header.contains(flag), "{header}");
    }
    assert!(!header.contains("Secure"), "{header}");
    let session = format!("runner_session={id}");
    let runs = server.raw("GET", "/ui/runs", None, &[("Cookie", &session)], None);
    assert_eq!(runs.status, 200);
    assert!(runs.body.contains("alice"));
    let csrf = csrf_of(&runs.body);
    assert_ne!(csrf, nonce);

    // A run that used a secret, started with the session through the API:
    // without the CSRF header, or with another, refused; with it, started.
    let start = br#"{"playbook": "leak", "environment": "prod"}"#;
    for header in [None, Some("forged")] {
        let mut h = vec![("Cookie", session.as_str())];
        if let Some(v) = header {
            h.push(("X-CSRF-Token", v));
        }
        let r = server.raw("POST", "/api/v1/runs", None, &h, Some(start));
        assert_eq!(r.status, 403, "{}", r.body);
    }
    let none = server.call("GET", "/api/v1/runs", Some("carol"), None);
    assert_eq!(
        none.json()["runs"].as_array().unwrap().len(),
        0,
        "{}",
        none.body
    );
    let r = server.raw(
        "POST",
        "/api/v1/runs",
        None,
        &[("Cookie", &session), ("X-CSRF-Token", &csrf)],
        Some(start),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let run = r.json()["id"].as_str().unwrap().to_owned();
    let done = server.wait_for(&run, |v| v["run"]["status"] != "running");
    assert_eq!(done["run"]["status"], "succeeded", "{done}");
    assert_eq!(done["run"]["started_by"], "alice (web session)", "{done}");

    // The secret is on no page; the run's page says it was redacted.
    let page = server.raw(
        "GET",
        &format!("/ui/runs/{run}"),
        None,
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("[redacted]"), "{}", page.body);
    for path in [
        format!("/ui/runs/{run}"),
        format!("/ui/runs/{run}/live"),
        "/ui/runs".to_owned(),
        "/ui/approvals".to_owned(),
        "/ui/stats".to_owned(),
        "/ui/start?playbook=leak".to_owned(),
    ] {
        let r = server.raw("GET", &path, None, &[("Cookie", &session)], None);
        assert_eq!(r.status, 200, "{path}: {}", r.body);
        assert!(!r.body.contains(SECRET), "{path} shows the secret");
        assert!(
            !r.body.contains(&alice) && !r.body.contains(&id),
            "{path} shows the token or the session id"
        );
        let headers = r.headers.to_ascii_lowercase();
        assert!(
            headers.contains("content-security-policy: default-src 'none'")
                && headers.contains("cache-control: no-store"),
            "{path}: {}",
            r.headers
        );
    }

    // Forms: a wrong CSRF token changes nothing (rerun makes no run).
    let forged = form_post(
        &server,
        &format!("/ui/runs/{run}/rerun"),
        &session,
        "csrf=forged&from=careless",
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    let listed = server.call("GET", "/api/v1/runs", Some("carol"), None);
    assert_eq!(
        listed.json()["runs"].as_array().unwrap().len(),
        1,
        "{}",
        listed.body
    );
    // Logout with a wrong token keeps the session; with the page's, ends it.
    let r = form_post(&server, "/ui/logout", &session, "csrf=forged");
    assert_eq!(r.status, 403, "{}", r.body);
    let still = server.raw("GET", "/ui/runs", None, &[("Cookie", &session)], None);
    assert_eq!(still.status, 200);
    let r = form_post(&server, "/ui/logout", &session, &format!("csrf={csrf}"));
    assert_eq!(r.status, 303);
    let gone = server.raw("GET", "/ui/runs", None, &[("Cookie", &session)], None);
    assert_eq!(gone.status, 303);
    assert!(
        gone.headers.contains("location: /ui/login"),
        "{}",
        gone.headers
    );
    let api = server.raw("GET", "/api/v1/runs", None, &[("Cookie", &session)], None);
    assert_eq!(api.status, 401, "{}", api.body);

    // A revoked token ends its sessions at once: carol's token is taken out
    // of the file and the server told (SIGHUP).
    let carol = http_login(&server, server.token("carol"));
    let alice2 = http_login(&server, &alice);
    for s in [&carol, &alice2] {
        let r = server.raw("GET", "/ui/runs", None, &[("Cookie", s)], None);
        assert_eq!(r.status, 200);
    }
    let kept = std::fs::read_to_string(&tokens_file).unwrap();
    let json: String = kept.lines().filter(|l| !l.starts_with('#')).collect();
    let mut file: Value = serde_json::from_str(&json).unwrap();
    let entries = file["tokens"].as_array_mut().unwrap();
    entries.retain(|e| e["principal"] != "carol");
    assert_eq!(entries.len(), 1, "{kept}");
    std::fs::write(&tokens_file, file.to_string()).unwrap();
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = server.raw("GET", "/ui/runs", None, &[("Cookie", &carol)], None);
        if r.status == 303 {
            assert!(r.headers.contains("location: /ui/login"), "{}", r.headers);
            break;
        }
        assert_eq!(r.status, 200);
        assert!(
            Instant::now() < deadline,
            "carol's session outlived her token"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let r = server.raw("GET", "/ui/runs", None, &[("Cookie", &alice2)], None);
    assert_eq!(r.status, 200, "alice's token was kept, and her session");
}
