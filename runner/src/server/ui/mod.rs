//! The web UI: pages for the team's one screen during an incident, served by
//! `runner serve` under `/ui`.
//!
//! Why server-rendered HTML: every page reads what the API reads (the journal
//! through the service, the approvals store) and is complete without
//! JavaScript, so a page is also what a reader without scripts, a screen
//! reader or a pasted link gets. The one script (`ui.js`, embedded in the
//! binary like the style sheet) adds what HTML cannot: a run page follows the
//! run's Server-Sent Events (`/api/v1/runs/{id}/stream`, with the session
//! cookie) and swaps in the re-rendered live part of the page; times are
//! shown in the viewer's time zone.
//!
//! Text from plugins and playbooks is hostile input: maud escapes every
//! interpolated value, [`inert`] turns control characters and direction
//! overrides into visible marks, and every page is served with a
//! Content-Security-Policy that allows only this server's own script and
//! style sheet (no inline script or style, no other origin), so markup that
//! slipped through could still not run. Secret values never reach a page:
//! the journal holds none (the engine redacts them before it writes).
//!
//! Who may do what is the API's rule, not the page's: buttons are shown to
//! those who may use them, and the actions behind them go through the same
//! checks as the API ([`super::approvals::decide_as`], [`super::runs`]).

mod actions;
mod approvals;
mod chart;
mod html;
mod login;
mod run;
mod runs;
pub mod session;
mod stats;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};

use super::{ApiError, App};
pub use session::Viewer;

const CSS: &str = include_str!("ui.css");
const JS: &str = include_str!("ui.js");

/// The pages and the forms they post to.
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui", get(|| async { Redirect::to("/ui/runs") }))
        .route("/ui/login", get(login::form).post(login::login))
        .route("/ui/logout", axum::routing::post(login::logout))
        .route("/ui/runs", get(runs::list))
        .route("/ui/runs/{id}", get(run::page))
        .route("/ui/runs/{id}/live", get(run::live))
        .route("/ui/runs/{id}/artifacts/{index}", get(run::artifact))
        .route("/ui/runs/{id}/cancel", axum::routing::post(actions::cancel))
        .route("/ui/runs/{id}/rerun", axum::routing::post(actions::rerun))
        .route(
            "/ui/runs/{id}/approvals/{step}",
            get(approvals::one).post(actions::decide),
        )
        .route("/ui/approvals", get(approvals::mine))
        .route("/ui/start", get(actions::start_form).post(actions::start))
        .route("/ui/stats", get(stats::page))
        .route("/ui/static/ui.css", get(css))
        .route("/ui/static/ui.js", get(js))
}

/// The UI's paths, for the tests that check every one of them.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/ui/login"),
    ("post", "/ui/login"),
    ("post", "/ui/logout"),
    ("get", "/ui/runs"),
    ("get", "/ui/runs/{id}"),
    ("get", "/ui/runs/{id}/live"),
    ("get", "/ui/runs/{id}/artifacts/{index}"),
    ("post", "/ui/runs/{id}/cancel"),
    ("post", "/ui/runs/{id}/rerun"),
    ("get", "/ui/runs/{id}/approvals/{step}"),
    ("post", "/ui/runs/{id}/approvals/{step}"),
    ("get", "/ui/approvals"),
    ("get", "/ui/start"),
    ("post", "/ui/start"),
    ("get", "/ui/stats"),
];

async fn css() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

async fn js() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// A page for a viewer: its HTML with the headers every page carries.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A whole page: the navigation, then `body`.
pub fn layout(title: &str, viewer: Option<&Viewer>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (html::inert(title)) " · runner" }
                link rel="stylesheet" href="/ui/static/ui.css";
                script src="/ui/static/ui.js" defer {}
            }
            body {
                header.top {
                    nav aria-label="main" {
                        a.brand href="/ui/runs" { "runner" }
                        @if viewer.is_some() {
                            a href="/ui/runs" { "Runs" }
                            a href="/ui/approvals" { "Approvals" }
                            a href="/ui/stats" { "History & stats" }
                            a href="/ui/start" { "Start a run" }
                        }
                    }
                    @if let Some(v) = viewer {
                        form.who method="post" action="/ui/logout" {
                            span { (v.caller.name) @if !v.caller.roles.is_empty() { " (" (v.caller.roles.join(", ")) ")" } }
                            input type="hidden" name="csrf" value=(v.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// An error as a page, with the API's status and message.
pub fn error_page(viewer: Option<&Viewer>, e: &ApiError) -> Response {
    let body = html! {
        h1 { "Not done" }
        p.problem role="alert" { (e.message) }
        @for p in &e.problems {
            p.problem { (p.file) ":" (p.line) ":" (p.column) ": " (html::inert(&p.message)) }
        }
        p { a href="/ui/runs" { "Back to the runs" } }
    };
    respond(e.status, layout("Not done", viewer, body))
}

/// The viewer of a page: the session's, or a way to log in.
pub struct Page(pub Viewer);

impl FromRequestParts<Arc<App>> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Response> {
        if let Some(viewer) = session::cookie(&parts.headers, session::COOKIE)
            .and_then(|id| app.sessions.viewer(app, id))
        {
            return Ok(Page(viewer));
        }
        let here = parts
            .uri
            .path_and_query()
            .map_or("/ui/runs", |p| p.as_str())
            .to_owned();
        // A link followed from another site (the incident channel) comes
        // without the Strict cookie: load the same address again from here,
        // which sends it, before asking anyone to log in.
        let cross = parts
            .headers
            .get("sec-fetch-site")
            .is_some_and(|v| v == "cross-site");
        if cross && parts.method == axum::http::Method::GET {
            return Err(respond(
                StatusCode::OK,
                html! {
                    (DOCTYPE)
                    html lang="en" {
                        head {
                            meta charset="utf-8";
                            meta http-equiv="refresh" content="0";
                            title { "runner" }
                        }
                        body { p { a href=(here) { "Continue" } } }
                    }
                },
            ));
        }
        let next = url::form_urlencoded::byte_serialize(here.as_bytes()).collect::<String>();
        Err(Redirect::to(&format!("/ui/login?next={next}")).into_response())
    }
}

/// Checks a form's CSRF token against the session's.
pub fn check_csrf(viewer: &Viewer, given: &str) -> Result<(), ApiError> {
    if session::same(given, &viewer.csrf) {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "the form's CSRF token is missing or wrong (a form from another page or an old session): reload the page and try again",
        ))
    }
}
