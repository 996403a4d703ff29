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
use crate::admission::{Caller, admit, open_stream, spec_refused};
use crate::spec;
use crate::sse;
use crate::state::AppState;
use crate::store::EVENT_PAGE;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/builds", post(start_build))
        .route("/api/builds/{id}", get(build_status).delete(cancel_build))
        .route("/api/builds/{id}/events", get(build_events))
        .route("/api/images", get(images))
        .route("/api/images/{*path}", get(image_sbom))
        .route("/api/prewarm", post(prewarm))
        .route("/api/me", get(me))
        .route("/api/credentials", get(list_credentials))
        .route(
            "/api/credentials/{host}",
            axum::routing::put(put_credential).delete(delete_credential),
        )
}

/// The hub user calling, or the refusal for anyone else: credentials are a hub user's own.
fn credential_owner(caller: &Caller) -> Result<&str, Box<Response>> {
    caller.hub_user().map(|u| u.name.as_str()).ok_or_else(|| {
        Box::new(api_error(
            StatusCode::UNAUTHORIZED,
            "git credentials belong to a hub user: log in through the hub (or send a hub token) first",
        ))
    })
}

/// The hub user calling and the host a credential route names, or the refusal.
fn credential_target<'a>(
    caller: &'a Caller,
    host: &str,
) -> Result<(&'a str, crate::credentials::Host), Box<Response>> {
    let user = credential_owner(caller)?;
    let host = crate::credentials::Host::parse(host).map_err(|e| Box::new(credential_error(e)))?;
    Ok((user, host))
}

fn credential_error(e: crate::credentials::CredentialError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    api_error(status, e.to_string())
}

/// `GET /api/credentials`: the git hosts the caller keeps credentials for (hosts and usernames,
/// never the secrets).
async fn list_credentials(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    let user = match credential_owner(&caller) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match state.credentials.list(user).await {
        Ok(list) => Json(json!({"credentials": list})).into_response(),
        Err(e) => credential_error(e),
    }
}

#[derive(serde::Deserialize)]
struct PutCredential {
    username: String,
    token: String,
}

/// `PUT /api/credentials/<host> {"username", "token"}`: keep the caller's credential for a git
/// host (sealed; used only for their builds of repositories on that host).
async fn put_credential(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
    Json(request): Json<PutCredential>,
) -> Response {
    let (user, host) = match credential_target(&caller, &host) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    match state
        .credentials
        .put(user, &host, &request.username, &request.token)
        .await
    {
        Ok(()) => {
            tracing::info!(user, host = host.as_str(), "a git credential was stored");
            Json(json!({"host": host.as_str(), "username": request.username.trim()}))
                .into_response()
        }
        Err(e) => credential_error(e),
    }
}

/// `DELETE /api/credentials/<host>`: forget the caller's credential for a host.
async fn delete_credential(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
) -> Response {
    let (user, host) = match credential_target(&caller, &host) {
        Ok(target) => target,
        Err(response) => return *response,
    };
    match state.credentials.delete(user, &host).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => api_error(
            StatusCode::NOT_FOUND,
            format!("you keep no credential for {}", host.as_str()),
        ),
        Err(e) => credential_error(e),
    }
}

/// Whether `caller` may see `record`: a private build of a hub user only they and the operator.
fn may_see(caller: &Caller, record: &crate::store::BuildRecord) -> bool {
    match &record.owner {
        Some(owner) => caller.is_operator() || caller.hub_user().is_some_and(|u| &u.name == owner),
        None => true,
    }
}

