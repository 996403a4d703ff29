//! The pages: the launch form at `/`, the `/v2/<provider>/<spec>` page badges open, BinderHub's
//! legacy `/repo/<owner>/<repo>` links, the badges and the assets.

use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            get(|| {
                page(
                    "text/html; charset=utf-8",
                    include_str!("../pages/index.html"),
                )
            }),
        )
        .route(
            "/v2/{*spec}",
            get(|| {
                page(
                    "text/html; charset=utf-8",
                    include_str!("../pages/launch.html"),
                )
            }),
        )
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
async fn legacy_repo(Path((owner, repo)): Path<(String, String)>) -> Redirect {
    legacy_redirect(&owner, &repo, "")
}

async fn legacy_repo_path(Path((owner, repo, path)): Path<(String, String, String)>) -> Redirect {
    legacy_redirect(&owner, &repo, &path)
}

/// What is escaped in a part of the address: all but letters, digits and `-_.~`.
const PART: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

fn legacy_redirect(owner: &str, repo: &str, path: &str) -> Redirect {
    let escape = |s: &str| utf8_percent_encode(s, PART).to_string();
    let mut to = format!("/v2/gh/{}/{}/master", escape(owner), escape(repo));
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
