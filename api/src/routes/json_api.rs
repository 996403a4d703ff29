//! The JSON API for programs: start or join a build, its status, its events (resumable with
//! `Last-Event-ID`), the images built.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::mpsc;

use super::api_error;
use crate::admission::{Caller, admit};
use crate::spec;
use crate::sse;
use crate::state::AppState;
use crate::store::EVENT_PAGE;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/builds", post(start_build))
        .route("/api/builds/{id}", get(build_status))
        .route("/api/builds/{id}/events", get(build_events))
        .route("/api/images", get(images))
}

#[derive(serde::Deserialize)]
struct StartBuild {
    provider: String,
    spec: String,
}

/// `POST /api/builds {"provider": "gh", "spec": "org/repo/ref"}`: start (or join) a build.
async fn start_build(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<StartBuild>,
) -> Response {
    // Programs build without launching: the build token applies as for build_only.
    if let Err(response) = admit(
        &state.config,
        &state.limiter,
        &caller,
        &request.provider,
        &request.spec,
        true,
    ) {
        return *response;
    }
    let spec = match spec::parse(&request.provider, &request.spec) {
        Ok(spec) => spec,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Err(e) = spec::check_host(&spec.repo_url, &state.config.allowed_hosts).await {
        return api_error(StatusCode::FORBIDDEN, e.to_string());
    }
    let shared = match state.builds.build(&spec).await {
        Ok(shared) => shared,
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let id = shared.id;
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "running", "events": format!("/api/builds/{id}/events")})),
    )
        .into_response()
}

/// `GET /api/builds/<id>`: a build's status.
async fn build_status(State(state): State<Arc<AppState>>, Path(id): Path<i64>) -> Response {
    match state.builds.store().get(id).await {
        Ok(Some(record)) => Json(record).into_response(),
        Ok(None) => api_error(StatusCode::NOT_FOUND, format!("no build {id}")),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/images`: the images built, newest first.
async fn images(State(state): State<Arc<AppState>>) -> Response {
    match state.builds.store().images().await {
        Ok(images) => Json(json!({"images": images})).into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `GET /api/builds/<id>/events`: the build's events as server-sent events with ids; a client that
/// reconnects with `Last-Event-ID` gets only what follows. Finished builds replay from the
/// database, a page at a time.
async fn build_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    match state.builds.store().get(id).await {
        Ok(Some(_)) => {}
        Ok(None) => return api_error(StatusCode::NOT_FOUND, format!("no build {id}")),
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1))
        // Sequence numbers are SQLite integers: anything beyond them is past the end.
        .min(i64::MAX as usize);
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let mut next = from;
        if let Some(shared) = state.builds.live(id) {
            while let Some(events) = shared.next(next).await {
                for event in events {
                    if tx.send(sse::numbered(next, &event)).await.is_err() {
                        return;
                    }
                    next = next.saturating_add(1);
                }
            }
        }
        // Whatever the database has beyond that (all of it for a finished build).
        loop {
            let page = match state.builds.store().events(id, next, EVENT_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(build = id, "cannot replay a build's events: {e}");
                    return;
                }
            };
            let last_page = page.len() < EVENT_PAGE;
            for event in page {
                if tx.send(sse::numbered(next, &event)).await.is_err() {
                    return;
                }
                next = next.saturating_add(1);
            }
            if last_page {
                return;
            }
        }
    });
    sse::stream(rx)
}
