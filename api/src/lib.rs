//! kiln's HTTP service (first part of the BinderHub-compatible API): `GET /build/<provider>/<spec>`
//! as server-sent events with BinderHub's framing and phases, one shared build per repository and
//! ref, local launches on the service's own engine, `/health` and `/versions`.

pub mod config;
pub mod hub;
pub mod spec;
pub mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_builder::run::{RunRequest, Session, wait_until_ready};
use kiln_builder::{Event, Phase};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use config::Config;
pub use hub::Hub;

/// Shared state of the service.
pub struct AppState {
    pub hub: Arc<Hub>,
    sessions: AtomicUsize,
}

pub fn router(hub: Arc<Hub>) -> Router {
    let state = Arc::new(AppState {
        hub,
        sessions: AtomicUsize::new(0),
    });
    Router::new()
        .route("/build/{provider}/{*spec}", get(build))
        .route("/api/builds", axum::routing::post(api_start_build))
        .route("/api/builds/{id}", get(api_build))
        .route("/api/builds/{id}/events", get(api_build_events))
        .route("/api/images", get(api_images))
        .route("/health", get(health))
        .route("/versions", get(versions))
        .route("/metrics", get(metrics))
        .route(
            "/",
            get(|| page("text/html; charset=utf-8", include_str!("pages/index.html"))),
        )
        .route(
            "/v2/{*spec}",
            get(|| {
                page(
                    "text/html; charset=utf-8",
                    include_str!("pages/launch.html"),
                )
            }),
        )
        .route(
            "/static/kiln.js",
            get(|| {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("pages/kiln.js"),
                )
            }),
        )
        .route(
            "/static/kiln.css",
            get(|| page("text/css; charset=utf-8", include_str!("pages/kiln.css"))),
        )
        .route(
            "/badge_logo.svg",
            get(|| page("image/svg+xml", include_str!("pages/badge_logo.svg"))),
        )
        .with_state(state)
}

#[derive(serde::Deserialize, Default)]
struct BuildQuery {
    build_only: Option<String>,
}

async fn build(
    State(state): State<Arc<AppState>>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<BuildQuery>,
    headers: HeaderMap,
) -> Response {
    let accepts_events = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !accepts_events {
        return (
            StatusCode::BAD_REQUEST,
            "/build streams server-sent events: send Accept: text/event-stream\n",
        )
            .into_response();
    }
    // The raw path, still percent-encoded: an escaped repository URL keeps its slashes.
    let rest = uri.path().strip_prefix("/build/").unwrap_or_default();
    let (provider, raw_spec) = rest
        .split_once('/')
        .map(|(p, s)| (p.to_string(), s.to_string()))
        .unwrap_or_default();
    let build_only = matches!(query.build_only.as_deref(), Some("true") | Some("1"));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let (tx, rx) = mpsc::channel::<Value>(256);
    tokio::spawn(async move {
        let _ = stream_build(state, provider, raw_spec, build_only, host, tx).await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|value| {
            (
                Ok::<_, Infallible>(SseEvent::default().data(value.to_string())),
                rx,
            )
        })
    });
    let mut response = Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(25))
                .text("keepalive"),
        )
        .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        "no-cache".parse().expect("valid header"),
    );
    response
}

fn event_json(event: &Event) -> Value {
    serde_json::to_value(event).unwrap_or_else(|_| json!({"phase": "unknown"}))
}

fn failed(message: impl Into<String>) -> Value {
    json!({"phase": "failed", "message": format!("{}\n", message.into())})
}

/// Produce one request's events; an `Err` means the client went away.
async fn stream_build(
    state: Arc<AppState>,
    provider: String,
    raw_spec: String,
    build_only: bool,
    host: String,
    tx: mpsc::Sender<Value>,
) -> Result<(), ()> {
    let send = |value: Value| {
        let tx = tx.clone();
        async move { tx.send(value).await.map_err(|_| ()) }
    };
    let spec = match spec::parse(&provider, &raw_spec) {
        Ok(spec) => spec,
        Err(message) => return send(failed(message)).await,
    };
    if let Err(message) = spec::check_host(&spec.repo_url, &state.hub.config.allowed_hosts).await {
        return send(failed(message)).await;
    }
    let shared = state.hub.build(&spec);
    let mut from = 0;
    let mut image = None;
    while let Some(events) = shared.next(from).await {
        from += events.len();
        for event in events {
            if event.phase == Phase::Built {
                image = event.image_name.clone();
            }
            let failed = event.phase == Phase::Failed;
            send(event_json(&event)).await?;
            if failed {
                return Ok(());
            }
        }
    }
    let Some(image) = image.or_else(|| shared.image()) else {
        return send(failed("the build ended without an image")).await;
    };
    if build_only {
        return send(json!({"phase": "ready", "message": "Built; not launching (build_only)\n", "imageName": image})).await;
    }
    launch(&state, &spec, &image, &host, &tx).await
}

