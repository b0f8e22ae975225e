//! Logging in with an API token, and out.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::session::{self, COOKIE, LOGIN_COOKIE};
use super::{layout, respond};
use crate::server::App;
use crate::server::auth::sha256;

#[derive(Deserialize)]
pub struct Next {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after logging in: a path of the UI, never another site.
fn destination(next: Option<&str>) -> String {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => {
            n.to_owned()
        }
        _ => "/ui/runs".to_owned(),
    }
}

fn login_page(app: &App, next: &str, problem: Option<&str>, status: StatusCode) -> Response {
    let Ok(nonce) = session::random() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no random source").into_response();
    };
    let body = html! {
        h1 { "Log in" }
        @if let Some(p) = problem { p.problem role="alert" { (p) } }
        form.login method="post" action="/ui/login" {
            label for="token" { "API token" }
            input #token type="password" name="token" autocomplete="off" required autofocus;
            input type="hidden" name="csrf" value=(nonce);
            input type="hidden" name="next" value=(next);
            button type="submit" { "Log in" }
        }
        p.hint {
            "Your token comes from whoever runs this server ("
            code { "runner token add --principal NAME --role ROLE" }
            "). It is sent once; the browser keeps a session cookie instead."
        }
    };
    let mut response = respond(status, layout("Log in", None, body));
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, &nonce, app.secure, Some(600)),
    );
    response
}

/// `GET /ui/login`.
pub async fn form(State(app): State<Arc<App>>, Query(q): Query<Next>) -> Response {
    login_page(&app, &destination(q.next.as_deref()), None, StatusCode::OK)
}

#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: a valid token opens a session.
pub async fn login(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let next = destination(f.next.as_deref());
    let bound = session::cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if !session::same(&f.csrf, bound) {
        return login_page(
            &app,
            &next,
            Some("This login form has expired or came from another page: log in again here."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = f.token.trim();
    let known = app
        .tokens
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .caller(token)
        .is_some();
    if !known {
        return login_page(
            &app,
            &next,
            Some("That token is not valid (unknown or revoked)."),
            StatusCode::UNAUTHORIZED,
        );
    }
    let id = match app.sessions.open(sha256(token.as_bytes())) {
        Ok(id) => id,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    };
    let mut response = Redirect::to(&next).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, &id, app.secure, None),
    );
    h.append(
        header::SET_COOKIE,
        session::set_cookie(LOGIN_COOKIE, "", app.secure, Some(0)),
    );
    response
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /ui/logout`.
pub async fn logout(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Form(f): Form<LogoutForm>,
) -> Response {
    if let Some(id) = session::cookie(&headers, COOKIE) {
        if let Some(viewer) = app.sessions.viewer(&app, id)
            && super::check_csrf(&viewer, &f.csrf).is_err()
        {
            return super::error_page(
                Some(&viewer),
                &crate::server::ApiError::forbidden(
                    "the logout form's CSRF token is wrong: use the page's own button",
                ),
            );
        }
        app.sessions.close(id);
    }
    let mut response = Redirect::to("/ui/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        session::set_cookie(COOKIE, "", app.secure, Some(0)),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::destination;

    #[test]
    fn after_login_only_paths_of_the_ui_are_followed() {
        assert_eq!(destination(Some("/ui/runs/r-1")), "/ui/runs/r-1");
        assert_eq!(destination(Some("https://evil.example/")), "/ui/runs");
        assert_eq!(destination(Some("//evil.example/ui/")), "/ui/runs");
        assert_eq!(destination(Some("/ui/\\evil")), "/ui/runs");
        assert_eq!(destination(None), "/ui/runs");
    }
}
