//! Service configuration, from a TOML file and the environment (defaults that work on one machine).

use std::net::SocketAddr;

use crate::error::ConfigError;

/// A secret setting (a token): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

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
    /// `KILN_MAX_SESSIONS`: sessions running at once (default 8 for local sessions; no limit with a
    /// hub unless set). A launch beyond it is refused with a clear message.
    pub max_sessions: Option<usize>,
    /// `KILN_MAX_SESSIONS_PER_REPO`: sessions of one repository running at once (default: no limit).
    pub max_sessions_per_repo: Option<usize>,
    /// `KILN_HUB_URL`: the public address of the JupyterHub that runs sessions (with
    /// `KILN_HUB_API_TOKEN`); unset runs sessions on the service's own engine.
    pub hub_url: Option<String>,
    /// `KILN_HUB_API_URL`: where kiln reaches the hub's REST API (default `<KILN_HUB_URL>hub/api/`).
    pub hub_api_url: Option<String>,
    /// `KILN_HUB_API_TOKEN`: kiln's service token on the hub (never logged).
    pub hub_api_token: Option<Secret>,
    /// `KILN_LAUNCH_TIMEOUT`: seconds a session may take to start (default 600, as BinderHub).
    pub launch_timeout_seconds: u64,
    /// `KILN_HUB_TOKEN_SECONDS`: lifetime of the token a hub launch returns (default 86400).
    pub hub_token_seconds: u64,
    /// `KILN_HUB_REAP_SECONDS`: how often kiln looks for its hub servers that are gone, to delete
    /// their temporary users (default 60).
    pub hub_reap_seconds: u64,
    /// `KILN_JUPYTERHUB_VERSION`: the `jupyterhub` (for `jupyterhub-singleuser`) installed into images;
    /// its major version must match the hub's (default: kiln's pin).
    pub jupyterhub_version: String,
    /// `KILN_MAX_BUILDS`: builds running at once; more wait in a queue (default 2).
    pub max_builds: usize,
    /// `KILN_CA_BUNDLE` or `SSL_CERT_FILE`: CA bundle trusted by builds (never stored in images).
    pub ca_bundle: Option<std::path::PathBuf>,
    /// `KILN_STATE`: the SQLite database (default `$HOME/.local/share/kiln/state.db`).
    pub state: std::path::PathBuf,
    /// `KILN_RATE_LIMIT`: build requests per client address per hour (default 30; 0 = no limit).
    pub rate_limit: u32,
    /// `KILN_ALLOWED_SPECS`: when set, only `<provider>/<spec>` matching one of these comma-separated
    /// patterns (`*` matches anything) may be built.
    pub allowed_specs: Vec<String>,
    /// `KILN_BANNED_SPECS`: `<provider>/<spec>` patterns that are refused.
    pub banned_specs: Vec<String>,
    /// `KILN_BUILD_TOKEN`: when set, `build_only=true` needs `?build_token=` (or a bearer token) equal to it.
    pub build_token: Option<Secret>,
    /// `KILN_SESSION_IDLE_SECONDS`: local sessions with no connection and no kernel for this long are
    /// stopped (default 3600).
    pub session_idle_seconds: u64,
}

/// Whether `text` matches a pattern where `*` stands for any run of characters.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first)
        || !text[first.len()..].ends_with(last)
        || text.len() < first.len() + last.len()
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

/// Every setting, by its TOML key.
const KEYS: &[&str] = &[
    "listen",
    "image_prefix",
    "allowed_hosts",
    "max_sessions",
    "max_sessions_per_repo",
    "hub_url",
    "hub_api_url",
    "hub_api_token",
    "launch_timeout",
    "hub_token_seconds",
    "hub_reap_seconds",
    "jupyterhub_version",
    "max_builds",
    "ca_bundle",
    "state",
    "rate_limit",
    "allowed_specs",
    "banned_specs",
    "build_token",
    "session_idle_seconds",
];

/// A TOML file as `key -> value` strings (arrays joined with commas).
fn read_file(
    path: &std::path::Path,
) -> Result<std::collections::BTreeMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let in_file = |reason: String| ConfigError::File {
        path: path.to_path_buf(),
        reason,
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| in_file(e.message().to_string()))?;
    let mut out = std::collections::BTreeMap::new();
    for (key, value) in table {
        if !KEYS.contains(&key.as_str()) {
            return Err(in_file(format!(
                "unknown setting {key:?}; known: {}",
                KEYS.join(", ")
            )));
        }
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|i| {
                    i.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| in_file(format!("{key} must list strings")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(in_file(format!("{key} cannot be {}", other.type_str())));
            }
        };
        out.insert(key, text);
    }
    Ok(out)
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

