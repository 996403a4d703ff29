//! The pages: the launch form at `/`, the `/v2/<provider>/<spec>` page badges open, the assets.

use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

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
            "/badge_logo.svg",
            get(|| page("image/svg+xml", include_str!("../pages/badge_logo.svg"))),
        )
}

/// A static page or asset.
async fn page(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}
