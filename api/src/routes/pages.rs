//! The pages: the launch form at `/`, the `/v2/<provider>/<spec>` page badges open, BinderHub's
//! legacy `/repo/<owner>/<repo>` links, the badges and the assets.

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::admission::Caller;
use crate::state::AppState;

/// The launch form.
async fn index(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
) -> Response {
    html_page(&state, &caller, &uri, include_str!("../pages/index.html"))
}

/// The page a badge opens: it builds and launches, then goes to the session.
async fn launch_page(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    OriginalUri(uri): OriginalUri,
) -> Response {
    html_page(&state, &caller, &uri, include_str!("../pages/launch.html"))
}

/// A page with the base path filled in; where only hub users may build, a caller the hub does not
/// know yet is sent to log in first (and comes back to this page).
fn html_page(state: &AppState, caller: &Caller, uri: &axum::http::Uri, template: &str) -> Response {
    let config = &state.config;
    if config.hub_auth
        && !config.allow_anonymous
        && caller.hub_user().is_none()
        && !caller.is_operator()
    {
        let next = uri
            .path_and_query()
            .map_or(config.base_url.clone(), |p| p.to_string());
        let to = format!(
            "{}oauth_login?next={}",
            config.base_url,
            utf8_percent_encode(&next, PART)
        );
        return Redirect::to(&to).into_response();
    }
    let body = template.replace("{{base}}", &config.base_url);
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(index))
        .route("/v2/{*spec}", get(launch_page))
        .route(
            "/static/kiln.js",
            get(|| {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../pages/kiln.js"),
                )
            }),
        )
        .route(
            "/static/catalog.js",
            get(|| {
                page(
                    "text/javascript; charset=utf-8",
                    include_str!("../pages/catalog.js"),
                )
            }),
        )
        .route(
            "/static/kiln.css",
            get(|| page("text/css; charset=utf-8", include_str!("../pages/kiln.css"))),
        )
        .route(
            "/static/logo.svg",
            get(|| svg(include_str!("../pages/logo.svg"))),
        )
        // The badges READMEs show, at BinderHub's addresses (the second is mybinder.org's old one).
        .route(
            "/badge_logo.svg",
            get(|| svg(include_str!("../pages/badge_logo.svg"))),
        )
        .route("/badge.svg", get(badge))
        .route("/assets/images/badge.svg", get(badge))
        .route("/repo/{owner}/{repo}", get(legacy_repo))
        .route("/repo/{owner}/{repo}/", get(legacy_repo))
        .route("/repo/{owner}/{repo}/{*path}", get(legacy_repo_path))
}

async fn badge() -> Response {
    svg(include_str!("../pages/badge.svg")).await
}

/// BinderHub's legacy links, `/repo/<owner>/<repo>[/<path>]`: the GitHub repository's `master`
/// (which a repository without one turns into its default branch), opening `<path>`.
async fn legacy_repo(
    State(state): State<Arc<AppState>>,
    Path((owner, repo)): Path<(String, String)>,
) -> Redirect {
    legacy_redirect(&state.config.base_url, &owner, &repo, "")
}

async fn legacy_repo_path(
    State(state): State<Arc<AppState>>,
    Path((owner, repo, path)): Path<(String, String, String)>,
) -> Redirect {
    legacy_redirect(&state.config.base_url, &owner, &repo, &path)
}

/// What is escaped in a part of the address: all but letters, digits and `-_.~`.
const PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn legacy_redirect(base: &str, owner: &str, repo: &str, path: &str) -> Redirect {
    let escape = |s: &str| utf8_percent_encode(s, PART).to_string();
    let mut to = format!("{base}v2/gh/{}/{}/master", escape(owner), escape(repo));
    let path = path.trim_matches('/');
    if !path.is_empty() {
        to.push_str("?urlpath=");
        to.push_str(&escape(path));
    }
    Redirect::to(&to)
}

/// A static page or asset.
async fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// An image, kept an hour in caches (badges are fetched on every view of a README).
async fn svg(body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}
