//! Who is calling, as far as kiln can tell, in one place:
//!
//! - the operator, by `KILN_BUILD_TOKEN`;
//! - a hub user, by a hub token (`Authorization: token|Bearer`), which the hub vouches for and whose
//!   scopes must include kiln's ([`tokens`]: asked at most once a minute per token), or by the
//!   session cookie a hub login gave them ([`sessions`]: signed, kept in memory, ended by logout);
//! - otherwise an anonymous caller, known only by their address.
//!
//! [`Auth`] holds the token cache, the sessions and the cookie key. The OAuth login itself (the
//! redirect to the hub and the callback) is in `routes/login.rs`.

pub mod sessions;
pub mod tokens;

use std::path::Path;
use std::sync::Arc;

use crate::config::{Config, Secret};
use crate::error::ConfigError;
use crate::launch::jupyterhub::JupyterHub;
pub use sessions::{Session, Sessions};
pub use tokens::{TokenCache, TokenOutcome};

/// A user of the hub, as the hub described them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HubUser {
    pub name: String,
    pub groups: Vec<String>,
}

/// How a caller proved who they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Anonymous,
    Operator,
    /// A hub user with a hub token.
    TokenUser(HubUser),
    /// A hub user with the session cookie of a hub login, and that session's CSRF token.
    CookieUser {
        user: HubUser,
        csrf: String,
    },
}

impl Identity {
    /// The hub user, for either way of proving it.
    pub fn hub_user(&self) -> Option<&HubUser> {
        match self {
            Identity::TokenUser(user) | Identity::CookieUser { user, .. } => Some(user),
            Identity::Anonymous | Identity::Operator => None,
        }
    }
}

/// What the service knows about logins.
pub struct Auth {
    pub tokens: TokenCache,
    /// Logins, and the key that signs their cookies.
    pub sessions: Sessions,
}

impl Auth {
    /// The login state of a service: the cookie key from `KILN_COOKIE_SECRET`, else from
    /// `kiln_cookie_secret` beside the state database (made on first start, readable only by its
    /// owner).
    pub fn new(config: &Config, hub: Option<Arc<JupyterHub>>) -> Result<Auth, ConfigError> {
        let key = operator_key(
            config.cookie_secret.as_ref(),
            "KILN_COOKIE_SECRET",
            &config.state.with_file_name("kiln_cookie_secret"),
        )?;
        Ok(Auth {
            tokens: TokenCache::new(hub, config.wants_groups()),
            sessions: Sessions::new(
                key,
                std::time::Duration::from_secs(config.login_seconds.max(60)),
            ),
        })
    }
}

/// A key of the operator's: the setting `variable` when given (at least 32 bytes as hex digits),
/// else the key kept in `path`, made on first start and readable only by its owner.
pub fn operator_key(
    setting: Option<&Secret>,
    variable: &str,
    path: &Path,
) -> Result<Secret, ConfigError> {
    match setting {
        Some(secret) => {
            let bytes = hex::decode(secret.expose().trim())
                .map_err(|_| ConfigError::Invalid(format!("{variable} must be hex digits")))?;
            if bytes.len() < 32 {
                return Err(ConfigError::Invalid(format!(
                    "{variable} must be at least 32 bytes (64 hex digits)"
                )));
            }
            Ok(Secret::new(secret.expose().trim()))
        }
        None => key_file(path, variable),
    }
}

/// The key kept in `path`, made when missing.
fn key_file(path: &Path, variable: &str) -> Result<Secret, ConfigError> {
    let invalid = |e: std::io::Error| {
        ConfigError::Invalid(format!(
            "cannot keep a key in {}: {e} (or set {variable})",
            path.display()
        ))
    };
    match std::fs::read_to_string(path) {
        Ok(text) if text.trim().len() >= 64 && hex::decode(text.trim()).is_ok() => {
            return Ok(Secret::new(text.trim()));
        }
        Ok(_) => {
            return Err(ConfigError::Invalid(format!(
                "{} does not hold a key of 64 hex digits: remove it to have a new one made (what it protected is then lost), or set {variable}",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(invalid(e)),
    }
    let key = random_hex(32).map_err(|e| ConfigError::Invalid(format!("no randomness: {e}")))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(invalid)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(path).map_err(invalid)?, key.as_bytes())
        .map_err(invalid)?;
    Ok(Secret::new(key))
}

/// `bytes` random bytes from the OS, as hex.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buffer = vec![0u8; bytes];
    getrandom::fill(&mut buffer)?;
    Ok(hex::encode(buffer))
}
