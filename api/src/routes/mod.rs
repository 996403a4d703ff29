//! The routes, grouped by who calls them:
//! - [`binderhub`]: BinderHub's API, `GET /build/<provider>/<spec>` (badges, BinderHub's client,
//!   jupyterhub-fancy-profiles);
//! - [`json_api`]: `/api/...` for programs;
//! - [`communities`]: communities, their catalogues and the spawn form's profile list;
//! - [`pages`]: the web page, the `/v2/` launch page, assets;
//! - [`login`]: the hub login (OAuth redirect and callback, logout);
//! - [`operations`]: `/health`, `/versions`, `/metrics` for operators and monitoring.
//!
//! Every route is served under `KILN_BASE_URL`: the whole router sits behind one rewrite that
//! takes the base off the path (and refuses paths outside it), so the routes read as if at `/`.

mod binderhub;
mod communities;
mod json_api;
mod login;
mod operations;
mod pages;

use std::sync::Arc;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Json, middleware};
use serde_json::json;

use crate::state::AppState;

/// Every route of the service, under its base path.
pub fn router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .merge(binderhub::routes())
        .merge(json_api::routes())
        .merge(communities::routes())
        .merge(pages::routes())
        .merge(login::routes())
        .merge(operations::routes())
        .with_state(state.clone());
    // A host a community claims names it: rewritten before the routes match.
    let routes = match state.config.communities_dir {
        None => routes,
        Some(_) => Router::new()
            .fallback_service(routes)
            .layer(middleware::from_fn_with_state(
                state.clone(),
                community_by_host,
            )),
    };
    let base = state.config.base_url.clone();
    if base == "/" {
        return routes;
    }
    Router::new()
        .fallback_service(routes)
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            let base = base.clone();
            async move { under_base(&base, request, next).await }
        }))
}

/// A request to a host that a community claims (`hosts` in its file) is the community's: its
/// `build/...` and `profiles` are the community's routes (`communities/<id>/...`), so its badges
/// and spawn form need no path of their own. Other paths are served as they are.
async fn community_by_host(
    axum::extract::State(state): axum::extract::State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let community = host.and_then(|h| state.catalogs.current().by_host(&h).map(|c| c.id.clone()));
    if let Some(id) = community {
        let path = request.uri().path();
        let rewritten = match path.strip_prefix("/build/") {
            Some(rest) => Some(format!("/communities/{id}/build/{rest}")),
            None => (path == "/profiles").then(|| format!("/communities/{id}/profiles")),
        };
        if let Some(path) = rewritten
            && let Err(response) = set_path(&mut request, &path)
        {
            return *response;
        }
    }
    next.run(request).await
}

/// Give the request another path, keeping its query.
fn set_path(request: &mut Request, path: &str) -> Result<(), Box<Response>> {
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri = format!("{path}{query}").parse::<Uri>().map_err(|_| {
        Box::new(api_error(
            StatusCode::BAD_REQUEST,
            "the request's path is not valid",
        ))
    })?;
    *request.uri_mut() = uri;
    Ok(())
}

/// Serve a request whose path starts with `base` as if it started at `/`; the base without its
/// slash is redirected to it, and anything else is a 404 that says where kiln is.
async fn under_base(base: &str, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path == base.trim_end_matches('/') {
        return Redirect::permanent(base).into_response();
    }
    let Some(rest) = path.strip_prefix(base.trim_end_matches('/')) else {
        return api_error(
            StatusCode::NOT_FOUND,
            format!("kiln serves under {base}; {path} is outside it"),
        );
    };
    let rest = rest.to_string();
    match set_path(&mut request, &rest) {
        Ok(()) => next.run(request).await,
        Err(response) => *response,
    }
}

/// A JSON error answer: `{"error": message}`.
pub fn api_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Where people reach kiln, ending in the base path and `/`: `KILN_PUBLIC_URL`, else the request's
/// `Host` (behind trusted proxies, their `X-Forwarded-Host` and `X-Forwarded-Proto`).
pub fn public_base(state: &AppState, headers: &HeaderMap) -> String {
    let config = &state.config;
    if let Some(url) = &config.public_url {
        return url.to_string();
    }
    let forwarded = |name: &str| {
        (config.trusted_proxy_hops > 0)
            .then(|| headers.get(name).and_then(|v| v.to_str().ok()))
            .flatten()
            .and_then(|v| v.split(',').next_back())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let host = forwarded("x-forwarded-host")
        .or_else(|| headers.get(header::HOST).and_then(|h| h.to_str().ok()))
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })
        .unwrap_or("127.0.0.1");
    let scheme = match forwarded("x-forwarded-proto") {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}{}", config.base_url)
}
