//! What every handler shares, made once at start-up.

use std::sync::Arc;

use kiln_builder::PushSettings;
use kiln_builder::git::{FetchLimits, FetchSettings, OperatorCredentials};

use crate::admission::{RateLimiter, Streams};
use crate::builds::{BuildSettings, Builds};
use crate::config::Config;
use crate::engine::ContainerEngine;
use crate::error::{ConfigError, StartError};
use crate::launch::Launchers;
use crate::metrics::Metrics;
use crate::store::Store;

/// The service's shared state.
pub struct AppState {
    pub config: Arc<Config>,
    /// Hub tokens and logins.
    pub auth: crate::auth::Auth,
    /// Hub users' git credentials, sealed.
    pub credentials: crate::credentials::GitCredentials,
    pub engine: Arc<dyn ContainerEngine>,
    pub builds: Arc<Builds>,
    pub launchers: Launchers,
    /// Communities and their catalogues.
    pub catalogs: crate::catalog::Catalogs,
    pub limiter: RateLimiter,
    pub streams: Streams,
    pub metrics: Arc<Metrics>,
    /// The last health report and when it was made.
    pub health: tokio::sync::Mutex<Option<(std::time::Instant, serde_json::Value)>>,
}

impl AppState {
    /// The state of a service; an invalid `KILN_IMAGE_PREFIX` or hub setting is an error here, at
    /// start-up.
    pub fn new(
        config: Config,
        engine: Arc<dyn ContainerEngine>,
        store: Store,
    ) -> Result<Arc<AppState>, StartError> {
        AppState::with_clock(config, engine, store, crate::catalog::system_clock())
    }

    /// [`AppState::new`] with the catalogue's schedule driven by `clock` (tests).
    pub fn with_clock(
        config: Config,
        engine: Arc<dyn ContainerEngine>,
        store: Store,
        clock: crate::catalog::Clock,
    ) -> Result<Arc<AppState>, StartError> {
        let push = match &config.image_prefix {
            Some(prefix) => Some(
                PushSettings::new(prefix, None, true)
                    .map_err(|e| ConfigError::Invalid(format!("KILN_IMAGE_PREFIX: {e}")))?,
            ),
            None => None,
        };
        let catalogs = crate::catalog::Catalogs::new(
            config.communities_dir.clone(),
            &config.catalog_state,
            clock,
        )?;
        let config = Arc::new(config);
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        let settings = BuildSettings {
            max_builds: config.max_builds,
            max_queued: config.max_queued_builds,
            max_per_client: config.max_builds_per_client,
            max_age: std::time::Duration::from_secs(config.build_max_age_seconds),
            max_log_lines: config.max_log_lines,
            plan_options: config.plan_options.clone(),
            mirrors: config.mirrors.clone(),
            ca_bundle: config.ca_bundle.clone(),
            push,
            fetch: fetch_settings(&config)?,
            resources: kiln_builder::engine::Resources {
                memory: i64::try_from(config.build_memory_limit)
                    .ok()
                    .filter(|m| *m > 0),
                nano_cpus: Some((config.build_cpu_limit * 1e9) as i64).filter(|c| *c > 0),
                ..Default::default()
            },
        };
        let builds = Arc::new(Builds::new(
            engine.clone(),
            store.clone(),
            settings,
            metrics.clone(),
        )?);
        let credentials = crate::credentials::GitCredentials::new(
            &crate::auth::operator_key(
                config.credentials_key.as_ref(),
                "KILN_CREDENTIALS_KEY",
                &config.state.with_file_name("kiln_credentials_key"),
            )?,
            store.clone(),
        );
        let launchers = Launchers::new(config.clone(), store, engine.clone(), metrics.clone())?;
        let auth = crate::auth::Auth::new(&config, launchers.hub.clone())?;
        Ok(Arc::new(AppState {
            auth,
            credentials,
            config,
            engine,
            builds,
            launchers,
            catalogs,
            limiter: RateLimiter::default(),
            streams: Streams::default(),
            metrics,
            health: tokio::sync::Mutex::new(None),
        }))
    }
}

/// What the service's fetches may reach: no private network but the hosts the operator allows;
/// the operator's git credentials only for the hosts named for them.
fn fetch_settings(config: &Config) -> Result<FetchSettings, StartError> {
    let mut operator = OperatorCredentials::from_env(None)?;
    operator.hosts =
        kiln_net::AllowList::from_entries(config.git_credential_hosts.iter().map(String::as_str))
            .map_err(|e| ConfigError::Invalid(format!("KILN_GIT_CREDENTIAL_HOSTS: {e}")))?;
    Ok(FetchSettings {
        limits: FetchLimits {
            max_bytes: config.max_repo_bytes,
            max_files: config.max_repo_files,
            timeout: std::time::Duration::from_secs(config.fetch_timeout_seconds),
            ..FetchLimits::default()
        },
        policy: kiln_net::Policy::public().with_allowed(config.allowed_hosts.clone()),
        operator,
        records: config.records.clone(),
    })
}