fn list(value: Option<String>) -> Vec<String> {
    value
        .map(|v| {
            v.split(',')
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

impl Config {
    /// Why `<provider>/<spec>` may not be built, if it may not.
    pub fn spec_refused(&self, provider: &str, spec: &str) -> Option<String> {
        let full = format!("{provider}/{spec}");
        if let Some(p) = self.banned_specs.iter().find(|p| matches_pattern(p, &full)) {
            return Some(format!("{full} is banned on this service (pattern {p})"));
        }
        if !self.allowed_specs.is_empty()
            && !self.allowed_specs.iter().any(|p| matches_pattern(p, &full))
        {
            return Some(format!(
                "{full} is not among the repositories this service builds"
            ));
        }
        None
    }

    /// Settings from the environment only.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::load(None)
    }

    /// Settings from a TOML file (keys are the variable names without `KILN_`, in lowercase:
    /// `listen = "0.0.0.0:8585"`, `allowed_hosts = ["git.example.org"]`), then the environment,
    /// which wins.
    pub fn load(file: Option<&std::path::Path>) -> Result<Config, ConfigError> {
        let from_file = match file {
            Some(path) => read_file(path)?,
            None => std::collections::BTreeMap::new(),
        };
        let var = |k: &str| {
            std::env::var(k).ok().filter(|v| !v.is_empty()).or_else(|| {
                from_file
                    .get(&k.trim_start_matches("KILN_").to_lowercase())
                    .cloned()
            })
        };
        let not_a_number =
            |k: &str, v: &str| ConfigError::Invalid(format!("{k}={v:?} is not a number"));
        let number = |k: &str, default: usize| -> Result<usize, ConfigError> {
            var(k).map_or(Ok(default), |v| v.parse().map_err(|_| not_a_number(k, &v)))
        };
        let optional_number = |k: &str| -> Result<Option<usize>, ConfigError> {
            var(k)
                .map(|v| v.parse().map_err(|_| not_a_number(k, &v)))
                .transpose()
        };
        if var("KILN_HUB_URL").is_some() != var("KILN_HUB_API_TOKEN").is_some() {
            return Err(ConfigError::Invalid(
                "a hub needs both KILN_HUB_URL and KILN_HUB_API_TOKEN (hub_url and hub_api_token)"
                    .into(),
            ));
        }
        Ok(Config {
            listen: var("KILN_LISTEN")
                .unwrap_or_else(|| "127.0.0.1:8585".into())
                .parse()
                .map_err(|e| {
                    ConfigError::Invalid(format!("KILN_LISTEN is not address:port: {e}"))
                })?,
            image_prefix: var("KILN_IMAGE_PREFIX"),
            allowed_hosts: var("KILN_ALLOWED_HOSTS")
                .map(|v| {
                    v.split(',')
                        .map(|h| h.trim().to_string())
                        .filter(|h| !h.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            max_sessions: optional_number("KILN_MAX_SESSIONS")?,
            max_sessions_per_repo: optional_number("KILN_MAX_SESSIONS_PER_REPO")?,
            hub_url: var("KILN_HUB_URL").map(|u| with_slash(&u)),
            hub_api_url: var("KILN_HUB_API_URL").map(|u| with_slash(&u)),
            hub_api_token: var("KILN_HUB_API_TOKEN").map(Secret::new),
            launch_timeout_seconds: number("KILN_LAUNCH_TIMEOUT", 600)? as u64,
            hub_token_seconds: number("KILN_HUB_TOKEN_SECONDS", 86400)? as u64,
            hub_reap_seconds: number("KILN_HUB_REAP_SECONDS", 60)? as u64,
            jupyterhub_version: match var("KILN_JUPYTERHUB_VERSION") {
                Some(v) => kiln_buildpacks::options::check_jupyterhub_version(&v)
                    .map_err(|e| ConfigError::Invalid(format!("KILN_JUPYTERHUB_VERSION: {e}")))?,
                None => kiln_buildpacks::options::JUPYTERHUB_VERSION.to_string(),
            },
            max_builds: number("KILN_MAX_BUILDS", 2)?,
            ca_bundle: var("KILN_CA_BUNDLE")
                .or_else(|| var("SSL_CERT_FILE"))
                .map(Into::into),
            rate_limit: number("KILN_RATE_LIMIT", 30)? as u32,
            allowed_specs: list(var("KILN_ALLOWED_SPECS")),
            banned_specs: list(var("KILN_BANNED_SPECS")),
            build_token: var("KILN_BUILD_TOKEN").map(Secret::new),
            session_idle_seconds: number("KILN_SESSION_IDLE_SECONDS", 3600)? as u64,
            state: var("KILN_STATE").map(Into::into).unwrap_or_else(|| {
                std::path::Path::new(&var("HOME").unwrap_or_else(|| "/tmp".into()))
                    .join(".local/share/kiln/state.db")
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_then_environment() {
        let dir = std::env::temp_dir().join(format!("kiln-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("kiln.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9999\"\nallowed_hosts = [\"a.example\", \"b.example\"]\nmax_builds = 5\n").unwrap();
        let config = super::Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.allowed_hosts, ["a.example", "b.example"]);
        assert_eq!(config.max_builds, 5);
        std::fs::write(&file, "lisen = 1\n").unwrap();
        assert!(
            super::Config::load(Some(&file))
                .unwrap_err()
                .to_string()
                .contains("unknown setting \"lisen\"")
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn debug_never_shows_a_token() {
        let mut config = super::Config::load(None).unwrap();
        config.hub_api_token = Some(super::Secret::new("hub-token-s3cret"));
        config.build_token = Some(super::Secret::new("build-token-s3cret"));
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn patterns() {
        use super::matches_pattern as m;
        assert!(m("gh/evil/*", "gh/evil/repo/HEAD"));
        assert!(!m("gh/evil/*", "gh/good/repo/HEAD"));
        assert!(m("*", "anything"));
        assert!(m("git/*%2Fbad*", "git/https%3A%2F%2Fh%2Fbad/HEAD"));
        assert!(m("exact", "exact"));
        assert!(!m("a*b", "ba"));
    }
}
