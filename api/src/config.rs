//! Service configuration, from a TOML file and the environment (the environment wins). Defaults
//! work on one machine; every limit a stranger could grow has one (README, Security).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use kiln_net::AllowList;

use crate::error::ConfigError;
use crate::spec::ProviderHosts;

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

/// A session quota for the specs a pattern matches (BinderHub's `spec_config`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecQuota {
    pub pattern: String,
    pub quota: usize,
}

/// A network clients are refused from (BinderHub's `ban_networks`), with the label shown to them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BannedNetwork {
    pub network: ipnet::IpNet,
    pub label: String,
}

/// Hub users' limits for the members of one hub group (the largest of a user's groups counts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLimits {
    pub group: String,
    /// Build requests per hour.
    pub rate: Option<u32>,
    /// Builds running or waiting.
    pub builds: Option<usize>,
    /// Sessions running.
    pub sessions: Option<usize>,
}

/// Which server of a logged-in hub user a launch starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchServer {
    /// A named server per repository (the hub must allow named servers).
    Named,
    /// The user's default server (a running one is stopped first).
    Default,
}

/// How the service runs.
#[derive(Clone, Debug)]
pub struct Config {
    // Where it serves and keeps its state.
    /// `KILN_LISTEN` (address:port), default 127.0.0.1:8585.
    pub listen: SocketAddr,
    /// `KILN_STATE`: the SQLite database (default `$HOME/.local/share/kiln/state.db`).
    pub state: PathBuf,
    /// `KILN_DEVELOPMENT`: allows `KILN_NETWORK=host`, which lets builds and sessions reach every
    /// loopback service of the machine (default off: `kiln serve` refuses host networking).
    pub development: bool,
    /// `KILN_BASE_URL`: the path every route is served under, as the hub's proxy forwards it
    /// (default `/`; `/services/kiln/` as a hub service).
    pub base_url: String,
    /// `KILN_PUBLIC_URL`: the address people reach kiln at, with scheme and base path
    /// (`https://hub.example.org/services/kiln/`), for links, badges and `binder_launch_host`.
    /// Unset: the request's `Host`, and behind trusted proxies their `X-Forwarded-Proto`/`-Host`.
    pub public_url: Option<url::Url>,

    // Images.
    /// `KILN_IMAGE_PREFIX`: push built images under this prefix; unset keeps them in the engine.
    pub image_prefix: Option<String>,
    /// `KILN_JUPYTERHUB_VERSION`: the `jupyterhub` (for `jupyterhub-singleuser`) installed into images;
    /// its major version must match the hub's (default: kiln's pin).
    pub jupyterhub_version: String,
    /// `KILN_CA_BUNDLE` or `SSL_CERT_FILE`: CA bundle trusted by builds (never stored in images).
    pub ca_bundle: Option<PathBuf>,

    // What builds may fetch.
    /// `KILN_ALLOWED_HOSTS`: hosts fetched although they are on loopback or private networks:
    /// `host` (its well-known ports), `host:port`, `host:*`.
    pub allowed_hosts: AllowList,
    /// `KILN_GIT_CREDENTIAL_HOSTS`: hosts the operator's git credentials (`KILN_GIT_USERNAME` and
    /// `KILN_GIT_PASSWORD`, git's credential helpers, the SSH agent) may be used for; none by default.
    pub git_credential_hosts: Vec<String>,
    /// `KILN_DOI_RESOLVER`, `KILN_INVENIO_HOSTS`, `KILN_FIGSHARE_HOSTS`, `KILN_FIGSHARE_API`,
    /// `KILN_DATAVERSE_HOSTS`, `KILN_HYDROSHARE_HOSTS`, `KILN_SWH_API`: where archived records are
    /// looked up.
    pub records: kiln_builder::records::RecordSettings,
    /// `KILN_MAX_REPO_BYTES`, `KILN_MAX_REPO_FILES`, `KILN_FETCH_TIMEOUT`: what one fetch (with its
    /// submodules) may bring, and for how long (defaults 1 GiB, 100,000 files, 300 s).
    pub max_repo_bytes: u64,
    pub max_repo_files: u64,
    pub fetch_timeout_seconds: u64,

