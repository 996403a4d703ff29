//! Hub tokens callers send: the hub says whose they are and what they may do; kiln remembers the
//! answer for a minute, so the hub is asked at most once a minute per token, and concurrent
//! requests with a new token wait for one answer. Tokens are kept only as SHA-256 digests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::Digest;
use tokio::sync::OnceCell;

use super::HubUser;
use crate::launch::jupyterhub::JupyterHub;

/// How long a hub's answer about a token is believed.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Tokens remembered at most (the oldest answers go first when full).
const MAX_TOKENS: usize = 10_000;

/// What the hub said about a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOutcome {
    User(HubUser),
    /// Refused with this status (401: not a valid token; 403: valid, but not for kiln).
    Refused {
        status: u16,
        reason: String,
    },
}

type Entry = (Instant, Arc<OnceCell<TokenOutcome>>);

pub struct TokenCache {
    hub: Option<Arc<JupyterHub>>,
    /// Ask the hub for the user's groups when their token does not show them.
    want_groups: bool,
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

impl TokenCache {
    pub fn new(hub: Option<Arc<JupyterHub>>, want_groups: bool) -> TokenCache {
        TokenCache {
            hub,
            want_groups,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether there is a hub to ask.
    pub fn has_hub(&self) -> bool {
        self.hub.is_some()
    }

    /// Whose `token` is, from the cache or the hub. `Err` when the hub cannot be asked (not
    /// remembered: the next request asks again).
    pub async fn identify(&self, token: &str) -> Result<TokenOutcome, String> {
        let Some(hub) = &self.hub else {
            return Ok(TokenOutcome::Refused {
                status: 401,
                reason: "this service has no hub to check tokens with".into(),
            });
        };
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let cell = {
            let mut entries = self
                .entries
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let now = Instant::now();
            let fresh = |e: &Entry| now.duration_since(e.0) < TOKEN_TTL;
            if entries.get(&digest).is_some_and(|e| !fresh(e)) {
                entries.remove(&digest);
            }
            if entries.len() >= MAX_TOKENS {
                entries.retain(|_, e| fresh(e));
                if entries.len() >= MAX_TOKENS
                    && let Some(oldest) = entries.iter().min_by_key(|(_, e)| e.0).map(|(k, _)| *k)
                {
                    entries.remove(&oldest);
                }
            }
            entries
                .entry(digest)
                .or_insert_with(|| (now, Arc::new(OnceCell::new())))
                .1
                .clone()
        };
        cell.get_or_try_init(|| async {
            hub.identify(token, self.want_groups)
                .await
                .map_err(|e| e.to_string())
        })
        .await
        .cloned()
    }
}
