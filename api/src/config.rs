//! Service configuration, from the environment (defaults that work on one machine).

use std::net::SocketAddr;

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Config {
    /// `KILN_LISTEN` (address:port), default 127.0.0.1:8585.
    pub listen: SocketAddr,
    /// `KILN_IMAGE_PREFIX`: push built images under this prefix; unset keeps them in the engine.
    pub image_prefix: Option<String>,
    /// `KILN_ALLOWED_HOSTS` (comma-separated): repository hosts allowed although they resolve to
    /// loopback or private addresses.
    pub allowed_hosts: Vec<String>,
    /// `KILN_MAX_SESSIONS`: local sessions running at once (default 8).
    pub max_sessions: usize,
    /// `KILN_MAX_BUILDS`: builds running at once; more wait in a queue (default 2).
    pub max_builds: usize,
    /// `KILN_CA_BUNDLE` or `SSL_CERT_FILE`: CA bundle trusted by builds (never stored in images).
    pub ca_bundle: Option<std::path::PathBuf>,
    /// `KILN_STATE`: the SQLite database (default `$HOME/.local/share/kiln/state.db`).
    pub state: std::path::PathBuf,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let number = |k: &str, default: usize| -> Result<usize, String> {
            var(k).map_or(Ok(default), |v| {
                v.parse().map_err(|_| format!("{k}={v:?} is not a number"))
            })
        };
        Ok(Config {
            listen: var("KILN_LISTEN")
                .unwrap_or_else(|| "127.0.0.1:8585".into())
                .parse()
                .map_err(|e| format!("KILN_LISTEN is not address:port: {e}"))?,
            image_prefix: var("KILN_IMAGE_PREFIX"),
            allowed_hosts: var("KILN_ALLOWED_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_sessions: number("KILN_MAX_SESSIONS", 8)?,
            max_builds: number("KILN_MAX_BUILDS", 2)?,
            ca_bundle: var("KILN_CA_BUNDLE")
                .or_else(|| var("SSL_CERT_FILE"))
                .map(Into::into),
            state: var("KILN_STATE").map(Into::into).unwrap_or_else(|| {
                std::path::Path::new(&var("HOME").unwrap_or_else(|| "/tmp".into()))
                    .join(".local/share/kiln/state.db")
            }),
        })
    }
}