    // Builds.
    /// `KILN_MAX_BUILDS`: builds running at once (default 2).
    pub max_builds: usize,
    /// `KILN_MAX_QUEUED_BUILDS`: builds waiting for a builder; more are refused (default 20).
    pub max_queued_builds: usize,
    /// `KILN_MAX_BUILDS_PER_CLIENT`: builds one client may have started that are running or
    /// waiting (default 3).
    pub max_builds_per_client: usize,
    /// `KILN_BUILD_MAX_AGE`: seconds a build may run before it is stopped (BinderHub's
    /// `build_max_age`; default 3600).
    pub build_max_age_seconds: u64,
    /// `KILN_BUILD_MEMORY_LIMIT`, `KILN_BUILD_CPU_LIMIT`: memory (bytes; `2G`) and CPUs of a build's
    /// steps, where the engine applies them (BinderHub's `build_memory_limit`; default 4G and 2).
    pub build_memory_limit: u64,
    pub build_cpu_limit: f64,
    /// `KILN_MAX_LOG_LINES`: events of a build kept (in memory and in the database); later lines
    /// are counted, not kept (default 20,000). Each line is cut at 4 KiB.
    pub max_log_lines: usize,
    /// What the service's images are made of (`kiln build`'s options): `KILN_BASE_IMAGE`,
    /// `KILN_BASE_PYTHON`, `KILN_USER`, `KILN_UID`, `KILN_JUPYTER_PACKAGES` (pip requirements,
    /// comma-separated, replacing kiln's pins), `KILN_CRAN_URL`, `KILN_JULIA_VERSIONS_URL`; conda's channels and mirrors
    /// come from `KILN_CONDA_MIRRORS` (read by the builds).
    pub plan_options: kiln_buildpacks::PlanOptions,
    /// `KILN_PYPI_MIRROR`, `KILN_NPM_REGISTRY`, `KILN_JULIA_PKG_SERVER`: package servers that
    /// builds use instead of the public ones (without credentials): a PEP 503 simple index for
    /// pip, uv and pipenv alike, an npm registry, a Julia package server.
    pub mirrors: kiln_buildpacks::options::PackageMirrors,

    // Sessions.
    /// `KILN_MAX_SESSIONS`: sessions running at once (default 8 for local sessions; no limit with a
    /// hub unless set). A launch beyond it is refused with a clear message.
    pub max_sessions: Option<usize>,
    /// `KILN_MAX_SESSIONS_PER_REPO`: sessions of one repository running at once (default: no limit).
    pub max_sessions_per_repo: Option<usize>,
    /// `KILN_LAUNCH_TIMEOUT`: seconds a session may take to start (default 600, as BinderHub).
    pub launch_timeout_seconds: u64,
    /// `KILN_SESSION_IDLE_SECONDS`: local sessions with no connection and no kernel for this long are
    /// stopped (default 3600).
    pub session_idle_seconds: u64,
    /// `KILN_SESSION_MAX_AGE`: seconds a local session may run at all (default 21600, 6 h).
    pub session_max_age_seconds: u64,
    /// `KILN_SESSION_MEMORY_LIMIT`, `KILN_SESSION_CPU_LIMIT`, `KILN_SESSION_PIDS_LIMIT`: a local
    /// session's memory (default 2G), CPUs (default 1) and processes (default 1024).
    pub session_memory_limit: u64,
    pub session_cpu_limit: f64,
    pub session_pids_limit: u64,

    // Callers.
    /// `KILN_RATE_LIMIT`: build requests per client per hour (default 30; 0 = no limit).
    pub rate_limit: u32,
    /// `KILN_MAX_STREAMS_PER_CLIENT`: event streams one client may hold open (default 20).
    pub max_streams_per_client: usize,
    /// `KILN_TRUSTED_PROXY_HOPS`: proxies in front of kiln whose `X-Forwarded-For` entries are
    /// trusted (default 0: the connection's address is the client).
    pub trusted_proxy_hops: usize,
    /// `KILN_BAN_NETWORKS`: networks whose clients get 403, `CIDR=label` separated by commas
    /// (BinderHub's `ban_networks`).
    pub ban_networks: Vec<BannedNetwork>,
    /// `KILN_ALLOWED_SPECS`: when set, only `<provider>/<spec>` matching one of these comma-separated
    /// patterns (`*` matches anything; compared with the decoded spec, ignoring case) may be built.
    pub allowed_specs: Vec<String>,
    /// `KILN_BANNED_SPECS`: `<provider>/<spec>` patterns that are refused.
    pub banned_specs: Vec<String>,
    /// `KILN_SPEC_CONFIG`: per-spec session quotas, `pattern=N` separated by commas (BinderHub's
    /// `spec_config` quotas): the pattern that matches a spec (the longest, when several do) sets its
    /// sessions-per-repository limit instead of `KILN_MAX_SESSIONS_PER_REPO` (0 closes launches of
    /// it; builds still run).
    pub spec_config: Vec<SpecQuota>,
    /// `KILN_GITHUB_HOST`, `KILN_GITLAB_HOST`: where `gh` and `gl` specs point (default github.com
    /// and gitlab.com): a host name (https) or a URL without a path. A host on a private network
    /// also needs `KILN_ALLOWED_HOSTS`.
    pub providers: ProviderHosts,
    /// `KILN_BUILD_TOKEN`: the operator's token. `build_only=true` needs it when it is set; it
    /// skips the rate limit, lists every image and cancels builds.
    pub build_token: Option<Secret>,

