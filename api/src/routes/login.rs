//! The hub login (kiln as the hub's OAuth client): `oauth_login` sends the browser to the hub's
//! authorize page with a fresh `state` (kept in a signed cookie with the page to return to);
//! the hub sends it back to `oauth_callback` with a code, which kiln exchanges for a token, asks
//! the hub whose it is, and starts a session (a signed, HttpOnly cookie). `logout` ends it.
//! Every refusal is a page that says why; nothing is started.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::public_base;
use crate::admission::cookie;
use crate::auth::TokenOutcome;
use crate::auth::sessions::{LOGIN_COOKIE, LOGIN_TTL, SESSION_COOKIE};
use crate::state::AppState;

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/oauth_login", get(login))
        .route("/oauth_callback", get(callback))
        .route("/logout", get(logout))
}

#[derive(serde::Deserialize, Default)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(serde::Deserialize, Default)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// A page that says why something was refused (text only, escaped).
pub fn reason_page(status: StatusCode, title: &str, reason: &str, base: &str) -> Response {
    let escape = |text: &str| {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <link rel=\"stylesheet\" href=\"{base}static/kiln.css\"></head><body><main>\
         <h1>{title}</h1><p id=\"reason\">{reason}</p><p><a href=\"{base}\">Back to kiln</a></p>\
         </main></body></html>",
        title = escape(title),
        reason = escape(reason),
        base = escape(base),
    );
    (status, Html(body)).into_response()
}

/// A cookie for kiln's base path: HttpOnly, SameSite=Lax, Secure when kiln is reached by https.
fn set_cookie(
    state: &AppState,
    headers: &HeaderMap,
    name: &str,
    value: &str,
    max_age: u64,
) -> String {
    let secure = public_base(state, headers).starts_with("https://");
    format!(
        "{name}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        state.config.base_url,
        if secure { "; Secure" } else { "" }
    )
}

/// Where to go after a login: a path under kiln's base, never another site.
fn safe_next(base: &str, next: Option<&str>) -> String {
    match next {
        Some(next)
            if next.starts_with(base)
                && !next.starts_with("//")
                && !next.contains(['\\', '\r', '\n']) =>
        {
            next.to_string()
        }
        _ => base.to_string(),
    }
}

/// Send the browser to the hub to log in.
async fn login(
    State(state): State<Arc<AppState>>,
    Query(query): Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let config = &state.config;
    let (true, Some(hub)) = (config.hub_auth, &state.launchers.hub) else {
        return reason_page(
            StatusCode::NOT_FOUND,
            "No hub login here",
            "this service does not log people in through a hub (KILN_HUB_AUTH is off)",
            &config.base_url,
        );
    };
    let Ok(login_state) = crate::auth::random_hex(16) else {
        return reason_page(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot log in",
            "the service has no randomness",
            &config.base_url,
        );
    };
    let next = safe_next(&config.base_url, query.next.as_deref());
    let cookie_value = state.auth.sessions.login_cookie(&login_state, &next);
    let mut authorize = match hub.public_url().join("hub/api/oauth2/authorize") {
        Ok(url) => url,
        Err(e) => {
            return reason_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Cannot log in",
                &format!("KILN_HUB_URL gives no authorize address: {e}"),
                &config.base_url,
            );
        }
    };
    authorize
        .query_pairs_mut()
        .append_pair("client_id", &config.hub_oauth_client_id)
        .append_pair("redirect_uri", &config.hub_oauth_redirect_uri)
        .append_pair("response_type", "code")
        .append_pair("state", &login_state);
    let cookie = set_cookie(
        &state,
        &headers,
        LOGIN_COOKIE,
        &cookie_value,
        LOGIN_TTL.as_secs(),
    );
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, authorize.to_string()),
            (header::SET_COOKIE, cookie),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response()
}

/// The hub sends the browser back here with a code: check the state, exchange the code, learn
/// who it is, start a session.
async fn callback(
    State(state): State<Arc<AppState>>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let config = &state.config;
    let base = config.base_url.as_str();
    let refuse =
        |status: StatusCode, reason: &str| reason_page(status, "Login refused", reason, base);
    let (true, Some(hub)) = (config.hub_auth, &state.launchers.hub) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "this service does not log people in through a hub",
        );
    };
    if let Some(error) = &query.error {
        let detail = query.error_description.as_deref().unwrap_or(error);
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("the hub refused the login: {detail}"),
        );
    }
    let (Some(code), Some(given_state)) = (&query.code, &query.state) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the login's answer lacks its code or state; start the login again",
        );
    };
    let Some(login_cookie) = cookie(&headers, LOGIN_COOKIE) else {
        return refuse(
            StatusCode::FORBIDDEN,
            "this browser did not start a login (no login cookie); start the login again from kiln's page",
        );
    };
    let next = match state.auth.sessions.check_login(login_cookie, given_state) {
        Ok(next) => safe_next(base, Some(&next)),
        Err(reason) => return refuse(StatusCode::FORBIDDEN, reason),
    };
    let token = match hub
        .exchange_code(
            code,
            &config.hub_oauth_client_id,
            &config.hub_oauth_redirect_uri,
        )
        .await
    {
        Ok(token) => token,
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("the login could not be completed with the hub: {e}"),
            );
        }
    };
    let user = match hub.identify(&token, config.wants_groups()).await {
        Ok(TokenOutcome::User(user)) => user,
        Ok(TokenOutcome::Refused { status, reason }) => {
            return refuse(
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                &reason,
            );
        }
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("the hub could not say who logged in: {e}; try again"),
            );
        }
    };
    let Ok((session_cookie, _)) = state.auth.sessions.start(user.clone()) else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the service has no randomness",
        );
    };
    tracing::info!(user = %user.name, "logged in through the hub");
    let mut response = (
        StatusCode::FOUND,
        [
            (header::LOCATION, next),
            (header::CACHE_CONTROL, "no-store".to_string()),
        ],
    )
        .into_response();
    let headers_out = response.headers_mut();
    for cookie in [
        set_cookie(
            &state,
            &headers,
            SESSION_COOKIE,
            &session_cookie,
            config.login_seconds,
        ),
        set_cookie(&state, &headers, LOGIN_COOKIE, "", 0),
    ] {
        if let Ok(value) = cookie.parse() {
            headers_out.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// End the session (its cookie no longer works, even if copied) and clear the cookie.
async fn logout(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if let Some(session) = cookie(&headers, SESSION_COOKIE) {
        state.auth.sessions.end(session);
    }
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, state.config.base_url.clone()),
            (
                header::SET_COOKIE,
                set_cookie(&state, &headers, SESSION_COOKIE, "", 0),
            ),
        ],
    )
        .into_response()
}