/// `GET /api/me`: who kiln takes the caller for: `{"user", "groups", "csrf", "login"}` (`csrf` is
/// what state-changing calls with a login cookie send in `X-Kiln-CSRF`; `login` whether the
/// service has hub login).
async fn me(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    let (user, groups, csrf) = match &caller.identity {
        crate::auth::Identity::CookieUser { user, csrf } => {
            (Some(&user.name), user.groups.clone(), Some(csrf.clone()))
        }
        crate::auth::Identity::TokenUser(user) => (Some(&user.name), user.groups.clone(), None),
        _ => (None, Vec::new(), None),
    };
    let mut answer = Json(json!({
        "user": user,
        "groups": groups,
        "operator": caller.is_operator(),
        "csrf": csrf,
        "login": state.config.hub_auth,
        "anonymous_allowed": state.config.allow_anonymous,
    }))
    .into_response();
    answer.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    answer
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
    if let Err(response) = admit(&state, &caller, true) {
        return *response;
    }
    let mut spec = match spec::parse(&request.provider, &request.spec, &state.config.providers) {
        Ok(spec) => spec,
        Err(e) => return api_error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    if let Some(reason) = spec_refused(&state.config, &spec) {
        return api_error(StatusCode::FORBIDDEN, reason);
    }
    if let Err(e) = state.credentials.apply(&mut spec, caller.hub_user()).await {
        return credential_error(e);
    }
    if let Err(e) = spec.check_reachable(state.builds.policy()).await {
        return api_error(StatusCode::FORBIDDEN, e.to_string());
    }
    let shared = match state
        .builds
        .build(
            &spec,
            caller.client(),
            Some(caller.builds_limit(&state.config)),
        )
        .await
    {
        Ok(shared) => shared,
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return api_error(status, e.to_string());
        }
    };
    let id = &shared.id;
    (
        StatusCode::ACCEPTED,
        Json(json!({"id": id, "status": "running", "events": format!("{}api/builds/{id}/events", state.config.base_url)})),
    )
        .into_response()
}

