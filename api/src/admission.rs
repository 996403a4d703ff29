//! Who is calling, and whether they may: one reading of the request's address and credentials,
//! banned networks, the rate limit, open streams per client, spec patterns, and the build token.
//!
//! The client's address is the connection's, or, behind `KILN_TRUSTED_PROXY_HOPS` proxies, the
//! address those proxies recorded in `X-Forwarded-For` (the entries a client writes itself are
//! never trusted).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::config::{Config, Secret};
use crate::routes::api_error;
use crate::spec::Spec;
use crate::state::AppState;

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

/// The client's address: the connection's, or with `hops` trusted proxies in front, the entry of
/// `X-Forwarded-For` the nearest untrusted hop was seen from.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, hops: usize) -> IpAddr {
    if hops == 0 {
        return peer;
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .collect();
    // The last `hops` entries were written by our proxies; the one before the first of them is the
    // client (a shorter list means a proxy is missing: the furthest address known is used).
    match forwarded.len().checked_sub(hops) {
        Some(i) => forwarded[i],
        None => forwarded.first().copied().unwrap_or(peer),
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
        let address = client_address(peer, &parts.headers, state.config.trusted_proxy_hops);
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
    pub fn is_operator(&self, config: &Config) -> bool {
        match (&config.build_token, &self.token) {
            (Some(expected), Some(given)) => same_secret(expected, given),
            _ => false,
        }
    }

    /// A token that is not the build token: the caller's hub token.
    pub fn hub_token(&self, config: &Config) -> Option<&str> {
        self.token.as_deref().filter(|_| !self.is_operator(config))
    }
}

/// Compare a secret with what a caller sent, in time that does not depend on where they differ.
fn same_secret(expected: &Secret, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    let (a, b) = (expected.expose().as_bytes(), given.as_bytes());
    !a.is_empty() && a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Build requests per client address in fixed one-hour windows. Expired windows are dropped, so
/// the table holds at most the clients of the last hour.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3600);

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RateLimiter {
    /// `Ok(remaining)` or `Err(seconds until the window resets)`.
    pub fn check(&self, client: IpAddr, limit: u32) -> Result<u32, u64> {
        self.check_at(client, limit, Instant::now())
    }

    fn check_at(&self, client: IpAddr, limit: u32, now: Instant) -> Result<u32, u64> {
        if limit == 0 {
            return Ok(u32::MAX);
        }
        let mut windows = locked(&self.windows);
        if windows.len() >= 1024 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
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

    /// Clients with a window.
    pub fn clients(&self) -> usize {
        locked(&self.windows).len()
    }
}

/// Event streams each client holds open.
#[derive(Default)]
pub struct Streams {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open stream; it closes when dropped.
pub struct StreamTicket {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

impl Drop for StreamTicket {
    fn drop(&mut self) {
        let mut open = locked(&self.open);
        if let Some(n) = open.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl Streams {
    /// A ticket for one more stream, or `None` when the client holds `limit` already.
    pub fn open(&self, client: IpAddr, limit: usize) -> Option<StreamTicket> {
        let mut open = locked(&self.open);
        let n = open.entry(client).or_insert(0);
        if limit > 0 && *n >= limit {
            return None;
        }
        *n += 1;
        Some(StreamTicket {
            open: self.open.clone(),
            client,
        })
    }
}

/// Whether `text` matches a pattern where `*` stands for any run of characters, ignoring case.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let (pattern, text) = (pattern.to_lowercase(), text.to_lowercase());
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || text.len() < first.len() + last.len()
        || !text[first.len()..].ends_with(last)
    {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Why a spec may not be built, if it may not: the patterns are compared with the decoded spec
/// (`<provider>/<spec>`) and, for bans, with the spec as sent too, ignoring case.
pub fn spec_refused(config: &Config, spec: &Spec) -> Option<String> {
    let decoded = spec.pattern_name();
    let sent = format!("{}/{}", spec.provider, spec.raw);
    if let Some(p) = config
        .banned_specs
        .iter()
        .find(|p| matches_pattern(p, &decoded) || matches_pattern(p, &sent))
    {
        return Some(format!("{decoded} is banned on this service (pattern {p})"));
    }
    if !config.allowed_specs.is_empty()
        && !config
            .allowed_specs
            .iter()
            .any(|p| matches_pattern(p, &decoded))
    {
        return Some(format!(
            "{decoded} is not among the repositories this service builds"
        ));
    }
    None
}

/// Banned networks, the build-only token and the rate limit (which the operator's token skips):
/// `Err` is the response to send instead.
pub fn admit(state: &AppState, caller: &Caller, build_only: bool) -> Result<(), Box<Response>> {
    let config = &state.config;
    if let Some(banned) = config
        .ban_networks
        .iter()
        .find(|b| b.network.contains(&caller.address))
    {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            format!(
                "requests from {} are not served here ({})",
                caller.address, banned.label
            ),
        )));
    }
    let operator = caller.is_operator(config);
    if build_only && config.build_token.is_some() && !operator {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "build_only needs a valid build token",
        )));
    }
    if operator {
        return Ok(());
    }
    if let Err(reset) = state.limiter.check(caller.address, config.rate_limit) {
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
    Ok(())
}

/// A stream slot for the caller, or the 429 to send.
pub fn open_stream(state: &AppState, caller: &Caller) -> Result<StreamTicket, Box<Response>> {
    state
        .streams
        .open(caller.address, state.config.max_streams_per_client)
        .ok_or_else(|| {
            Box::new(api_error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{} holds {} event streams open already; close one and try again",
                    caller.address, state.config.max_streams_per_client
                ),
            ))
        })
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
    fn rate_limit_windows_and_the_table_shrinks() {
        let limiter = RateLimiter::default();
        let client = IpAddr::from([10, 0, 0, 1]);
        assert_eq!(limiter.check(client, 2), Ok(1));
        assert_eq!(limiter.check(client, 2), Ok(0));
        assert!(limiter.check(client, 2).is_err());
        assert!(limiter.check(IpAddr::from([10, 0, 0, 2]), 2).is_ok());
        assert_eq!(limiter.check(client, 0), Ok(u32::MAX));
        let start = Instant::now();
        for i in 0..2000u32 {
            let address = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.check_at(address, 5, start);
        }
        let later = start + RATE_WINDOW + Duration::from_secs(1);
        let _ = limiter.check_at(IpAddr::from([192, 0, 2, 1]), 5, later);
        assert!(limiter.clients() < 10, "{} clients kept", limiter.clients());
    }

    #[test]
    fn forwarded_addresses_are_trusted_only_for_the_configured_hops() {
        let peer = IpAddr::from([10, 0, 0, 9]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.7, 10.0.0.8".parse().unwrap(),
        );
        assert_eq!(client_address(peer, &headers, 0), peer);
        assert_eq!(
            client_address(peer, &headers, 1),
            IpAddr::from([10, 0, 0, 8])
        );
        assert_eq!(
            client_address(peer, &headers, 2),
            IpAddr::from([203, 0, 113, 7]),
            "the client's own 6.6.6.6 is not believed"
        );
    }

    #[test]
    fn patterns_ignore_case() {
        assert!(matches_pattern("gh/evil/*", "gh/EVIL/repo/HEAD"));
        assert!(!matches_pattern("gh/evil/*", "gh/good/repo/HEAD"));
        assert!(matches_pattern("*", "anything"));
        assert!(matches_pattern("exact", "EXACT"));
        assert!(!matches_pattern("a*b", "ba"));
    }

    #[test]
    fn bans_cannot_be_dodged_by_encoding_or_case() {
        let mut config = Config::load(None).unwrap();
        config.banned_specs = vec!["gh/evil/*".into()];
        for spec in ["%65vil/repo/HEAD", "EVIL/repo/HEAD", "Evil/Repo/main"] {
            let parsed = crate::spec::parse("gh", spec, &Default::default()).unwrap();
            assert!(spec_refused(&config, &parsed).is_some(), "{spec}");
        }
        let ok = crate::spec::parse("gh", "good/repo/HEAD", &Default::default()).unwrap();
        assert!(spec_refused(&config, &ok).is_none());
        config.allowed_specs = vec!["gh/good/*".into()];
        let other = crate::spec::parse("gh", "other/repo/HEAD", &Default::default()).unwrap();
        assert!(spec_refused(&config, &other).is_some());
        assert!(spec_refused(&config, &ok).is_none());
    }

    #[test]
    fn stream_tickets_are_counted_and_returned() {
        let streams = Streams::default();
        let client = IpAddr::from([10, 0, 0, 1]);
        let a = streams.open(client, 2).unwrap();
        let _b = streams.open(client, 2).unwrap();
        assert!(streams.open(client, 2).is_none());
        drop(a);
        assert!(streams.open(client, 2).is_some());
    }
}