    // A JupyterHub.
    /// `KILN_HUB_URL`: the public address of the JupyterHub that runs sessions (with
    /// `KILN_HUB_API_TOKEN`); unset runs sessions on the service's own engine.
    pub hub_url: Option<String>,
    /// `KILN_HUB_API_URL`: where kiln reaches the hub's REST API (default `<KILN_HUB_URL>hub/api/`).
    pub hub_api_url: Option<String>,
    /// `KILN_HUB_API_TOKEN`: kiln's service token on the hub (never logged).
    pub hub_api_token: Option<Secret>,
    /// `KILN_HUB_TOKEN_SECONDS`: lifetime of the token a hub launch returns (default 86400).
    pub hub_token_seconds: u64,
    /// `KILN_HUB_REAP_SECONDS`: how often kiln looks for its hub servers that are gone, to delete
    /// their temporary users (default 60).
    pub hub_reap_seconds: u64,
    /// `KILN_HUB_SERVICE_NAME`: kiln's name among the hub's services (default `kiln`); a caller's hub
    /// token needs `access:services!service=<name>` (or `access:services`).
    pub hub_service_name: String,

    // Hub login: kiln as the hub's OAuth client.
    /// `KILN_HUB_AUTH`: people log in through the hub (OAuth) and are known by a session cookie;
    /// needs `KILN_HUB_URL` and `KILN_HUB_API_TOKEN` (default off).
    pub hub_auth: bool,
    /// `KILN_ALLOW_ANONYMOUS`: whether callers the hub does not know may build and launch
    /// (default: yes without hub login, no with it).
    pub allow_anonymous: bool,
    /// `KILN_BUILD_GROUPS`: hub groups whose members may build (default: every hub user).
    pub build_groups: Vec<String>,
    /// `KILN_GROUP_LIMITS`: per-group limits of hub users, `group=rate:N builds:N sessions:N`
    /// separated by commas (TOML: a table of such strings).
    pub group_limits: Vec<GroupLimits>,
    /// `KILN_MAX_SESSIONS_PER_USER`: servers one hub user may run through kiln (default 2).
    pub max_sessions_per_user: usize,
    /// `KILN_HUB_LAUNCH_SERVER`: `named` (a server per repository, default) or `default` (the
    /// user's default server) for launches of logged-in users.
    pub hub_launch_server: LaunchServer,
    /// `KILN_HUB_OAUTH_CLIENT_ID`: kiln's OAuth client on the hub (default `service-<name>`, the
    /// hub's default for a service).
    pub hub_oauth_client_id: String,
    /// `KILN_HUB_OAUTH_REDIRECT_URI`: where the hub sends people back (default
    /// `<KILN_BASE_URL>oauth_callback`, the hub's default for a service).
    pub hub_oauth_redirect_uri: String,
    /// `KILN_COOKIE_SECRET`: the key that signs session cookies (64 hex digits); unset, a key is
    /// made and kept in `kiln_cookie_secret` beside the state database.
    pub cookie_secret: Option<Secret>,
    /// `KILN_CREDENTIALS_KEY`: the key that seals hub users' git credentials at rest and names
    /// their private images (64 hex digits); unset, a key is made and kept in
    /// `kiln_credentials_key` beside the state database. Changing it makes the stored credentials
    /// unreadable (users store them again) and private images unfindable (they are built again).
    pub credentials_key: Option<Secret>,
    /// `KILN_LOGIN_SECONDS`: how long a login lasts (default 43200, 12 h).
    pub login_seconds: u64,
    /// The folder of community files (`<id>.toml`), watched for changes; none: no communities.
    pub communities_dir: Option<PathBuf>,
    /// How often the service looks for catalogue entries to check (never checked, or due by their
    /// schedule).
    pub catalog_tick_seconds: u64,
    /// Where the communities' catalogue builds put environment images, shared by every community
    /// whose prefix is in its registry; default `image_prefix`.
    pub catalog_environment_prefix: Option<String>,
    /// The catalogues' state (versions, checks, pins, leases); replicas of one service share it.
    pub catalog_state: PathBuf,
}

