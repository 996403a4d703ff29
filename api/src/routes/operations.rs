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

/// How long a health report is reused: a caller cannot make kiln ask the engine, the registry and
/// the hub more often than this (BinderHub caches its checks for 15 s too).
const HEALTH_CACHE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /health`: 200 with the checks when all pass, 503 when one fails.
async fn health(State(state): State<Arc<AppState>>) -> Response {
    let mut cached = state.health.lock().await;
    let report = match &*cached {
        Some((at, report)) if at.elapsed() < HEALTH_CACHE => report.clone(),
        _ => {
            let report = check_health(&state).await;
            *cached = Some((std::time::Instant::now(), report.clone()));
            report
        }
    };
    drop(cached);
    let mut report = report;
    // Counters are read fresh: they cost nothing.
    report["builds_started"] = json!(state.builds.started());
    let status = if report["ok"] == true {
        axum::http::StatusCode::OK
    } else {
        axum::http::StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn check_health(state: &AppState) -> Value {
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
    // Counting a hub's sessions lists all its users: only done when quotas need the count anyway.
    let sessions = match state.launchers.counts_sessions() {
        true => state.launchers.sessions().await.map(|s| s.len()).ok(),
        false => None,
    };
    json!({
        "ok": ok,
        "checks": checks,
        "sessions": sessions,
    })
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
