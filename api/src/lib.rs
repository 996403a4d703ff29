//! kiln's HTTP service, compatible with BinderHub: `GET /build/<provider>/<spec>` as server-sent
//! events with BinderHub's framing and phases, one shared build per repository and ref, launches on a
//! JupyterHub or on the service's own engine ([`launch`]), the pages, a JSON API with resumable event
//! streams, `/health`, `/versions` and `/metrics`. State is in SQLite ([`store`]).

pub mod config;
pub mod hub;
pub mod launch;
pub mod spec;
pub mod store;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kiln_builder::{Event, Phase};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub use config::Config;
pub use hub::Hub;

/// Shared state of the service.
pub struct AppState {
    pub hub: Arc<Hub>,
    pub launchers: launch::Launchers,
    limiter: RateLimiter,
}

/// Build requests per client address in fixed one-hour windows.
struct RateLimiter {
    windows:
        std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (std::time::Instant, u32)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3600);

impl RateLimiter {
    /// `Ok(remaining)` or `Err(seconds until the window resets)`.
    fn check(&self, client: std::net::IpAddr, limit: u32) -> Result<u32, u64> {
        if limit == 0 {
            return Ok(u32::MAX);
        }
        let mut windows = self.windows.lock().expect("rate lock");
        let now = std::time::Instant::now();
        let entry = windows.entry(client).or_insert((now, 0));
        if now.duration_since(entry.0) >= RATE_WINDOW {
            *entry = (now, 0);
        }
        let reset = RATE_WINDOW
            .saturating_sub(now.duration_since(entry.0))
            .as_secs();
        if entry.1 >= limit {
            return Err(reset);
        }
        entry.1 += 1;
        Ok(limit - entry.1)
    }
}

/// Rate limit, spec patterns and the build-only token: `Err` is the response to send instead.
fn admit(
    state: &AppState,
    client: std::net::IpAddr,
    provider: &str,
    spec: &str,
    build_only: bool,
    token: Option<&str>,
) -> Result<(), Box<Response>> {
    let config = &state.hub.config;
    if build_only
        && let Some(expected) = &config.build_token
        && token != Some(expected.as_str())
    {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "build_only needs a valid build token",
        )));
    }
    if let Err(reset) = state.limiter.check(client, config.rate_limit) {
        let mut response = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many build requests from {client}; try again in {} minutes",
                reset.div_ceil(60)
            ),
        );
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", config.rate_limit.into());
        headers.insert("x-ratelimit-remaining", 0.into());
        headers.insert("x-ratelimit-reset", reset.into());
        return Err(Box::new(response));
    }
    if let Some(reason) = config.spec_refused(provider, spec) {
        return Err(Box::new(api_error(StatusCode::FORBIDDEN, reason)));
    }
    Ok(())
}

pub fn router(hub: Arc<Hub>) -> Result<Router, String> {
    Ok(app(hub)?.0)
}

/// Stop every local session the service started (on shutdown). Sessions on a hub stay: the hub owns them.
pub async fn stop_sessions(state: &AppState) {
    state.launchers.local.stop_all().await;
}

/// The router and its state (to stop the sessions on shutdown). An invalid hub setting is an error.
pub fn app(hub: Arc<Hub>) -> Result<(Router, Arc<AppState>), String> {
    let launchers = launch::Launchers::new(&hub.config, hub.store.clone())?;
    let state = Arc::new(AppState {
        hub,
        launchers,
        limiter: RateLimiter {
            windows: Default::default(),
        },
    });
    if tokio::runtime::Handle::try_current().is_ok() {
        state.launchers.spawn_background(&state.hub.config);
    }
    let router = Router::new()
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
        .with_state(state.clone());
    Ok((router, state))
}

#[derive(serde::Deserialize, Default)]
struct BuildQuery {
    build_only: Option<String>,
    build_token: Option<String>,
}

/// The token of a request: `?build_token=` or `Authorization: Bearer`.
fn request_token<'a>(query: &'a BuildQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    query.build_token.as_deref().or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

async fn build(
    State(state): State<Arc<AppState>>,
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
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
    if let Err(response) = admit(
        &state,
        client.ip(),
        &provider,
        &raw_spec,
        build_only,
        request_token(&query, &headers),
    ) {
        return *response;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    // A token that is not the build token is the caller's hub token (a launch as that hub user).
    let caller_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            matches!(scheme.to_ascii_lowercase().as_str(), "token" | "bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|t| Some(t.as_str()) != state.hub.config.build_token.as_deref());
    let (tx, rx) = mpsc::channel::<Value>(256);
    tokio::spawn(async move {
        let _ = stream_build(
            state,
            provider,
            raw_spec,
            build_only,
            host,
            caller_token,
            tx,
        )
        .await;
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

pub(crate) fn failed(message: impl Into<String>) -> Value {
    json!({"phase": "failed", "message": format!("{}\n", message.into())})
}

/// Produce one request's events; an `Err` means the client went away.
async fn stream_build(
    state: Arc<AppState>,
    provider: String,
    raw_spec: String,
    build_only: bool,
    host: String,
    caller_token: Option<String>,
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
    let request = launch::LaunchRequest {
        spec: &spec,
        image: &image,
        host: &host,
        caller_token: caller_token.as_deref(),
    };
    launch::launch(&state, request, &tx).await
}

async fn health(State(state): State<Arc<AppState>>) -> Json<Value> {
    let engine_ok = state.hub.engine.docker.ping().await.is_ok();
    let mut checks =
        vec![json!({"service": "engine", "ok": engine_ok, "version": state.hub.engine.version})];
    let mut ok = engine_ok;
    if let Some(push) = &state.hub.push {
        // A lookup of an image that need not exist: any answer but an error means reachable.
        let probe = format!("{}kiln-health:probe", push.prefix);
        let registry_ok = push.registry.manifest_digest(&probe).await.is_ok();
        ok &= registry_ok;
        checks.push(json!({"service": "registry", "ok": registry_ok, "prefix": push.prefix}));
    }
    if let Some(hub) = state.launchers.hub_check(&state.hub.config).await {
        ok &= hub["ok"] == true;
        checks.push(hub);
    }
    let sessions = state.launchers.sessions().await.map(|s| s.len()).ok();
    Json(json!({
        "ok": ok,
        "checks": checks,
        "builds_started": state.hub.started.load(Ordering::SeqCst),
        "sessions": sessions,
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
    axum::extract::ConnectInfo(client): axum::extract::ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Json(request): Json<StartBuild>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Programs build without launching: the build token applies as for build_only.
    if let Err(response) = admit(
        &state,
        client.ip(),
        &request.provider,
        &request.spec,
        true,
        token,
    ) {
        return *response;
    }
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
