//! `GET /api/v1/openapi.json`: the API described in OpenAPI 3.1.
//!
//! Written by hand next to the routes (`openapi.json` in this folder) rather
//! than generated: it says what each route means, not only its types. A test
//! checks that it validates against the OpenAPI 3.1 schema and lists exactly
//! the routes of [`super::ROUTES`], which the router is built from.

use axum::http::header;
use axum::response::IntoResponse;

pub const DOCUMENT: &str = include_str!("openapi.json");

pub async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}
