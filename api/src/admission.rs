//! Who is calling, and whether they may: one reading of the request's address and credentials
//! (the [`Identity`] from [`crate::auth`]), banned networks, who may build, the rate limit, open
//! streams per client, spec patterns, and the build token.
//!
//! A client is a hub user when the hub vouches for them, else an address: the connection's, or,
//! behind `KILN_TRUSTED_PROXY_HOPS` proxies, the address those proxies recorded in
//! `X-Forwarded-For` (the entries a client writes itself are never trusted). Limits count per
//! client.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;

use crate::auth::sessions::SESSION_COOKIE;
use crate::auth::{HubUser, Identity, TokenOutcome};
use crate::config::{Config, Secret};
use crate::routes::api_error;
use crate::spec::Spec;
use crate::state::AppState;

/// The caller as the request shows them: their address, the token they sent (from
/// `Authorization: token <t>` or `Authorization: Bearer <t>`, either spelling of the scheme, or
/// `?build_token=`), and who that proves them to be.
#[derive(Clone)]
pub struct Caller {
    pub address: IpAddr,
    pub token: Option<String>,
    pub identity: Identity,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("user", &self.identity.hub_user().map(|u| &u.name))
            .finish()
    }
}

/// Whom limits are counted for: a hub user when known, else an address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    Address(IpAddr),
    User(String),
    /// A community's catalogue builds.
    Community(String),
}

impl std::fmt::Display for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientKey::Address(address) => write!(f, "{address}"),
            ClientKey::User(name) => write!(f, "hub user {name}"),
            ClientKey::Community(id) => write!(f, "community {id}"),
        }
    }
}

/// The value of one cookie of the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// A refusal of the caller's credentials: JSON with the reason (and, for a browser that is not
/// logged in, where to log in).
fn refused(status: StatusCode, reason: impl Into<String>) -> Response {
    let mut response = api_error(status, reason);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "token".parse().expect("a header value"),
        );
    }
    response
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
    type Rejection = Response;

    /// A token the hub refuses is refused here (401 or 403 with the hub's reason), and so is a
    /// state-changing call with a session cookie but without its CSRF token. A cookie that is
    /// forged, ended or expired counts as no cookie.
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
        let identity = identify(state, token.as_deref(), parts).await?;
        Ok(Caller {
            address,
            token,
            identity,
        })
    }
}

/// Who the request's token or session cookie proves the caller to be.
async fn identify(
    state: &AppState,
    token: Option<&str>,
    parts: &Parts,
) -> Result<Identity, Response> {
    let config = &state.config;
    if let Some(token) = token {
        if let Some(expected) = &config.build_token
            && same_secret(expected, token)
        {
            return Ok(Identity::Operator);
        }
        // Without a hub, a token that is not the build token proves nothing.
        if !state.auth.tokens.has_hub() {
            return Ok(Identity::Anonymous);
        }
        return match state.auth.tokens.identify(token).await {
            Ok(TokenOutcome::User(user)) => Ok(Identity::TokenUser(user)),
            Ok(TokenOutcome::Refused { status, reason }) => Err(refused(
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                reason,
            )),
            Err(reason) => Err(refused(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot check your hub token now: {reason}; try again shortly"),
            )),
        };
    }
    if !config.hub_auth {
        return Ok(Identity::Anonymous);
    }
    let Some(session) =
        cookie(&parts.headers, SESSION_COOKIE).and_then(|c| state.auth.sessions.find(c))
    else {
        return Ok(Identity::Anonymous);
    };
    // A page of another site cannot read the CSRF token: every call that changes something must
    // send it. Reads need none, but a cross-site one is refused (SameSite already keeps the
    // cookie from most of them).
    let changes = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
    let sent = parts
        .headers
        .get("x-kiln-csrf")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if changes && !same_secret(&Secret::new(session.csrf.clone()), sent) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "this request changes something but lacks the page's CSRF token (X-Kiln-CSRF); reload kiln's page",
        ));
    }
    let site = parts
        .headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("same-origin");
    let navigation = parts
        .headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate");
    if (site == "cross-site" && (changes || !navigation)) || (site == "same-site" && changes) {
        return Err(refused(
            StatusCode::FORBIDDEN,
            "requests from other sites may not use your kiln login",
        ));
    }
    Ok(Identity::CookieUser {
        user: session.user,
        csrf: session.csrf,
    })
}

impl Caller {
    /// Whether the caller holds the operator's build token.
    pub fn is_operator(&self) -> bool {
        self.identity == Identity::Operator
    }

    /// The hub user the caller proved to be.
    pub fn hub_user(&self) -> Option<&HubUser> {
        self.identity.hub_user()
    }

    /// Whom the caller's limits count for.
    pub fn client(&self) -> ClientKey {
        match self.hub_user() {
            Some(user) => ClientKey::User(user.name.clone()),
            None => ClientKey::Address(self.address),
        }
    }

    /// Builds this caller may have running or waiting.
    pub fn builds_limit(&self, config: &Config) -> usize {
        self.limit(config, |g| g.builds, config.max_builds_per_client)
    }