/// Every setting, by its TOML key.
const KEYS: &[&str] = &[
    "listen",
    "state",
    "development",
    "image_prefix",
    "jupyterhub_version",
    "ca_bundle",
    "allowed_hosts",
    "git_credential_hosts",
    "max_repo_bytes",
    "max_repo_files",
    "fetch_timeout",
    "max_builds",
    "max_queued_builds",
    "max_builds_per_client",
    "build_max_age",
    "build_memory_limit",
    "build_cpu_limit",
    "max_log_lines",
    "max_sessions",
    "max_sessions_per_repo",
    "launch_timeout",
    "session_idle_seconds",
    "session_max_age",
    "session_memory_limit",
    "session_cpu_limit",
    "session_pids_limit",
    "rate_limit",
    "max_streams_per_client",
    "trusted_proxy_hops",
    "ban_networks",
    "allowed_specs",
    "banned_specs",
    "spec_config",
    "github_host",
    "gitlab_host",
    "build_token",
    "hub_url",
    "hub_api_url",
    "hub_api_token",
    "hub_token_seconds",
    "hub_reap_seconds",
    "hub_service_name",
    "base_url",
    "public_url",
    "base_image",
    "base_python",
    "user",
    "uid",
    "jupyter_packages",
    "cran_url",
    "julia_versions_url",
    "doi_resolver",
    "invenio_hosts",
    "figshare_hosts",
    "figshare_api",
    "dataverse_hosts",
    "swh_api",
    "hydroshare_hosts",
    "pypi_mirror",
    "npm_registry",
    "julia_pkg_server",
    "hub_auth",
    "allow_anonymous",
    "build_groups",
    "group_limits",
    "max_sessions_per_user",
    "hub_launch_server",
    "hub_oauth_client_id",
    "hub_oauth_redirect_uri",
    "cookie_secret",
    "credentials_key",
    "login_seconds",
    "communities_dir",
    "catalog_tick_seconds",
    "catalog_environment_prefix",
    "catalog_state",
];

/// A TOML file as `key -> value` strings (arrays joined with commas, tables as `k=v` pairs).
fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
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
    let mut out = BTreeMap::new();
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
            toml::Value::Float(f) => f.to_string(),
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
            toml::Value::Table(pairs) => pairs
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(str::to_string)
                        .or_else(|| v.as_integer().map(|i| i.to_string()))
                        .map(|v| format!("{k}={v}"))
                        .ok_or_else(|| {
                            in_file(format!("{key} must map strings to strings or numbers"))
                        })
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

/// Settings read from the environment, then the file.
struct Reader {
    file: BTreeMap<String, String>,
}

impl Reader {
    fn get(&self, k: &str) -> Option<String> {
        std::env::var(k).ok().filter(|v| !v.is_empty()).or_else(|| {
            self.file
                .get(&k.trim_start_matches("KILN_").to_lowercase())
                .cloned()
        })
    }

    fn invalid(k: &str, v: &str, what: &str) -> ConfigError {
        ConfigError::Invalid(format!("{k}={v:?} is not {what}"))
    }

    fn number<T: std::str::FromStr>(&self, k: &str, default: T) -> Result<T, ConfigError> {
        self.get(k).map_or(Ok(default), |v| {
            v.parse().map_err(|_| Self::invalid(k, &v, "a number"))
        })
    }

    fn optional_number(&self, k: &str) -> Result<Option<usize>, ConfigError> {
        self.get(k)
            .map(|v| v.parse().map_err(|_| Self::invalid(k, &v, "a number")))
            .transpose()
    }

    fn bytes(&self, k: &str, default: u64) -> Result<u64, ConfigError> {
        self.get(k).map_or(Ok(default), |v| {
            parse_bytes(&v).ok_or_else(|| Self::invalid(k, &v, "a size such as 512M or 2G"))
        })
    }

    fn flag(&self, k: &str) -> Result<bool, ConfigError> {
        match self.get(k).as_deref() {
            None | Some("0" | "false" | "no") => Ok(false),
            Some("1" | "true" | "yes") => Ok(true),
            Some(v) => Err(Self::invalid(k, v, "1 or 0")),
        }
    }

