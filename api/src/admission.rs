//! Who is calling, and whether they may build: one reading of the request's credentials, the rate
//! limit per client, the spec patterns, and the build token.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::config::{Config, Secret};
use crate::routes::api_error;

/// The caller as the request shows them: their address and the token they sent, from
/// `Authorization: token <t>` or `Authorization: Bearer <t>` (either spelling of the scheme), or
/// `?build_token=`.
#[derive(Clone)]
pub struct Caller {
    pub address: IpAddr,
    pub token: Option<String>,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(serde::Deserialize, Default)]
struct TokenQuery {
    build_token: Option<String>,
}

/// The token of an `Authorization` header with the `token` or `Bearer` scheme.
pub fn authorization_token(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (matches!(scheme.to_ascii_lowercase().as_str(), "token" | "bearer") && !token.is_empty())
        .then(|| token.to_string())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let address = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let query = Query::<TokenQuery>::try_from_uri(&parts.uri)
            .map(|q| q.0)
            .unwrap_or_default();
        let token = query
            .build_token
            .filter(|t| !t.is_empty())
            .or_else(|| authorization_token(&parts.headers));
        Ok(Caller { address, token })
    }
}

impl Caller {
    /// Whether the caller holds the operator's build token.
    pub fn has_build_token(&self, config: &Config) -> bool {
        match (&config.build_token, &self.token) {
            (Some(expected), Some(given)) => same_secret(expected, given),
            _ => false,
        }
    }

    /// A token that is not the build token: the caller's hub token.
    pub fn hub_token(&self, config: &Config) -> Option<&str> {
        self.token
            .as_deref()
            .filter(|_| !self.has_build_token(config))
    }
}

/// Compare a secret with what a caller sent, in time that does not depend on where they differ.
fn same_secret(expected: &Secret, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (expected.expose().as_bytes(), given.as_bytes());
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Build requests per client address in fixed one-hour windows.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3600);

impl RateLimiter {
    /// `Ok(remaining)` or `Err(seconds until the window resets)`.
    pub fn check(&self, client: IpAddr, limit: u32) -> Result<u32, u64> {
        if limit == 0 {
            return Ok(u32::MAX);
        }
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
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
pub fn admit(
    config: &Config,
    limiter: &RateLimiter,
    caller: &Caller,
    provider: &str,
    spec: &str,
    build_only: bool,
) -> Result<(), Box<Response>> {
    if build_only && config.build_token.is_some() && !caller.has_build_token(config) {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "build_only needs a valid build token",
        )));
    }
    if let Err(reset) = limiter.check(caller.address, config.rate_limit) {
        let mut response = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many build requests from {}; try again in {} minutes",
                caller.address,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_reading_of_authorization() {
        let mut headers = HeaderMap::new();
        for (value, expected) in [
            ("token abc", Some("abc")),
            ("Bearer abc", Some("abc")),
            ("bearer  abc ", Some("abc")),
            ("Basic abc", None),
            ("token", None),
            ("Bearer ", None),
        ] {
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            assert_eq!(
                authorization_token(&headers).as_deref(),
                expected,
                "{value}"
            );
        }
    }

    #[test]
    fn build_token_comparison() {
        let secret = Secret::new("s3cret-token");
        assert!(same_secret(&secret, "s3cret-token"));
        assert!(!same_secret(&secret, "s3cret-tokeN"));
        assert!(!same_secret(&secret, "s3cret"));
        assert!(!same_secret(&secret, "s3cret-token-and-more"));
        assert!(!same_secret(&Secret::new(""), ""));
    }

    #[test]
    fn rate_limit_windows() {
        let limiter = RateLimiter::default();
        let client = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(limiter.check(client, 2), Ok(1));
        assert_eq!(limiter.check(client, 2), Ok(0));
        assert!(limiter.check(client, 2).is_err());
        assert!(limiter.check(IpAddr::from([10, 0, 0, 2]), 2).is_ok());
        assert_eq!(limiter.check(client, 0), Ok(u32::MAX));
    }
}
