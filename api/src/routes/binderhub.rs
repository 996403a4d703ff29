//! BinderHub's API: `GET /build/<provider>/<spec>` streams the build's events, then launches the
//! image (or, with `build_only`, ends on `ready` with the image's name); `GET /api/repoproviders`
//! describes the providers for forms that build specs (BinderHub's page, fancy-profiles).
//! `GET /communities/<c>/build/<provider>/<spec>` is the same for a community's users: its
//! "build your own" policy admits the spec, its images go under its prefix, and its builds are
//! counted as the community's (`quotas.concurrent_builds`).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kiln_builder::{Event, Phase};
use tokio::sync::mpsc;

use super::{api_error, public_base};
use crate::admission::{Caller, admit, open_stream, spec_refused};
use crate::launch::LaunchRequest;
use crate::spec::{self, Spec};
use crate::sse;
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/build/{provider}/{*spec}", get(build))
        .route(
            "/communities/{community}/build/{provider}/{*spec}",
            get(community_build),
        )
        .route("/api/repoproviders", get(repo_providers))
}

/// The providers kiln serves, as BinderHub describes them to its clients: an id, a name, a pattern
/// a spec must match, one that finds the repository in a pasted URL, the labels of the form's
/// fields, and whether the repository part is URL-escaped in the spec.
async fn repo_providers(State(state): State<Arc<AppState>>) -> Response {
    let hosts = &state.config.providers;
    let provider = |id: &str,
                    name: &str,
                    validate: &str,
                    detect: String,
                    label: &str,
                    placeholder: &str,
                    url_encode: bool| {
        serde_json::json!({
            "id": id,
            "displayName": name,
            "spec": {"validateRegex": validate},
            "detect": {"regex": detect},
            "repo": {"label": label, "placeholder": placeholder, "urlEncode": url_encode},
            "ref": {"enabled": true, "default": "HEAD"},
        })
    };
    let url_prefix = |base: &str| format!("^({}/)?(?<repo>.*[^/])/?", regex_escape(base));
    let github = hosts.github.split_once("://").map_or("", |(_, h)| h);
    let gitlab = hosts.gitlab.split_once("://").map_or("", |(_, h)| h);
    axum::Json(serde_json::json!([
        provider(
            "gh",
            "GitHub",
            "[^/]+/[^/]+/.+",
            url_prefix(&hosts.github),
            &format!("Repository on {github}: owner/name, or its URL"),
            "owner/name",
            false,
        ),
        provider(
            "gist",
            "GitHub Gist",
            "[^/]+/[^/]+(/[^/]+)?",
            url_prefix("https://gist.github.com"),
            "Gist: user/id, or its URL",
            "user/id",
            false,
        ),
        provider(
            "gl",
            "GitLab",
            "[^/]+/.+",
            url_prefix(&hosts.gitlab),
            &format!("Project on {gitlab}: group/project, or its URL"),
            "group/project",
            true,
        ),
        provider(
            "git",
            "Git repository",
            "[^/]+/.+",
            "^(?<repo>.+)".to_string(),
            "URL of any git repository (https, http, git or ssh)",
            "https://git.example.org/team/project.git",
            true,
        ),
        record_provider(
            "zenodo",
            "Zenodo",
            "^((https?://)?(dx\\.)?doi\\.org/)?(?<repo>10\\.[0-9.]+/.+)",
            "Zenodo DOI (10.5281/zenodo.3242074)",
            "10.5281/zenodo.3242074",
        ),
        record_provider(
            "figshare",
            "Figshare",
            "^((https?://)?(dx\\.)?doi\\.org/)?(?<repo>10\\.6084/.+)",
            "Figshare DOI (10.6084/m9.figshare.9782777.v2)",
            "10.6084/m9.figshare.9782777.v2",
        ),
        record_provider(
            "dataverse",
            "Dataverse",
            "^((https?://)?(dx\\.)?doi\\.org/)?(?<repo>10\\.[0-9.]+/.+)",
            "Dataverse dataset DOI (10.7910/DVN/TJCLKP)",
            "10.7910/DVN/TJCLKP",
        ),
        record_provider(
            "hydroshare",
            "HydroShare",
            "^(https?://www\\.hydroshare\\.org/resource/)?(?<repo>[0-9a-f]{32})",
            "HydroShare resource id or URL",
            "8f7c2f0341ef4180b0dc53ed6a3b8b7a",
        ),
        record_provider(
            "swhid",
            "Software Heritage",
            "^(?<repo>swh:1:(dir|rev):[0-9a-f]{40}.*)",
            "SWHID of a directory or revision",
            "swh:1:dir:d198bc9d7a6bcf6db04f476d29314f157507d505",
        ),
        record_provider(
            "doi",
            "DOI",
            "^((https?://)?(dx\\.)?doi\\.org/|doi:)?(?<repo>10\\.[0-9.]+/.+)",
            "DOI of an archived record",
            "10.5281/zenodo.3242074",
        ),
    ]))
    .into_response()
}