    fn list(&self, k: &str) -> Vec<String> {
        self.get(k)
            .map(|v| {
                v.split(',')
                    .map(|p| p.trim().to_string())
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A size: a number of bytes with an optional `K`, `M`, `G` or `T` (powers of 1024, as BinderHub's
/// byte specifications), e.g. `512M`, `2G`, `1.5G`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&text[..i], text[i..].trim_end_matches(['i', 'B', 'b'])),
        None => (text, ""),
    };
    let scale: u64 = match unit.to_ascii_uppercase().as_str() {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return None,
    };
    let value: f64 = number.trim().parse().ok()?;
    (value >= 0.0 && value.is_finite()).then_some((value * scale as f64) as u64)
}

fn with_slash(url: &str) -> String {
    if url.ends_with('/') {
        url.to_string()
    } else {
        format!("{url}/")
    }
}

fn ban_networks(entries: Vec<String>) -> Result<Vec<BannedNetwork>, ConfigError> {
    entries
        .into_iter()
        .map(|entry| {
            let (cidr, label) = entry.split_once('=').unwrap_or((entry.as_str(), "banned"));
            let network = cidr.trim().parse().map_err(|e| {
                ConfigError::Invalid(format!(
                    "KILN_BAN_NETWORKS: {cidr:?} is not a CIDR network: {e}"
                ))
            })?;
            Ok(BannedNetwork {
                network,
                label: label.trim().to_string(),
            })
        })
        .collect()
}

fn spec_config(entries: Vec<String>) -> Result<Vec<SpecQuota>, ConfigError> {
    entries
        .into_iter()
        .map(|entry| {
            let invalid = || {
                ConfigError::Invalid(format!(
                    "KILN_SPEC_CONFIG: {entry:?} is not pattern=N (a spec pattern and a number of sessions)"
                ))
            };
            let (pattern, quota) = entry.rsplit_once('=').ok_or_else(invalid)?;
            Ok(SpecQuota {
                pattern: pattern.trim().to_string(),
                quota: quota.trim().parse().map_err(|_| invalid())?,
            })
        })
        .collect()
}

/// A base path: starts and ends with `/`.
fn base_path(path: &str) -> Result<String, ConfigError> {
    let trimmed = path.trim().trim_matches('/');
    if trimmed.contains(['?', '#', ' ']) || trimmed.contains("//") || trimmed.contains("..") {
        return Err(ConfigError::Invalid(format!(
            "KILN_BASE_URL={path:?} is not a path such as /services/kiln/"
        )));
    }
    Ok(match trimmed {
        "" => "/".to_string(),
        t => format!("/{t}/"),
    })
}

fn group_limits(entries: Vec<String>) -> Result<Vec<GroupLimits>, ConfigError> {
    entries
        .into_iter()
        .map(|entry| {
            let invalid = |why: &str| {
                ConfigError::Invalid(format!(
                    "KILN_GROUP_LIMITS: {entry:?} {why} (expected group=rate:N builds:N sessions:N)"
                ))
            };
            let (group, limits) = entry.split_once('=').ok_or_else(|| invalid("has no ="))?;
            let mut out = GroupLimits {
                group: group.trim().to_string(),
                rate: None,
                builds: None,
                sessions: None,
            };
            for part in limits.split_whitespace() {
                let (name, n) = part
                    .split_once(':')
                    .ok_or_else(|| invalid("is not name:N"))?;
                let n: usize = n
                    .parse()
                    .map_err(|_| invalid("has a limit that is not a number"))?;
                match name {
                    "rate" => {
                        out.rate = Some(u32::try_from(n).map_err(|_| invalid("is too large"))?)
                    }
                    "builds" => out.builds = Some(n),
                    "sessions" => out.sessions = Some(n),
                    _ => return Err(invalid("names an unknown limit")),
                }
            }
            Ok(out)
        })
        .collect()
}

fn plan_options(
    r: &Reader,
    jupyterhub_version: &str,
) -> Result<kiln_buildpacks::PlanOptions, ConfigError> {
    use kiln_buildpacks::options as o;
    let mut options = kiln_buildpacks::PlanOptions {
        base_image: r
            .get("KILN_BASE_IMAGE")
            .unwrap_or_else(|| o::DEFAULT_BASE_IMAGE.into()),
        base_python: r
            .get("KILN_BASE_PYTHON")
            .unwrap_or_else(|| o::BASE_PYTHON.into()),
        user: r.get("KILN_USER").unwrap_or_else(|| "jovyan".into()),
        uid: r.number("KILN_UID", 1000)?,
        cran_url: r
            .get("KILN_CRAN_URL")
            .unwrap_or_else(|| o::DEFAULT_CRAN_URL.into()),
        julia_versions_url: r
            .get("KILN_JULIA_VERSIONS_URL")
            .unwrap_or_else(|| o::DEFAULT_JULIA_VERSIONS_URL.into()),
        ..kiln_buildpacks::PlanOptions::default()
    };
    let jupyter = r.list("KILN_JUPYTER_PACKAGES");
    if !jupyter.is_empty() {
        options.jupyter_packages = jupyter;
    }
    if options.uid == 0 {
        return Err(ConfigError::Invalid(
            "KILN_UID=0: sessions must not run as root; choose a uid such as 1000".into(),
        ));
    }
    Ok(options.with_jupyterhub(jupyterhub_version))
}

fn provider_host(r: &Reader, k: &str, default: String) -> Result<String, ConfigError> {
    match r.get(k) {
        None => Ok(default),
        Some(v) => {
            ProviderHosts::base_url(&v).map_err(|e| ConfigError::Invalid(format!("{k}: {e}")))
        }
    }
}

impl Config {
    /// Whether hub users' groups matter (`KILN_BUILD_GROUPS` or `KILN_GROUP_LIMITS` is set): kiln then
    /// reads them when it learns who a token or a login belongs to.
    pub fn wants_groups(&self) -> bool {
        !self.build_groups.is_empty() || !self.group_limits.is_empty()
    }

    /// Settings from the environment only.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::load(None)
    }

    /// Settings from a TOML file (keys are the variable names without `KILN_`, in lowercase:
    /// `listen = "0.0.0.0:8585"`, `allowed_hosts = ["git.example.org"]`), then the environment,
    /// which wins.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let r = Reader {
            file: match file {
                Some(path) => read_file(path)?,
                None => BTreeMap::new(),
            },
        };
        if r.get("KILN_HUB_URL").is_some() != r.get("KILN_HUB_API_TOKEN").is_some() {
            return Err(ConfigError::Invalid(
                "a hub needs both KILN_HUB_URL and KILN_HUB_API_TOKEN (hub_url and hub_api_token)"
                    .into(),
            ));
        }
        let hub_auth = r.flag("KILN_HUB_AUTH")?;
        if hub_auth && r.get("KILN_HUB_URL").is_none() {
            return Err(ConfigError::Invalid(
                "KILN_HUB_AUTH needs a hub: set KILN_HUB_URL and KILN_HUB_API_TOKEN".into(),
            ));
        }
        let base_url = base_path(&r.get("KILN_BASE_URL").unwrap_or_else(|| "/".into()))?;
        let public_url = match r.get("KILN_PUBLIC_URL") {
            None => None,
            Some(v) => {
                let url = url::Url::parse(&with_slash(&v))
                    .ok()
                    .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
                    .ok_or_else(|| Reader::invalid("KILN_PUBLIC_URL", &v, "an http(s) URL"))?;
                if !url.path().ends_with(&base_url) {
                    return Err(ConfigError::Invalid(format!(
                        "KILN_PUBLIC_URL={v:?} must end with the base path {base_url} (KILN_BASE_URL)"
                    )));
                }
                Some(url)
            }
        };
        let service_name = r
            .get("KILN_HUB_SERVICE_NAME")
            .unwrap_or_else(|| "kiln".into());
        let jupyterhub_version = match r.get("KILN_JUPYTERHUB_VERSION") {
            Some(v) => kiln_buildpacks::options::check_jupyterhub_version(&v)
                .map_err(|e| ConfigError::Invalid(format!("KILN_JUPYTERHUB_VERSION: {e}")))?,
            None => kiln_buildpacks::options::JUPYTERHUB_VERSION.to_string(),
        };
        let allowed_hosts =
            AllowList::from_entries(r.list("KILN_ALLOWED_HOSTS").iter().map(String::as_str))
                .map_err(|e| ConfigError::Invalid(format!("KILN_ALLOWED_HOSTS: {e}")))?;
        let state: PathBuf = r.get("KILN_STATE").map(Into::into).unwrap_or_else(|| {
            Path::new(&r.get("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".local/share/kiln/state.db")
        });
        Ok(Config {
            listen: r
                .get("KILN_LISTEN")
                .unwrap_or_else(|| "127.0.0.1:8585".into())
                .parse()
                .map_err(|e| {
                    ConfigError::Invalid(format!("KILN_LISTEN is not address:port: {e}"))
                })?,
            state: state.clone(),
            development: r.flag("KILN_DEVELOPMENT")?,
            image_prefix: r.get("KILN_IMAGE_PREFIX"),
            plan_options: plan_options(&r, &jupyterhub_version)?,
            mirrors: kiln_buildpacks::options::PackageMirrors::new(
                r.get("KILN_PYPI_MIRROR").as_deref(),
                r.get("KILN_NPM_REGISTRY").as_deref(),
                r.get("KILN_JULIA_PKG_SERVER").as_deref(),
            )
            .map_err(ConfigError::Invalid)?,
            jupyterhub_version,
            ca_bundle: r
                .get("KILN_CA_BUNDLE")
                .or_else(|| r.get("SSL_CERT_FILE"))
                .map(Into::into),
            allowed_hosts,
            git_credential_hosts: r.list("KILN_GIT_CREDENTIAL_HOSTS"),
            records: kiln_builder::records::RecordSettings::from_lookup(|k| r.get(k)),
            max_repo_bytes: r.bytes("KILN_MAX_REPO_BYTES", 1 << 30)?,
            max_repo_files: r.number("KILN_MAX_REPO_FILES", 100_000)?,
            fetch_timeout_seconds: r.number("KILN_FETCH_TIMEOUT", 300)?,
            max_builds: r.number("KILN_MAX_BUILDS", 2)?,
            max_queued_builds: r.number("KILN_MAX_QUEUED_BUILDS", 20)?,
            max_builds_per_client: r.number("KILN_MAX_BUILDS_PER_CLIENT", 3)?,
            build_max_age_seconds: r.number("KILN_BUILD_MAX_AGE", 3600)?,
            build_memory_limit: r.bytes("KILN_BUILD_MEMORY_LIMIT", 4 << 30)?,
            build_cpu_limit: r.number("KILN_BUILD_CPU_LIMIT", 2.0)?,
            max_log_lines: r.number("KILN_MAX_LOG_LINES", 20_000)?,
            max_sessions: r.optional_number("KILN_MAX_SESSIONS")?,
            max_sessions_per_repo: r.optional_number("KILN_MAX_SESSIONS_PER_REPO")?,
            launch_timeout_seconds: r.number("KILN_LAUNCH_TIMEOUT", 600)?,
            session_idle_seconds: r.number("KILN_SESSION_IDLE_SECONDS", 3600)?,
            session_max_age_seconds: r.number("KILN_SESSION_MAX_AGE", 21_600)?,
            session_memory_limit: r.bytes("KILN_SESSION_MEMORY_LIMIT", 2 << 30)?,
            session_cpu_limit: r.number("KILN_SESSION_CPU_LIMIT", 1.0)?,
            session_pids_limit: r.number("KILN_SESSION_PIDS_LIMIT", 1024)?,
            rate_limit: r.number("KILN_RATE_LIMIT", 30)?,
            max_streams_per_client: r.number("KILN_MAX_STREAMS_PER_CLIENT", 20)?,
            trusted_proxy_hops: r.number("KILN_TRUSTED_PROXY_HOPS", 0)?,
            ban_networks: ban_networks(r.list("KILN_BAN_NETWORKS"))?,
            allowed_specs: r.list("KILN_ALLOWED_SPECS"),
            banned_specs: r.list("KILN_BANNED_SPECS"),
            spec_config: spec_config(r.list("KILN_SPEC_CONFIG"))?,
            providers: ProviderHosts {
                github: provider_host(&r, "KILN_GITHUB_HOST", ProviderHosts::default().github)?,
                gitlab: provider_host(&r, "KILN_GITLAB_HOST", ProviderHosts::default().gitlab)?,
            },
            build_token: r.get("KILN_BUILD_TOKEN").map(Secret::new),
            hub_url: r.get("KILN_HUB_URL").map(|u| with_slash(&u)),
            hub_api_url: r.get("KILN_HUB_API_URL").map(|u| with_slash(&u)),
            hub_api_token: r.get("KILN_HUB_API_TOKEN").map(Secret::new),
            hub_token_seconds: r.number("KILN_HUB_TOKEN_SECONDS", 86_400)?,
            hub_reap_seconds: r.number("KILN_HUB_REAP_SECONDS", 60)?,
            hub_auth,
            allow_anonymous: match r.get("KILN_ALLOW_ANONYMOUS") {
                None => !hub_auth,
                Some(_) => r.flag("KILN_ALLOW_ANONYMOUS")?,
            },
            build_groups: r.list("KILN_BUILD_GROUPS"),
            group_limits: group_limits(r.list("KILN_GROUP_LIMITS"))?,
            max_sessions_per_user: r.number("KILN_MAX_SESSIONS_PER_USER", 2)?,
            hub_launch_server: match r.get("KILN_HUB_LAUNCH_SERVER").as_deref() {
                None | Some("named") => LaunchServer::Named,
                Some("default") => LaunchServer::Default,
                Some(v) => {
                    return Err(Reader::invalid(
                        "KILN_HUB_LAUNCH_SERVER",
                        v,
                        "named or default",
                    ));
                }
            },
            hub_oauth_client_id: r
                .get("KILN_HUB_OAUTH_CLIENT_ID")
                .unwrap_or_else(|| format!("service-{service_name}")),
            hub_oauth_redirect_uri: r
                .get("KILN_HUB_OAUTH_REDIRECT_URI")
                .unwrap_or_else(|| format!("{base_url}oauth_callback")),
            cookie_secret: r.get("KILN_COOKIE_SECRET").map(Secret::new),
            credentials_key: r.get("KILN_CREDENTIALS_KEY").map(Secret::new),
            login_seconds: r.number("KILN_LOGIN_SECONDS", 43_200)?,
            communities_dir: r.get("KILN_COMMUNITIES_DIR").map(Into::into),
            catalog_tick_seconds: r.number("KILN_CATALOG_TICK_SECONDS", 60)?,
            catalog_environment_prefix: r.get("KILN_CATALOG_ENVIRONMENT_PREFIX"),
            catalog_state: match r.get("KILN_CATALOG_STATE") {
                Some(path) => path.into(),
                None => state.with_file_name("catalog.db"),
            },
            hub_service_name: service_name,
            base_url,
            public_url,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("kiln.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9999\"\nallowed_hosts = [\"a.example\", \"b.example:8080\"]\nmax_builds = 5\n\
             build_memory_limit = \"512M\"\nban_networks = { \"10.0.0.0/8\" = \"internal\" }\n",
        )
        .unwrap();
        let config = super::Config::load(Some(&file)).unwrap();
        assert_eq!(config.listen.port(), 9999);
        assert_eq!(config.allowed_hosts.entries().len(), 2);
        assert_eq!(config.max_builds, 5);
        assert_eq!(config.build_memory_limit, 512 << 20);
        assert_eq!(config.ban_networks[0].label, "internal");
        std::fs::write(
            &file,
            "spec_config = { \"gh/course/*\" = 100, \"gh/closed/*\" = \"0\" }\ngitlab_host = \"gitlab.example.org\"\n",
        )
        .unwrap();
        let config = super::Config::load(Some(&file)).unwrap();
        assert_eq!(
            config.spec_config,
            vec![
                super::SpecQuota {
                    pattern: "gh/closed/*".into(),
                    quota: 0
                },
                super::SpecQuota {
                    pattern: "gh/course/*".into(),
                    quota: 100
                },
            ]
        );
        assert_eq!(config.providers.gitlab, "https://gitlab.example.org");
        assert_eq!(config.providers.github, "https://github.com");
        std::fs::write(&file, "spec_config = { \"gh/x/*\" = \"many\" }\n").unwrap();
        assert!(
            super::Config::load(Some(&file))
                .unwrap_err()
                .to_string()
                .contains("KILN_SPEC_CONFIG")
        );
        std::fs::write(&file, "lisen = 1\n").unwrap();
        assert!(
            super::Config::load(Some(&file))
                .unwrap_err()
                .to_string()
                .contains("unknown setting \"lisen\"")
        );
        std::fs::write(
            &file,
            "pypi_mirror = \"https://ci:s3cret@mirror.example/simple/\"\n",
        )
        .unwrap();
        let refused = super::Config::load(Some(&file)).unwrap_err().to_string();
        assert!(
            refused.contains("KILN_PYPI_MIRROR") && !refused.contains("s3cret"),
            "{refused}"
        );
        std::fs::write(&file, "pypi_mirror = \"http://127.0.0.1:3141/simple/\"\n").unwrap();
        assert_eq!(
            super::Config::load(Some(&file))
                .unwrap()
                .mirrors
                .pypi
                .as_deref(),
            Some("http://127.0.0.1:3141/simple/")
        );
        std::fs::write(&file, "allowed_hosts = [\"bad host:x\"]\n").unwrap();
        assert!(
            super::Config::load(Some(&file))
                .unwrap_err()
                .to_string()
                .contains("KILN_ALLOWED_HOSTS")
        );
    }

    #[test]
    fn sizes() {
        use super::parse_bytes as p;
        assert_eq!(p("2G"), Some(2 << 30));
        assert_eq!(p("512M"), Some(512 << 20));
        assert_eq!(p("1.5GiB"), Some(3 << 29));
        assert_eq!(p("1024"), Some(1024));
        assert_eq!(p("lots"), None);
        assert_eq!(p("-1G"), None);
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
}
