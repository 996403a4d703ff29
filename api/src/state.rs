//! What every handler shares, made once at start-up.

use std::sync::Arc;

use kiln_builder::PushSettings;

use crate::admission::RateLimiter;
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
    pub engine: Arc<dyn ContainerEngine>,
    pub builds: Arc<Builds>,
    pub launchers: Launchers,
    pub limiter: RateLimiter,
    pub metrics: Arc<Metrics>,
}

impl AppState {
    /// The state of a service; an invalid `KILN_IMAGE_PREFIX` or hub setting is an error here, at
    /// start-up.
    pub fn new(
        config: Config,
        engine: Arc<dyn ContainerEngine>,
        store: Store,
    ) -> Result<Arc<AppState>, StartError> {
        let push = match &config.image_prefix {
            Some(prefix) => Some(
                PushSettings::new(prefix, None, true)
                    .map_err(|e| ConfigError::Invalid(format!("KILN_IMAGE_PREFIX: {e}")))?,
            ),
            None => None,
        };
        let config = Arc::new(config);
        let store = Arc::new(store);
        let metrics = Arc::new(Metrics::default());
        let settings = BuildSettings {
            max_builds: config.max_builds,
            plan_options: kiln_buildpacks::PlanOptions::default()
                .with_jupyterhub(&config.jupyterhub_version),
            ca_bundle: config.ca_bundle.clone(),
            push,
        };
        let builds = Arc::new(Builds::new(
            engine.clone(),
            store.clone(),
            settings,
            metrics.clone(),
        ));
        let launchers = Launchers::new(config.clone(), store, engine.clone(), metrics.clone())?;
        Ok(Arc::new(AppState {
            config,
            engine,
            builds,
            launchers,
            limiter: RateLimiter::default(),
            metrics,
        }))
    }
}
