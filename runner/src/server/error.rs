//! The server's one error type: a status and a message that says what is
//! wrong and what to do, as JSON (`{"error": …, "problems": […]}`).
//!
//! Every refusal is a 4xx with its reason; a 5xx means the server could not
//! do what was asked (the journal is unreachable), never that the request was
//! bad. Messages never hold a secret: they are built from names, ids and the
//! located problems of a playbook, which hold none.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::service::{PrepareError, RunError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Each problem at its place: `FILE:LINE:COL: message`.
    pub problems: Vec<Located>,
    /// Seconds to wait before trying again (429).
    pub retry_after: Option<u64>,
}

/// A problem at its place in a file.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            problems: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// The journal could not answer.
    pub fn journal(message: impl Into<String>) -> ApiError {
        ApiError::unavailable(format!("the journal cannot answer: {}", message.into()))
    }
}

impl From<PrepareError> for ApiError {
    fn from(e: PrepareError) -> ApiError {
        let mut error = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        match &e {
            PrepareError::Load(crate::playbook::LoadError::Invalid { file, problems }) => {
                error.message = format!("{} problem(s) in {}", problems.len(), file.name);
                error.problems = problems
                    .iter()
                    .map(|p| Located {
                        file: file.name.clone(),
                        line: p.pos.line,
                        column: p.pos.col,
                        message: p.message.clone(),
                    })
                    .collect();
            }
            PrepareError::Load(crate::playbook::LoadError::Read(_)) => {
                error.status = StatusCode::SERVICE_UNAVAILABLE;
            }
            PrepareError::Invalid { .. } | PrepareError::Environment(_) => {}
        }
        error
    }
}

impl From<RunError> for ApiError {
    fn from(e: RunError) -> ApiError {
        let e = match e {
            RunError::Prepare(p) => return p.into(),
            other => other,
        };
        let status = match &e {
            RunError::Prepare(_) => StatusCode::UNPROCESSABLE_ENTITY,
            RunError::NotFound { .. } => StatusCode::NOT_FOUND,
            RunError::StillRunning { .. } | RunError::GroupBusy(_) | RunError::Refused(_) => {
                StatusCode::CONFLICT
            }
            RunError::TakenOver { .. } => StatusCode::CONFLICT,
            RunError::NoStateDir
            | RunError::NoJournal
            | RunError::Journal(_)
            | RunError::Runtime(_)
            | RunError::Lock(_)
            | RunError::Start { .. } => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError::new(status, e.to_string())
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "<[Located]>::is_empty")]
    problems: &'a [Located],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Body {
            error: &self.message,
            problems: &self.problems,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"runner\""),
            );
        }
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}