/// Start a session for this request on the service's engine and report it `ready`.
async fn launch(
    state: &AppState,
    spec: &spec::Spec,
    image: &str,
    host: &str,
    tx: &mpsc::Sender<Value>,
) -> Result<(), ()> {
    let send = |value: Value| async move { tx.send(value).await.map_err(|_| ()) };
    let running = state.sessions.fetch_add(1, Ordering::SeqCst);
    if running >= state.hub.config.max_sessions {
        state.sessions.fetch_sub(1, Ordering::SeqCst);
        return send(failed(format!(
            "too many sessions are running ({running}); try again later"
        )))
        .await;
    }
    send(json!({"phase": "launching", "message": format!("Launching {image}\n")})).await?;
    let started_at = std::time::Instant::now();
    let metrics = &state.hub.metrics;
    let record = |ok: bool| {
        metrics
            .launch_ms_sum
            .fetch_add(started_at.elapsed().as_millis() as u64, Ordering::SeqCst);
        if ok {
            &metrics.launches_succeeded
        } else {
            &metrics.launches_failed
        }
        .fetch_add(1, Ordering::SeqCst);
    };
    let request = match RunRequest::jupyter(image) {
        Ok(r) => r,
        Err(e) => return send(failed(e.to_string())).await,
    };
    let session = match Session::start(&state.hub.engine, &request).await {
        Ok(s) => s,
        Err(e) => {
            state.sessions.fetch_sub(1, Ordering::SeqCst);
            record(false);
            return send(failed(e.to_string())).await;
        }
    };
    if !wait_until_ready(&request, Duration::from_secs(120)).await {
        session.remove().await;
        state.sessions.fetch_sub(1, Ordering::SeqCst);
        record(false);
        return send(failed("the session did not answer within 120 s")).await;
    }
    record(true);
    let commit = image
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| t.len() == 40)
        .unwrap_or(&spec.reference);
    let persistent = match spec.raw.rsplit_once('/') {
        Some((repo, _)) if spec.provider != "gh" => format!("v2/{}/{repo}/{commit}", spec.provider),
        _ => {
            let parts: Vec<&str> = spec.raw.splitn(3, '/').collect();
            format!(
                "v2/{}/{}/{}/{commit}",
                spec.provider,
                parts.first().unwrap_or(&""),
                parts.get(1).unwrap_or(&"")
            )
        }
    };
    let ref_url = if spec.provider == "gh" {
        format!("{}/tree/{commit}", spec.repo_url)
    } else {
        spec.repo_url.clone()
    };
    send(json!({
        "phase": "ready",
        "message": format!("server running at {}\n", request.url()),
        "url": request.url(),
        "token": request.token,
        "image": image,
        "repo_url": spec.repo_url,
        "binder_ref_url": ref_url,
        "binder_launch_host": format!("http://{host}/"),
        "binder_request": format!("v2/{}/{}", spec.provider, spec.raw),
        "binder_persistent_request": persistent,
    }))
    .await
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let engine_ok = state.hub.engine.docker.ping().await.is_ok();
    Json(json!({
        "ok": engine_ok,
        "checks": [{"service": "engine", "ok": engine_ok, "version": state.hub.engine.version}],
        "builds_started": state.hub.started.load(Ordering::SeqCst),
        "sessions": state.sessions.load(Ordering::SeqCst),
    }))
}

#[derive(serde::Deserialize)]
struct StartBuild {
    provider: String,
    spec: String,
}

fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// `POST /api/builds {"provider": "gh", "spec": "org/repo/ref"}`: start (or join) a build.
async fn api_start_build(
    State(state): State<Arc<AppState>>,
    Json(request): Json<StartBuild>,
) -> Response {
    let spec = match spec::parse(&request.provider, &request.spec) {
        Ok(spec) => spec,
        Err(message) => return api_error(StatusCode::BAD_REQUEST, message),
    };
    if let Err(message) = spec::check_host(&spec.repo_url, &state.hub.config.allowed_hosts).await {
        return api_error(StatusCode::FORBIDDEN, message);
    }
    let shared = state.hub.build(&spec);
    let id = shared.id;
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "running", "events": format!("/api/builds/{id}/events")})),
    )
        .into_response()
}

/// `GET /api/builds/<id>`: a build's status.
async fn api_build(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
) -> Response {
    match state.hub.store.get(id) {
        Some(record) => Json(record).into_response(),
        None => api_error(StatusCode::NOT_FOUND, format!("no build {id}")),
    }
}

/// `GET /api/images`: the images built, newest first.
async fn api_images(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"images": state.hub.store.images()}))
}

/// `GET /api/builds/<id>/events`: the build's events as server-sent events with ids; a client that
/// reconnects with `Last-Event-ID` gets only what follows. Finished builds replay from the database.
async fn api_build_events(
    State(state): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<i64>,
    headers: HeaderMap,
) -> Response {
    if state.hub.store.get(id).is_none() {
        return api_error(StatusCode::NOT_FOUND, format!("no build {id}"));
    }
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last + 1);
    let (tx, rx) = mpsc::channel::<(usize, Value)>(256);
    tokio::spawn(async move {
        let mut next = from;
        if let Some(shared) = state.hub.live(id) {
            while let Some(events) = shared.next(next).await {
                for event in events {
                    if tx.send((next, event_json(&event))).await.is_err() {
                        return;
                    }
                    next += 1;
                }
            }
        }
        // Whatever the database has beyond that (all of it for a finished build).
        for event in state.hub.store.events(id, next) {
            if tx.send((next, event)).await.is_err() {
                return;
            }
            next += 1;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|(seq, value)| {
            (
                Ok::<_, Infallible>(
                    SseEvent::default()
                        .id(seq.to_string())
                        .data(value.to_string()),
                ),
                rx,
            )
        })
    });
    Sse::new(stream)
        .keep_alive(
            KeepAlive::new()
                .interval(Duration::from_secs(25))
                .text("keepalive"),
        )
        .into_response()
}

/// A static page or asset.
async fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.hub.metrics.render(),
    )
        .into_response()
}

async fn versions(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"kiln": env!("CARGO_PKG_VERSION"), "engine": state.hub.engine.version}))
}
