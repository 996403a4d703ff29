//! Communities and their catalogues:
//! - `GET /communities`: the communities (anyone);
//! - `GET /communities/<c>/profiles`: the spawn form's entries in KubeSpawner's `profile_list`
//!   format, images by digest (anyone: the hub's `jupyterhub_config.py` hook reads it at spawn
//!   time);
//! - `GET /api/communities/<c>/catalog`: each entry, its versions and its last check (build ids,
//!   which open the build logs, and smoke-test output only for the community's admins);
//! - `POST /api/communities/<c>/entries/<e>/check` (`?rebuild=true`, `?wait=true`) and
//!   `POST /api/communities/<c>/entries/<e>/versions/<n>/<promote|deprecate|retire|pin|unpin>`
//!   (JSON `{"reason": ...}` or `{"label": ...}`): for the community's admins (its admin token,
//!   a hub user or group it names) and the operator;
//! - `POST /api/communities/<c>/check` (`?rebuild=true`, `?wait=true`): every entry, a few at a
//!   time, for the same admins;
//! - `POST /api/communities/<c>/prewarm`: every offered image pulled onto the service's engine
//!   before a class, for the same admins;
//! - `POST /api/communities/<c>/retention` (`?apply=true` deletes; without it, a dry run): the
//!   images of versions nobody keeps, deleted from the registry, for the same admins;
//! - `GET /communities/<c>`: the catalogue page (each entry's versions, their packages, the diff
//!   between two versions, build logs and the last check), and for it, for anyone:
//!   `GET /api/communities/<c>/entries/<e>/versions/<n>/packages` (the version's contents record),
//!   `.../versions/<n>/log` (its build's events) and `.../diff?from=<n>&to=<m>`;
//! - `GET /api/communities` with the operator's token: also the files left out, and why.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kiln_catalog::Community;
use serde_json::{Value, json};

use super::api_error;
use crate::admission::{Caller, authorization_token};
use crate::auth::Identity;
use crate::catalog::runner::{self, CatalogError, Operation};
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/communities", get(list))
        .route("/communities/{community}/profiles", get(profiles))
        .route("/api/communities", get(list_for_operator))
        .route("/api/communities/{community}/catalog", get(catalog))
        .route(
            "/api/communities/{community}/entries/{entry}/check",
            post(check),
        )
        .route(
            "/api/communities/{community}/entries/{entry}/versions/{number}/{operation}",
            post(operate),
        )
        .route("/api/communities/{community}/retention", post(retention))
        .route("/api/communities/{community}/check", post(check_community))
        .route("/api/communities/{community}/prewarm", post(prewarm))
        .route("/communities/{community}", get(catalog_page))
        .route(
            "/api/communities/{community}/entries/{entry}/versions/{number}/packages",
            get(packages),
        )
        .route(
            "/api/communities/{community}/entries/{entry}/versions/{number}/log",
            get(log),
        )
        .route(
            "/api/communities/{community}/entries/{entry}/diff",
            get(diff),
        )
}

fn catalog_error(e: CatalogError) -> Response {
    let status = StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    api_error(status, e.to_string())
}

fn community_or_404(state: &AppState, id: &str) -> Result<Community, Box<Response>> {
    state.catalogs.community(id).ok_or_else(|| {
        Box::new(api_error(
            StatusCode::NOT_FOUND,
            format!("there is no community {id:?} (GET /communities lists them)"),
        ))
    })
}

fn summary(c: &Community) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "description": c.description,
        "entries": c.entries.len(),
    })
}

/// `GET /communities`.
async fn list(State(state): State<Arc<AppState>>) -> Response {
    let loaded = state.catalogs.current();
    let communities: Vec<Value> = loaded.communities.values().map(summary).collect();
    Json(json!({"communities": communities})).into_response()
}

/// `GET /api/communities`: the operator also sees the files left out.
async fn list_for_operator(State(state): State<Arc<AppState>>, caller: Caller) -> Response {
    if caller.identity != Identity::Operator {
        return api_error(
            StatusCode::FORBIDDEN,
            "the files of communities are the operator's: send the build token (GET /communities lists the communities)",
        );
    }
    let loaded = state.catalogs.current();
    let communities: Vec<Value> = loaded.communities.values().map(summary).collect();
    let errors: Vec<Value> = loaded
        .errors
        .iter()
        .map(|e| json!({"file": e.file, "line": e.line, "column": e.column, "message": e.message, "text": e.to_string()}))
        .collect();
    Json(json!({"communities": communities, "errors": errors})).into_response()
}