/// A provider of archived records: the spec is a DOI, and there is no ref (a record version never
/// changes).
fn record_provider(
    id: &str,
    name: &str,
    detect: &str,
    label: &str,
    placeholder: &str,
) -> serde_json::Value {
    serde_json::json!({
        "id": id,
        "displayName": name,
        "spec": {"validateRegex": match id {
            "swhid" => "swh:1:(dir|rev):[0-9a-f]{40}.*",
            "hydroshare" => "[0-9a-f]{32}|https?://.+",
            _ => "10\\.[0-9.]+/.+",
        }},
        "detect": {"regex": detect},
        "repo": {"label": label, "placeholder": placeholder, "urlEncode": false},
        "ref": {"enabled": false, "default": "HEAD"},
    })
}

/// `text` matched literally in a regular expression.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.^$|?*+()[]{}/".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

#[derive(serde::Deserialize, Default)]
struct BuildQuery {
    build_only: Option<String>,
}

async fn build(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    uri: Uri,
    Query(query): Query<BuildQuery>,
    headers: HeaderMap,
) -> Response {
    // The raw path under the base, still percent-encoded: an escaped repository URL keeps its
    // slashes.
    let rest = uri.path().strip_prefix("/build/").unwrap_or_default();
    build_in(state, caller, rest, query, headers, None).await
}

/// `GET /communities/<c>/build/<provider>/<spec>`.
async fn community_build(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    uri: Uri,
    Query(query): Query<BuildQuery>,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().strip_prefix("/communities/").unwrap_or_default();
    let (id, rest) = path.split_once("/build/").unwrap_or_default();
    let Some(community) = state.catalogs.community(id) else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("there is no community {id:?} (GET /communities lists them)"),
        );
    };
    let rest = rest.to_string();
    build_in(state, caller, &rest, query, headers, Some(community)).await
}

/// Why a community's "build your own" policy refuses a spec, if it does.
fn community_refused(community: &kiln_catalog::Community, spec: &Spec) -> Option<String> {
    let policy = &community.build_your_own;
    if !policy.enabled {
        return Some(format!(
            "community {} builds only its catalogue (build_your_own.enabled = false)",
            community.id
        ));
    }
    if !policy.providers.is_empty() && !policy.providers.contains(&spec.provider) {
        return Some(format!(
            "community {} does not build from {} (its providers: {})",
            community.id,
            spec.provider,
            policy.providers.join(", ")
        ));
    }
    if !policy.repositories.is_empty()
        && !policy
            .repositories
            .iter()
            .any(|p| crate::admission::matches_pattern(p, &spec.repo_url))
    {
        return Some(format!(
            "community {} does not build {} (its repositories: {})",
            community.id,
            spec.repo_url,
            policy.repositories.join(", ")
        ));
    }
    None
}

async fn build_in(
    state: Arc<AppState>,
    caller: Caller,
    rest: &str,
    query: BuildQuery,
    headers: HeaderMap,
    community: Option<kiln_catalog::Community>,
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
    let (provider, raw_spec) = rest.split_once('/').unwrap_or_default();
    let build_only = matches!(query.build_only.as_deref(), Some("true") | Some("1"));
    if let Err(response) = admit(&state, &caller, build_only) {
        return *response;
    }
    let ticket = match open_stream(&state, &caller) {
        Ok(ticket) => ticket,
        Err(response) => return *response,
    };
    let (tx, rx) = mpsc::channel::<SseEvent>(256);
    // A spec that cannot be parsed is a `failed` event (BinderHub's client shows those, not bodies).
    let spec = match spec::parse(provider, raw_spec, &state.config.providers) {
        Ok(spec) => spec,
        Err(e) => {
            let _ = tx.try_send(sse::data(&Event::failed(400, e.to_string())));
            return sse::stream(rx);
        }
    };
    if let Some(reason) = spec_refused(&state.config, &spec) {
        return api_error(StatusCode::FORBIDDEN, reason);
    }
    if let Some(reason) = community.as_ref().and_then(|c| community_refused(c, &spec)) {
        return api_error(StatusCode::FORBIDDEN, reason);
    }
    let launch_host = public_base(&state, &headers);
    tokio::spawn(async move {
        let request = StreamRequest {
            spec,
            build_only,
            launch_host,
            caller,
            community,
        };
        // An error means the client went away.
        let _ = stream_build(state, request, tx).await;
        drop(ticket);
    });
    sse::stream(rx)
}

