//! Where built images are pushed, and the engine's credentials for that registry.

use std::sync::Arc;

use kiln_registry::Registry;

use crate::error::BuildError;

/// Where built images are pushed.
#[derive(Clone)]
pub struct PushSettings {
    /// Prepended to image names (BinderHub's `image_prefix`), e.g. `registry.example/binder-`.
    pub prefix: String,
    pub registry: Arc<Registry>,
    /// Assemble images natively when the environment is in the registry (default true).
    pub native: bool,
    /// Where environment images go, when not under `prefix`: a prefix of the same registry that
    /// several prefixes share (communities' catalogues), so that one environment is built once.
    pub environment_prefix: Option<String>,
}

impl std::fmt::Debug for PushSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushSettings")
            .field("prefix", &self.prefix)
            .field("registry", &self.registry.host)
            .field("credentials", &self.registry.credentials)
            .field("native", &self.native)
            .field("environment_prefix", &self.environment_prefix)
            .finish()
    }
}

impl PushSettings {
    /// Push under `prefix` (its registry is the part before the first `/`), with `credentials` or
    /// those of the environment (`KILN_REGISTRY_*`, `~/.docker/config.json`).
    pub fn new(
        prefix: &str,
        credentials: Option<kiln_registry::Credentials>,
        native: bool,
    ) -> Result<PushSettings, BuildError> {
        // Any valid image name under the prefix names the registry.
        let registry = Registry::for_reference(&format!("{prefix}probe:latest"), credentials)?;
        Ok(PushSettings {
            prefix: prefix.to_string(),
            registry: Arc::new(registry),
            native,
            environment_prefix: None,
        })
    }

    /// Put environment images under `prefix` instead, which must be in the same registry (native
    /// assembly mounts the environment's blobs across repositories of one registry).
    pub fn with_environment_prefix(mut self, prefix: &str) -> Result<PushSettings, BuildError> {
        let other = kiln_registry::name::validate(&format!("{prefix}probe:latest"))?;
        let host = other.resolve_registry();
        if host != self.registry.host {
            return Err(BuildError::Invalid(format!(
                "the environment prefix {prefix:?} is in the registry {host}, not in {} where the images go",
                self.registry.host
            )));
        }
        self.environment_prefix = Some(prefix.to_string());
        Ok(self)
    }

    /// Where environment images go.
    pub fn environment_prefix(&self) -> &str {
        self.environment_prefix.as_deref().unwrap_or(&self.prefix)
    }

    /// The engine's credentials for the registry (for `docker push` and pulls of its images).
    pub fn docker_credentials(&self) -> Option<bollard::auth::DockerCredentials> {
        let registry = &self.registry;
        match &registry.credentials {
            Some(kiln_registry::Credentials::Basic { username, password }) => {
                Some(bollard::auth::DockerCredentials {
                    username: Some(username.clone()),
                    password: Some(password.clone()),
                    serveraddress: Some(registry.host.clone()),
                    ..Default::default()
                })
            }
            Some(kiln_registry::Credentials::Bearer(token)) => {
                Some(bollard::auth::DockerCredentials {
                    registrytoken: Some(token.clone()),
                    serveraddress: Some(registry.host.clone()),
                    ..Default::default()
                })
            }
            None => None,
        }
    }
}