/// Each entry's versions and pins.
#[allow(clippy::type_complexity)]
async fn versions_and_pins(
    state: &AppState,
    community: &Community,
) -> Result<
    (
        BTreeMap<String, Vec<kiln_catalog::Version>>,
        BTreeMap<String, BTreeMap<u32, String>>,
    ),
    CatalogError,
> {
    let c = community.id.clone();
    state.catalogs.with_store(move |s| s.community(&c)).await
}

/// `GET /communities/<c>/profiles`.
async fn profiles(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match state.catalogs.profiles(&id).await {
        Ok(Some(body)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Ok(None) => api_error(
            StatusCode::NOT_FOUND,
            format!("there is no community {id:?} (GET /communities lists them)"),
        ),
        Err(e) => catalog_error(e),
    }
}

/// Who may administer a community: its admin token, a hub user or group it names, or the
/// operator. The admin token is compared before the token goes to the hub as a hub token.
async fn is_admin(
    state: &Arc<AppState>,
    community: &Community,
    request: Request,
) -> Result<(bool, Request), Response> {
    if authorization_token(request.headers()).is_some_and(|t| community.admins.token_matches(&t)) {
        return Ok((true, request));
    }
    let (mut parts, body) = request.into_parts();
    let caller = Caller::from_request_parts(&mut parts, state).await?;
    let admin = match &caller.identity {
        Identity::Operator => true,
        Identity::TokenUser(user) | Identity::CookieUser { user, .. } => {
            community.admins.admits_user(&user.name, &user.groups)
        }
        Identity::Anonymous => false,
    };
    Ok((admin, Request::from_parts(parts, body)))
}

/// The community a route names, when the caller administers it; the request goes on (its body
/// unread).
async fn administered(
    state: &Arc<AppState>,
    id: &str,
    request: Request,
) -> Result<(Community, Request), Response> {
    let community = community_or_404(state, id).map_err(|r| *r)?;
    match is_admin(state, &community, request).await? {
        (true, request) => Ok((community, request)),
        (false, _) => Err(not_admin(&community)),
    }
}

fn not_admin(community: &Community) -> Response {
    api_error(
        StatusCode::FORBIDDEN,
        format!(
            "only the admins of community {} may do this: send its admin token, or log in as a hub user its file names",
            community.id
        ),
    )
}

/// `GET /api/communities/<c>/catalog`.
async fn catalog(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let community = match community_or_404(&state, &id) {
        Ok(c) => c,
        Err(response) => return *response,
    };
    let admin = match is_admin(&state, &community, request).await {
        Ok((admin, _)) => admin,
        Err(response) => return response,
    };
    let (versions, pins) = match versions_and_pins(&state, &community).await {
        Ok(found) => found,
        Err(e) => return catalog_error(e),
    };
    let mut entries = Vec::new();
    for entry in &community.entries {
        let (c, e) = (community.id.clone(), entry.slug.clone());
        let last_check = match state
            .catalogs
            .with_store(move |s| s.last_check(&c, &e))
            .await
        {
            Ok(check) => check,
            Err(e) => return catalog_error(e),
        };
        let entry_pins = pins.get(&entry.slug).cloned().unwrap_or_default();
        let shown: Vec<Value> = versions
            .get(&entry.slug)
            .into_iter()
            .flatten()
            .rev()
            .map(|v| {
                let mut shown = json!({
                    "number": v.number,
                    "state": v.state,
                    "reason": v.reason,
                    "commit": v.commit,
                    "image": kiln_catalog::profiles::image_reference(v),
                    "tag": v.image,
                    "contents_digest": v.contents_digest,
                    "sbom_digest": v.sbom_digest,
                    "started": v.started,
                    "finished": v.finished,
                    "built": v.built,
                    "deleted": v.deleted,
                    "pinned": entry_pins.get(&v.number).cloned().or_else(|| entry.pin_label(v.number).map(str::to_string)),
                });
                if admin {
                    shown["build_id"] = json!(v.build_id);
                    shown["smoke_output"] = json!(v.smoke_output);
                }
                shown
            })
            .collect();
        entries.push(json!({
            "slug": entry.slug,
            "name": entry.name,
            "description": entry.description,
            "source": kiln_builder::source::redact(&entry.source),
            "ref": entry.reference,
            "promotion": entry.promotion,
            "keep": entry.keep,
            "schedule": entry.rebuild.schedule,
            "last_check": last_check,
            "versions": shown,
        }));
    }
    let (c, key) = (community.id.clone(), kiln_catalog::community::RETENTION_KEY);
    let retention_run = match state
        .catalogs
        .with_store(move |s| s.last_check(&c, key))
        .await
    {
        Ok(run) => run,
        Err(e) => return catalog_error(e),
    };
    Json(json!({
        "community": summary(&community),
        "entries": entries,
        "retention": {"schedule": community.retention.schedule, "last_run": retention_run},
    }))
    .into_response()
}

#[derive(serde::Deserialize, Default)]
struct CheckQuery {
    #[serde(default)]
    rebuild: bool,
    #[serde(default)]
    wait: bool,
}

/// `POST /api/communities/<c>/entries/<e>/check`: 202 at once (the check goes on; the catalogue
/// shows how it ended), or with `?wait=true` 200 and the check's report when it is done.
async fn check(
    State(state): State<Arc<AppState>>,
    Path((id, slug)): Path<(String, String)>,
    Query(query): Query<CheckQuery>,
    request: Request,
) -> Response {
    let community = match administered(&state, &id, request).await {
        Ok((community, _)) => community,
        Err(response) => return response,
    };
    let Some(entry) = community.entry(&slug).cloned() else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("community {id} has no entry {slug:?}"),
        );
    };
    let task_state = state.clone();
    let task =
        tokio::spawn(
            async move { runner::check(&task_state, &community, &entry, query.rebuild).await },
        );
    if !query.wait {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"status": "started", "catalog": format!("api/communities/{id}/catalog")})),
        )
            .into_response();
    }
    match task.await {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e)) => catalog_error(e),
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the check stopped: {e}"),
        ),
    }
}

