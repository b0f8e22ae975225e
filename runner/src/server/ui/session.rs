//! Web sessions: a browser logs in once with an API token and then carries a
//! cookie instead of the token.
//!
//! Why the session keeps the token's hash and nothing else of it: the token
//! file stays the one list of who may do what. Every request looks the hash
//! up again, so a token deleted from the file (and SIGHUP) ends its sessions
//! at their next request, and a changed role takes effect at once.
//!
//! The cookie (`runner_session`) is a random 256-bit id, `HttpOnly` (no
//! script reads it), `SameSite=Strict` (no other site's page sends it),
//! `Secure` when the server speaks TLS or its public URL is `https`; the
//! server keeps only the id's SHA-256. Sessions live in the server's memory:
//! a restart logs everybody out. A session ends 12 hours after login, or
//! after 2 hours without a request.
//!
//! Cross-site request forgery: every form carries the session's CSRF token
//! (a second random value, compared through its digest), and a script that
//! calls the API with the cookie instead of a bearer token must send it as
//! `X-CSRF-Token` on anything but GET. The login form, before any session,
//! is bound to a short-lived `runner_login` cookie the same way.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine;

use crate::identity::Source;
use crate::server::App;
use crate::server::auth::{Caller, sha256};

pub const COOKIE: &str = "runner_session";
pub const LOGIN_COOKIE: &str = "runner_login";
/// The header a script sends its session's CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

const LIFETIME: Duration = Duration::from_secs(12 * 3600);
const IDLE: Duration = Duration::from_secs(2 * 3600);
/// More sessions than this and the oldest are ended first.
const MOST: usize = 10_000;

struct Session {
    token_hash: [u8; 32],
    csrf: String,
    created: Instant,
    last: Instant,
}

/// The open sessions, by the SHA-256 of their id.
#[derive(Default)]
pub struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
}

/// Who a session is, and the CSRF token its forms carry.
pub struct Viewer {
    pub caller: Caller,
    pub csrf: String,
}

impl Sessions {
    /// Opens a session for the holder of `token_hash`; returns its id (the
    /// cookie's value).
    pub fn open(&self, token_hash: [u8; 32]) -> Result<String, String> {
        let id = random()?;
        let csrf = random()?;
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| alive(s, now));
        if open.len() >= MOST
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(
            sha256(id.as_bytes()),
            Session {
                token_hash,
                csrf,
                created: now,
                last: now,
            },
        );
        Ok(id)
    }

    /// The viewer of session `id`, if it is open and its token still valid.
    pub fn viewer(&self, app: &App, id: &str) -> Option<Viewer> {
        let key = sha256(id.as_bytes());
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let session = open.get_mut(&key)?;
        let caller = app
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .by_hash(&session.token_hash, Source::Web);
        match caller {
            Some(caller) if alive(session, now) => {
                session.last = now;
                Some(Viewer {
                    caller,
                    csrf: session.csrf.clone(),
                })
            }
            _ => {
                open.remove(&key);
                None
            }
        }
    }

    /// Ends session `id`.
    pub fn close(&self, id: &str) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sha256(id.as_bytes()));
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.created) < LIFETIME && now.duration_since(s.last) < IDLE
}

/// 256 random bits, URL-safe base64.
pub fn random() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| "the system's random source failed".to_owned())?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Whether `given` is `expected`. Their digests are compared, so the time
/// taken tells nothing of where a guess first differs from the token.
pub fn same(given: &str, expected: &str) -> bool {
    !expected.is_empty() && sha256(given.as_bytes()) == sha256(expected.as_bytes())
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure when
/// `secure`; `max_age` 0 deletes it, `None` makes it last the browser session.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    // Names and values are ours (base64url), so the header is always valid.
    HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; runner_session=xyz"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("runner_login=abc"));
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "runner"), None);
    }

    #[test]
    fn an_empty_expected_token_matches_nothing() {
        assert!(same("abc", "abc"));
        assert!(!same("abd", "abc"));
        assert!(!same("", ""));
        assert!(!same("ab", "abc"));
    }

    #[test]
    fn the_cookie_is_http_only_and_strict_and_secure_over_tls() {
        let c = set_cookie(COOKIE, "v", true, None);
        let c = c.to_str().unwrap();
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        let plain = set_cookie(COOKIE, "v", false, Some(0));
        assert!(!plain.to_str().unwrap().contains("Secure"));
        assert!(plain.to_str().unwrap().contains("Max-Age=0"));
    }
}
