//! The routes, grouped by who calls them:
//! - [`binderhub`]: BinderHub's API, `GET /build/<provider>/<spec>` (badges, BinderHub's client,
//!   jupyterhub-fancy-profiles);
//! - [`json_api`]: `/api/...` for programs;
//! - [`pages`]: the web page, the `/v2/` launch page, assets;
//! - [`operations`]: `/health`, `/versions`, `/metrics` for operators and monitoring.

mod binderhub;
mod json_api;
mod operations;
mod pages;

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::state::AppState;

/// Every route of the service.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .merge(binderhub::routes())
        .merge(json_api::routes())
        .merge(pages::routes())
        .merge(operations::routes())
        .with_state(state)
}

/// A JSON error answer: `{"error": message}`.
pub fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}