#[derive(serde::Deserialize, Default)]
struct OperationBody {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// The longest reason or label kept.
const MAX_TEXT: usize = 500;

/// `POST /api/communities/<c>/entries/<e>/versions/<n>/<operation>`.
async fn operate(
    State(state): State<Arc<AppState>>,
    Path((id, slug, number, operation)): Path<(String, String, u32, String)>,
    request: Request,
) -> Response {
    let (community, request) = match administered(&state, &id, request).await {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(entry) = community.entry(&slug).cloned() else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("community {id} has no entry {slug:?}"),
        );
    };
    let body = match axum::body::to_bytes(request.into_body(), 16 * 1024).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 16 KiB",
            );
        }
    };
    let body: OperationBody = if body.is_empty() {
        OperationBody::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(body) => body,
            Err(e) => {
                return api_error(
                    StatusCode::BAD_REQUEST,
                    format!("the body is not JSON like {{\"reason\": \"...\"}}: {e}"),
                );
            }
        }
    };
    let text = |value: Option<String>, what: &str| -> Result<String, Box<Response>> {
        let value = value.unwrap_or_default().trim().to_string();
        if value.is_empty() {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                format!("{operation} needs a {what}: {{\"{what}\": \"...\"}}"),
            )));
        }
        if value.chars().count() > MAX_TEXT {
            return Err(Box::new(api_error(
                StatusCode::BAD_REQUEST,
                format!("the {what} is longer than {MAX_TEXT} characters"),
            )));
        }
        Ok(value)
    };
    let op = match operation.as_str() {
        "promote" => Operation::Promote,
        "deprecate" => match text(body.reason, "reason") {
            Ok(reason) => Operation::Deprecate { reason },
            Err(r) => return *r,
        },
        "retire" => match text(body.reason, "reason") {
            Ok(reason) => Operation::Retire { reason },
            Err(r) => return *r,
        },
        "pin" => match text(body.label, "label") {
            Ok(label) => Operation::Pin { label },
            Err(r) => return *r,
        },
        "unpin" => Operation::Unpin,
        other => {
            return api_error(
                StatusCode::NOT_FOUND,
                format!("{other:?} is not an operation: promote, deprecate, retire, pin or unpin"),
            );
        }
    };
    match runner::operate(&state, &community, &entry, number, op).await {
        Ok(version) => Json(
            json!({"version": version.number, "state": version.state, "reason": version.reason}),
        )
        .into_response(),
        Err(e) => catalog_error(e),
    }
}