    /// A limit for this caller: the largest their hub groups give, else `default`.
    pub fn limit<T: Ord + Copy>(
        &self,
        config: &Config,
        of_group: impl Fn(&crate::config::GroupLimits) -> Option<T>,
        default: T,
    ) -> T {
        let Some(user) = self.hub_user() else {
            return default;
        };
        config
            .group_limits
            .iter()
            .filter(|g| user.groups.contains(&g.group))
            .filter_map(of_group)
            .max()
            .unwrap_or(default)
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
    windows: Mutex<HashMap<ClientKey, (Instant, u32)>>,
}

const RATE_WINDOW: Duration = Duration::from_secs(3600);

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl RateLimiter {
    /// `Ok(remaining)` or `Err(seconds until the window resets)`.
    pub fn check(&self, client: &ClientKey, limit: u32) -> Result<u32, u64> {
        self.check_at(client, limit, Instant::now())
    }

    fn check_at(&self, client: &ClientKey, limit: u32, now: Instant) -> Result<u32, u64> {
        if limit == 0 {
            return Ok(u32::MAX);
        }
        let mut windows = locked(&self.windows);
        if windows.len() >= 1024 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < RATE_WINDOW);
        }
        let entry = windows.entry(client.clone()).or_insert((now, 0));
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
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
}

/// One open stream; it closes when dropped.
pub struct StreamTicket {
    open: Arc<Mutex<HashMap<ClientKey, usize>>>,
    client: ClientKey,
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
    pub fn open(&self, client: ClientKey, limit: usize) -> Option<StreamTicket> {
        let mut open = locked(&self.open);
        let n = open.entry(client.clone()).or_insert(0);
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

/// Banned networks, who may build (anonymous callers, hub groups), `build_only`, and the rate
/// limit (which the operator's token skips): `Err` is the response to send instead.
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
    if caller.is_operator() {
        return Ok(());
    }
    may_build(config, caller)?;
    // build_only is for programs: the operator's, and hub users' (jupyterhub-fancy-profiles).
    if build_only && config.build_token.is_some() && caller.hub_user().is_none() {
        return Err(Box::new(api_error(
            StatusCode::FORBIDDEN,
            "build_only needs a valid build token or a hub user's token",
        )));
    }
    let limit = caller.limit(config, |g| g.rate, config.rate_limit);
    let client = caller.client();
    if let Err(reset) = state.limiter.check(&client, limit) {
        let mut response = api_error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many build requests from {client}; try again in {} minutes",
                reset.div_ceil(60)
            ),
        );
        let headers = response.headers_mut();
        headers.insert("x-ratelimit-limit", limit.into());
        headers.insert("x-ratelimit-remaining", 0.into());
        headers.insert("x-ratelimit-reset", reset.into());
        return Err(Box::new(response));
    }
    Ok(())
}

/// Whether the caller may build and launch at all: anonymous callers only where allowed, hub
/// users only in `KILN_BUILD_GROUPS` when it is set.
pub fn may_build(config: &Config, caller: &Caller) -> Result<(), Box<Response>> {
    match caller.hub_user() {
        _ if caller.is_operator() => Ok(()),
        None if !config.allow_anonymous => Err(Box::new(refused(
            StatusCode::UNAUTHORIZED,
            match config.hub_auth {
                true => format!(
                    "log in through the hub first ({}oauth_login), or send a hub token",
                    config.base_url
                ),
                false => "this service builds only for callers with a token".to_string(),
            },
        ))),
        Some(user)
            if !config.build_groups.is_empty()
                && !user.groups.iter().any(|g| config.build_groups.contains(g)) =>
        {
            Err(Box::new(refused(
                StatusCode::FORBIDDEN,
                format!(
                    "{} may not build here: only members of the hub groups {} may",
                    user.name,
                    config.build_groups.join(", ")
                ),
            )))
        }
        _ => Ok(()),
    }
}

/// A stream slot for the caller, or the 429 to send.
pub fn open_stream(state: &AppState, caller: &Caller) -> Result<StreamTicket, Box<Response>> {
    let client = caller.client();
    state
        .streams
        .open(client.clone(), state.config.max_streams_per_client)
        .ok_or_else(|| {
            Box::new(api_error(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "{client} holds {} event streams open already; close one and try again",
                    state.config.max_streams_per_client
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
        let address = |a: [u8; 4]| ClientKey::Address(IpAddr::from(a));
        let client = address([10, 0, 0, 1]);
        assert_eq!(limiter.check(&client, 2), Ok(1));
        assert_eq!(limiter.check(&client, 2), Ok(0));
        assert!(limiter.check(&client, 2).is_err());
        assert!(limiter.check(&address([10, 0, 0, 2]), 2).is_ok());
        assert!(
            limiter.check(&ClientKey::User("alice".into()), 2).is_ok(),
            "a hub user behind the same proxy has a window of their own"
        );
        assert_eq!(limiter.check(&client, 0), Ok(u32::MAX));
        let start = Instant::now();
        for i in 0..2000u32 {
            let key = ClientKey::Address(IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i)));
            let _ = limiter.check_at(&key, 5, start);
        }
        let later = start + RATE_WINDOW + Duration::from_secs(1);
        let _ = limiter.check_at(&address([192, 0, 2, 1]), 5, later);
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
        let client = ClientKey::Address(IpAddr::from([10, 0, 0, 1]));
        let a = streams.open(client.clone(), 2).unwrap();
        let _b = streams.open(client.clone(), 2).unwrap();
        assert!(streams.open(client.clone(), 2).is_none());
        drop(a);
        assert!(streams.open(client, 2).is_some());
    }
}
