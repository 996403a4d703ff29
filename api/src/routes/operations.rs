//! For operators and monitoring: `/health`, `/versions`, `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/health", get(health))
        .route("/versions", get(versions))
        .route("/metrics", get(metrics))
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let engine_ok = state.engine.ping().await;
    let mut checks =
        vec![json!({"service": "engine", "ok": engine_ok, "version": state.engine.version()})];
    let mut ok = engine_ok;
    if let Some(push) = state.builds.push() {
        // A lookup of an image that need not exist: any answer but an error means reachable.
        let probe = format!("{}kiln-health:probe", push.prefix);
        let registry_ok = push.registry.manifest_digest(&probe).await.is_ok();
        ok &= registry_ok;
        checks.push(json!({"service": "registry", "ok": registry_ok, "prefix": push.prefix}));
    }
    if let Some(hub) = state.launchers.hub_check().await {
        ok &= hub["ok"] == true;
        checks.push(hub);
    }
    let sessions = state.launchers.sessions().await.map(|s| s.len()).ok();
    Json(json!({
        "ok": ok,
        "checks": checks,
        "builds_started": state.builds.started(),
        "sessions": sessions,
    }))
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn versions(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"kiln": env!("CARGO_PKG_VERSION"), "engine": state.engine.version()}))
}