/// `GET /api/builds/<id>`: a build's status (whoever holds its id may read it; a hub user's
/// private build only they and the operator).
async fn build_status(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    match state.builds.store().get(&id).await {
        Ok(Some(record)) if may_see(&caller, &record) => Json(record).into_response(),
        Ok(_) => api_error(StatusCode::NOT_FOUND, format!("no build {id}")),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// `DELETE /api/builds/<id>`: stop a build (the operator only).
async fn cancel_build(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if !caller.is_operator() {
        return api_error(
            StatusCode::FORBIDDEN,
            "cancelling a build needs the operator's build token",
        );
    }
    if state.builds.cancel(&id) {
        (
            StatusCode::ACCEPTED,
            Json(json!({"id": id, "status": "cancelling"})),
        )
            .into_response()
    } else {
        api_error(StatusCode::NOT_FOUND, format!("no build {id} is running"))
    }
}

/// `GET /api/images`: the images built, newest first; builds from requests with credentials only
/// for the operator and, a hub user's private builds, for that user.
async fn images(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    let operator = caller.is_operator();
    let owner = caller.hub_user().map(|u| u.name.as_str());
    match state.builds.store().images(operator, owner).await {
        Ok(images) => Json(json!({"images": images})).into_response(),
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

#[derive(serde::Deserialize)]
struct SbomQuery {
    format: Option<String>,
}

/// `GET /api/images/<name>/sbom[?format=cyclonedx|kiln|table]`: what an image the service built
/// holds, as CycloneDX 1.6 JSON (the default), kiln's record, or a table. Only images the caller
/// may list (`GET /api/images`): kiln reads no other image for a caller.
async fn image_sbom(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(path): Path<String>,
    axum::extract::Query(query): axum::extract::Query<SbomQuery>,
) -> Response {
    let Some(image) = path.strip_suffix("/sbom") else {
        return api_error(
            StatusCode::NOT_FOUND,
            "no such route: ask for /api/images/<name>/sbom",
        );
    };
    let format = query.format.as_deref().unwrap_or("cyclonedx");
    if !["cyclonedx", "kiln", "table"].contains(&format) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("format {format:?}: use cyclonedx, kiln or table"),
        );
    }
    let operator = caller.is_operator();
    let owner = caller.hub_user().map(|u| u.name.as_str());
    let built = match state.builds.store().images(operator, owner).await {
        Ok(images) => images.iter().any(|b| b.image.as_deref() == Some(image)),
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    if !built {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("kiln has built no image {image}"),
        );
    }
    let registry = state
        .builds
        .push()
        .filter(|p| image.starts_with(&format!("{}/", p.registry.host)))
        .map(|p| p.registry.as_ref());
    let found = match state.engine.contents(image, registry).await {
        Ok(found) => found,
        Err(e) => return api_error(StatusCode::NOT_FOUND, e.to_string()),
    };
    match format {
        "kiln" => Json(found.contents).into_response(),
        "table" => kiln_sbom::table(&found.contents).into_response(),
        _ => match kiln_sbom::to_cyclonedx(&found.contents) {
            Ok(bom) => (
                [(
                    axum::http::header::CONTENT_TYPE,
                    kiln_sbom::cyclonedx::MEDIA_TYPE,
                )],
                bom,
            )
                .into_response(),
            Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        },
    }
}

/// `GET /api/builds/<id>/events`: the build's events as server-sent events with ids; a client that
/// reconnects with `Last-Event-ID` gets only what follows. Finished builds replay from the
/// database, a page at a time.
async fn build_events(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let row = match state.builds.store().get(&id).await {
        Ok(Some(record)) if may_see(&caller, &record) => record.row,
        Ok(_) => return api_error(StatusCode::NOT_FOUND, format!("no build {id}")),
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let ticket = match open_stream(&state, &caller) {
        Ok(ticket) => ticket,
        Err(response) => return *response,
    };
    let from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map_or(0, |last| last.saturating_add(1))
        // Sequence numbers are SQLite integers: anything beyond them is past the end.
        .min(i64::MAX as usize);
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    tokio::spawn(async move {
        let _ticket = ticket;
        let mut next = from;
        if let Some(shared) = state.builds.live(&id) {
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
            let page = match state.builds.store().events(row, next, EVENT_PAGE).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::error!(build = %id, "cannot replay a build's events: {e}");
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

/// Most images one pre-warm may name.
const MAX_PREWARM: usize = 50;

#[derive(serde::Deserialize)]
struct Prewarm {
    images: Vec<String>,
}

/// `POST /api/prewarm` with `{"images": [...]}` (the operator's token only): pull each image onto
/// the engine that runs sessions, before a class starts, so that the first launches do not wait
/// for a pull. Answers each image's result; the registry credentials of kiln's own registry go only
/// with images of that registry.
async fn prewarm(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Json(request): Json<Prewarm>,
) -> Response {
    if !caller.is_operator() {
        return api_error(
            StatusCode::FORBIDDEN,
            "a pre-warm needs the operator's build token",
        );
    }
    if request.images.is_empty() || request.images.len() > MAX_PREWARM {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("name between 1 and {MAX_PREWARM} images"),
        );
    }
    if let Some((image, e)) = request.images.iter().find_map(|i| {
        kiln_registry::name::validate(i)
            .err()
            .map(|e| (i.clone(), e))
    }) {
        return api_error(
            StatusCode::BAD_REQUEST,
            format!("{image:?} is not an image name: {e}"),
        );
    }
    pull_images(&state, &request.images, state.builds.push()).await
}

/// Pull `images` onto the service's engine, one after the other, with the credentials of
/// `push`'s registry for that registry's images only: `{"ok", "images": [{image, ok, ...}]}`.
pub(super) async fn pull_images(
    state: &AppState,
    images: &[String],
    push: Option<&kiln_builder::PushSettings>,
) -> Response {
    let mut results = Vec::new();
    for image in images {
        let credentials = credentials_for(image, push);
        let started = std::time::Instant::now();
        let result = state.engine.pull(image, credentials).await;
        results.push(match result {
            Ok(()) => {
                json!({"image": image, "ok": true, "seconds": started.elapsed().as_secs_f64()})
            }
            Err(e) => json!({"image": image, "ok": false, "error": e.to_string()}),
        });
    }
    let ok = results.iter().all(|r| r["ok"] == true);
    Json(json!({"ok": ok, "images": results})).into_response()
}

/// The credentials of kiln's own registry, for an image of that registry only (a secret is bound
/// to the host it was given for).
fn credentials_for(
    image: &str,
    push: Option<&kiln_builder::PushSettings>,
) -> Option<kiln_builder::engine::DockerCredentials> {
    push.filter(|p| image.starts_with(&format!("{}/", p.registry.host)))
        .and_then(|p| p.docker_credentials())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prewarm_sends_the_registrys_credentials_to_that_registry_only() {
        let push = kiln_builder::PushSettings::new(
            "127.0.0.1:5999/kiln-",
            Some(kiln_registry::Credentials::Basic {
                username: "kiln".into(),
                password: "s3cret".into(),
            }),
            true,
        )
        .unwrap();
        let own = credentials_for("127.0.0.1:5999/kiln-a:1", Some(&push)).unwrap();
        assert_eq!(own.password.as_deref(), Some("s3cret"));
        for other in [
            "127.0.0.1:59999/kiln-a:1",
            "127.0.0.1:5999.evil.example/kiln-a:1",
            "evil.example/127.0.0.1:5999/kiln-a:1",
            "library/python:3",
        ] {
            assert!(credentials_for(other, Some(&push)).is_none(), "{other}");
        }
        assert!(credentials_for("127.0.0.1:5999/kiln-a:1", None).is_none());
    }
}