#[derive(serde::Deserialize, Default)]
struct RetentionQuery {
    #[serde(default)]
    apply: bool,
}

/// `POST /api/communities/<c>/retention`: a dry run's report, or with `?apply=true` the images
/// deleted (and the registry's refusal, if it refused: 502, nothing after it deleted).
async fn retention(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<RetentionQuery>,
    request: Request,
) -> Response {
    let community = match administered(&state, &id, request).await {
        Ok((community, _)) => community,
        Err(response) => return response,
    };
    match runner::retention(&state, &community, query.apply).await {
        Ok(report) if report.refused.is_some() => {
            let mut body = json!(report);
            body["error"] = json!(format!(
                "the registry refused a deletion; nothing after it was deleted: {}",
                report.refused.as_deref().unwrap_or_default()
            ));
            (StatusCode::BAD_GATEWAY, Json(body)).into_response()
        }
        Ok(report) => Json(report).into_response(),
        Err(e) => catalog_error(e),
    }
}

/// `GET /communities/<c>`: the catalogue page.
async fn catalog_page(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    if let Err(response) = community_or_404(&state, &id) {
        return *response;
    }
    let body = include_str!("../pages/catalog.html")
        .replace("{{base}}", &state.config.base_url)
        .replace("{{community}}", &id);
    (
        [
            (axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (axum::http::header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

/// A version of an entry of a community, or the answer that says which is missing.
async fn find_version(
    state: &AppState,
    id: &str,
    slug: &str,
    number: u32,
) -> Result<(Community, kiln_catalog::Version), Box<Response>> {
    let community = community_or_404(state, id)?;
    if community.entry(slug).is_none() {
        return Err(Box::new(api_error(
            StatusCode::NOT_FOUND,
            format!("community {id} has no entry {slug:?}"),
        )));
    }
    let version = runner::versions(state, id, slug)
        .await
        .map_err(|e| Box::new(catalog_error(e)))?
        .into_iter()
        .find(|v| v.number == number)
        .ok_or_else(|| {
            Box::new(api_error(
                StatusCode::NOT_FOUND,
                format!("entry {slug} has no version {number}"),
            ))
        })?;
    Ok((community, version))
}

/// What a version's image holds: its contents record, from the registry (or the engine).
async fn contents_of(
    state: &AppState,
    community: &Community,
    version: &kiln_catalog::Version,
) -> Result<kiln_sbom::Contents, Box<Response>> {
    if version.deleted.is_some() {
        return Err(Box::new(api_error(
            StatusCode::GONE,
            format!(
                "version {} was deleted from the registry by retention",
                version.number
            ),
        )));
    }
    if !matches!(
        version.state,
        kiln_catalog::State::Promoted
            | kiln_catalog::State::Deprecated
            | kiln_catalog::State::Candidate
            | kiln_catalog::State::Broken
            | kiln_catalog::State::Retired
    ) {
        return Err(Box::new(api_error(
            StatusCode::NOT_FOUND,
            format!(
                "version {} has no image ({})",
                version.number,
                version.state.as_str()
            ),
        )));
    }
    let push = runner::community_push(state, community).map_err(|e| Box::new(catalog_error(e)))?;
    let registry = push.as_ref().map(|p| p.registry.as_ref());
    state
        .engine
        .contents(&version.image, registry)
        .await
        .map(|found| found.contents)
        .map_err(|e| Box::new(api_error(StatusCode::NOT_FOUND, e.to_string())))
}

/// `GET .../versions/<n>/packages`.
async fn packages(
    State(state): State<Arc<AppState>>,
    Path((id, slug, number)): Path<(String, String, u32)>,
) -> Response {
    let (community, version) = match find_version(&state, &id, &slug, number).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match contents_of(&state, &community, &version).await {
        Ok(contents) => Json(contents).into_response(),
        Err(response) => *response,
    }
}

/// The most events of a build a log answer holds.
const MAX_LOG_EVENTS: usize = 20_000;

/// `GET .../versions/<n>/log`: the events of the version's build.
async fn log(
    State(state): State<Arc<AppState>>,
    Path((id, slug, number)): Path<(String, String, u32)>,
) -> Response {
    let (_, version) = match find_version(&state, &id, &slug, number).await {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let Some(build_id) = &version.build_id else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("version {number} has no build log"),
        );
    };
    let store = state.builds.store();
    let row = match store.get(build_id).await {
        Ok(Some(record)) => record.row,
        Ok(None) => {
            return api_error(
                StatusCode::NOT_FOUND,
                format!("version {number}'s build log is gone"),
            );
        }
        Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let mut events = Vec::new();
    while events.len() < MAX_LOG_EVENTS {
        match store
            .events(row, events.len(), crate::store::EVENT_PAGE)
            .await
        {
            Ok(page) if page.is_empty() => break,
            Ok(page) => events.extend(page),
            Err(e) => return api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        }
    }
    Json(json!({"version": number, "events": events})).into_response()
}

#[derive(serde::Deserialize)]
struct DiffQuery {
    from: u32,
    to: u32,
}

/// `GET .../diff?from=<n>&to=<m>`: what changed between two versions' images.
async fn diff(
    State(state): State<Arc<AppState>>,
    Path((id, slug)): Path<(String, String)>,
    query: Result<Query<DiffQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(query)) = query else {
        return api_error(
            StatusCode::BAD_REQUEST,
            "name the two versions: diff?from=<n>&to=<m>",
        );
    };
    let mut records = Vec::new();
    for number in [query.from, query.to] {
        let (community, version) = match find_version(&state, &id, &slug, number).await {
            Ok(found) => found,
            Err(response) => return *response,
        };
        match contents_of(&state, &community, &version).await {
            Ok(contents) => records.push(contents),
            Err(response) => return *response,
        }
    }
    Json(kiln_sbom::diff(&records[0], &records[1])).into_response()
}

/// `POST /api/communities/<c>/check`: every entry of the community, a few at a time; 202 at once,
/// or with `?wait=true` each entry's report (or its error) in the entries' order.
async fn check_community(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<CheckQuery>,
    request: Request,
) -> Response {
    let community = match administered(&state, &id, request).await {
        Ok((community, _)) => community,
        Err(response) => return response,
    };
    let task_state = state.clone();
    let task =
        tokio::spawn(
            async move { runner::check_all(&task_state, &community, query.rebuild).await },
        );
    if !query.wait {
        return (
            StatusCode::ACCEPTED,
            Json(json!({"status": "started", "catalog": format!("api/communities/{id}/catalog")})),
        )
            .into_response();
    }
    match task.await {
        Ok(results) => {
            let reports: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(report) => json!(report),
                    Err(e) => json!({"outcome": "failed", "message": e.to_string(), "status": e.status_code()}),
                })
                .collect();
            Json(json!({"reports": reports})).into_response()
        }
        Err(e) => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the check stopped: {e}"),
        ),
    }
}

/// `POST /api/communities/<c>/prewarm`: pull every image the spawn form offers (by digest) onto
/// the service's engine, with the community's registry credentials for its registry only.
async fn prewarm(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let community = match administered(&state, &id, request).await {
        Ok((community, _)) => community,
        Err(response) => return response,
    };
    let (versions, pins) = match versions_and_pins(&state, &community).await {
        Ok(found) => found,
        Err(e) => return catalog_error(e),
    };
    let push = match runner::community_push(&state, &community) {
        Ok(push) => push,
        Err(e) => return catalog_error(e),
    };
    let mut images: Vec<String> = Vec::new();
    for entry in &community.entries {
        let empty = (Vec::new(), BTreeMap::new());
        let offered = kiln_catalog::profiles::offered(
            entry,
            versions.get(&entry.slug).unwrap_or(&empty.0),
            pins.get(&entry.slug).unwrap_or(&empty.1),
        );
        for o in offered {
            if !images.contains(&o.image) {
                images.push(o.image);
            }
        }
    }
    super::json_api::pull_images(&state, &images, push.as_ref()).await
}