/// One `/build` request, admitted.
struct StreamRequest {
    spec: Spec,
    build_only: bool,
    /// kiln's public address, for `binder_launch_host`.
    launch_host: String,
    caller: Caller,
    /// The community the request came through.
    community: Option<kiln_catalog::Community>,
}

/// Produce one request's events; an `Err` means the client went away.
async fn stream_build(
    state: Arc<AppState>,
    mut request: StreamRequest,
    tx: mpsc::Sender<SseEvent>,
) -> Result<(), ()> {
    let send = |event: Event| {
        let tx = tx.clone();
        async move { tx.send(sse::data(&event)).await.map_err(|_| ()) }
    };
    // A hub user's own credential for the repository's host, when they stored one.
    if let Err(e) = state
        .credentials
        .apply(&mut request.spec, request.caller.hub_user())
        .await
    {
        return send(Event::failed(e.status_code(), e.to_string())).await;
    }
    let spec = &request.spec;
    if let Err(e) = spec.check_reachable(state.builds.policy()).await {
        return send(Event::failed(403, e.to_string())).await;
    }
    // A community with a hub of its own launches there (a missing token fails before building).
    let community_hub = match (&request.community, request.build_only) {
        (Some(community), false) => match state.launchers.community_hub(community) {
            Ok(hub) => hub,
            Err(e) => return send(Event::failed(e.status_code(), e.to_string())).await,
        },
        _ => None,
    };
    // A launch needs a session: when none is free, nothing is built for it (as BinderHub checks
    // its quota before building).
    if !request.build_only
        && community_hub.is_none()
        && let Some(refusal) = state.launchers.total_quota_refusal().await
    {
        return send(Event::failed(429, refusal)).await;
    }
    let built = match &request.community {
        None => {
            state
                .builds
                .build(
                    spec,
                    request.caller.client(),
                    Some(request.caller.builds_limit(&state.config)),
                )
                .await
        }
        Some(community) => {
            let push = match crate::catalog::runner::community_push(&state, community) {
                Ok(push) => push,
                Err(e) => return send(Event::failed(e.status_code(), e.to_string())).await,
            };
            state
                .builds
                .build_to(
                    spec,
                    crate::admission::ClientKey::Community(community.id.clone()),
                    community.quotas.concurrent_builds,
                    Some(crate::builds::Target {
                        image_name: None,
                        push,
                        refresh: None,
                    }),
                )
                .await
        }
    };
    let shared = match built {
        Ok(shared) => shared,
        Err(e) => return send(Event::failed(e.status_code(), e.to_string())).await,
    };
    let mut from = 0;
    let mut image = None;
    while let Some(events) = shared.next(from).await {
        from += events.len();
        for event in events {
            if event.phase == Phase::Built {
                image = event.image_name.clone();
            }
            let failed = event.phase == Phase::Failed;
            send(event).await?;
            if failed {
                return Ok(());
            }
        }
    }
    let Some(image) = image.or_else(|| shared.image()) else {
        return send(Event::failed(500, "the build ended without an image")).await;
    };
    if request.build_only {
        return send(Event::ready_built(
            &image,
            "Built; not launching (build_only)",
        ))
        .await;
    }
    // Launch progress goes to the client as it comes.
    let (progress_tx, mut progress_rx) = mpsc::channel::<Event>(64);
    let relay = {
        let tx = tx.clone();
        tokio::spawn(async move {
            while let Some(event) = progress_rx.recv().await {
                if tx.send(sse::data(&event)).await.is_err() {
                    break;
                }
            }
        })
    };
    let launch = LaunchRequest {
        spec,
        image: &image,
        launch_host: &request.launch_host,
        user: request.caller.hub_user(),
        max_user_sessions: request.caller.limit(
            &state.config,
            |g| g.sessions,
            state.config.max_sessions_per_user,
        ),
        community: request.community.as_ref().and_then(|c| {
            let max = c.quotas.sessions?;
            let prefix = c.prefix(state.config.image_prefix.as_deref())?;
            Some(crate::launch::CommunitySessions {
                id: c.id.clone(),
                prefix,
                max,
            })
        }),
        hub: community_hub,
    };
    let result = state.launchers.launch(launch, &progress_tx).await;
    drop(progress_tx);
    let _ = relay.await;
    match result {
        Ok(ready) => send(Event::ready(ready)).await,
        Err(e) => send(Event::failed(e.status_code(), e.to_string())).await,
    }
}
