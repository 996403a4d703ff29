//! The container engine, through bollard: `DOCKER_HOST` or the default socket; Docker or Podman.
//! Every engine call of kiln goes through [`Engine`]'s methods; the bollard client stays private.
//!
//! - [`build`]: image builds (BuildKit when the engine offers it, the classic builder otherwise) and
//!   their log;
//! - [`images`]: inspecting, pulling, pushing, loading and removing images, and reading a file of one;
//! - [`containers`]: creating, starting, following and removing containers (sessions).

mod build;
mod containers;
mod images;

use std::time::Duration;

use bollard::Docker;

use crate::error::BuildError;

/// Registry credentials as the engine takes them.
pub use bollard::auth::DockerCredentials;
pub use build::EngineBuild;
pub use containers::{CommandOutput, ContainerSpec, Resources};
pub use images::ImageInfo;

/// How to reach and use the engine.
#[derive(Clone, Debug, Default)]
pub struct EngineSettings {
    /// Network of builds and sessions (`KILN_NETWORK`); `None` is the engine's default network.
    pub network: Option<String>,
    /// Force BuildKit on or off (`KILN_BUILDKIT`); `None` detects it.
    pub buildkit: Option<bool>,
}

impl EngineSettings {
    /// Settings from `KILN_NETWORK` and `KILN_BUILDKIT`.
    pub fn from_env() -> Self {
        EngineSettings {
            network: std::env::var("KILN_NETWORK").ok().filter(|n| !n.is_empty()),
            buildkit: std::env::var("KILN_BUILDKIT")
                .ok()
                .map(|v| !matches!(v.as_str(), "0" | "false" | "no")),
        }
    }

    /// Whether builds and sessions share the host's network.
    pub fn host_network(&self) -> bool {
        self.network.as_deref() == Some("host")
    }
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    docker: Docker,
    /// Where it answers (`DOCKER_HOST` or the default socket).
    pub endpoint: String,
    /// Whether builds use BuildKit.
    pub buildkit: bool,
    pub settings: EngineSettings,
    /// `Docker 28.2.2` or `Podman 5.x`.
    pub version: String,
}

impl Engine {
    pub async fn connect(settings: EngineSettings) -> Result<Engine, BuildError> {
        let endpoint =
            std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".into());
        let no_engine = |reason: String| BuildError::NoEngine {
            endpoint: endpoint.clone(),
            reason,
        };
        let docker = Docker::connect_with_defaults().map_err(|e| no_engine(e.to_string()))?;
        let version = tokio::time::timeout(Duration::from_secs(10), docker.version())
            .await
            .map_err(|_| no_engine("no answer within 10 s".into()))?
            .map_err(|e| no_engine(e.to_string()))?;
        let podman = version
            .components
            .iter()
            .flatten()
            .any(|c| c.name.to_lowercase().contains("podman"));
        let api: Vec<u32> = version
            .api_version
            .as_deref()
            .unwrap_or("0.0")
            .split('.')
            .map(|p| p.parse().unwrap_or(0))
            .collect();
        let detected = !podman && api >= vec![1, 39];
        Ok(Engine {
            buildkit: settings.buildkit.unwrap_or(detected),
            docker,
            endpoint,
            settings,
            version: format!(
                "{} {}",
                if podman { "Podman" } else { "Docker" },
                version.version.unwrap_or_default()
            ),
        })
    }

    /// Whether the engine answers.
    pub async fn ping(&self) -> bool {
        self.docker.ping().await.is_ok()
    }

    /// Fail with a clear message when no network is set and the engine has no default network
    /// (an engine started without a bridge, as on machines where bridges are not allowed).
    pub async fn check_network(&self) -> Result<(), BuildError> {
        if self.settings.network.is_some() {
            return Ok(());
        }
        let networks = self
            .docker
            .list_networks(None::<bollard::query_parameters::ListNetworksOptions>)
            .await
            .map_err(|e| BuildError::Engine(e.to_string()))?;
        let has_default = networks
            .iter()
            .any(|n| matches!(n.name.as_deref(), Some("bridge") | Some("podman")));
        if has_default {
            Ok(())
        } else {
            Err(BuildError::NoDefaultNetwork)
        }
    }

    /// An engine error, or [`BuildError::NoDefaultNetwork`] when the engine says the default network
    /// is missing.
    fn error(&self, e: bollard::errors::Error) -> BuildError {
        let message = e.to_string();
        if self.settings.network.is_none() && names_missing_network(&message) {
            BuildError::NoDefaultNetwork
        } else {
            BuildError::Engine(message)
        }
    }
}

/// Whether an engine message says that the default network does not exist.
fn names_missing_network(message: &str) -> bool {
    message.contains("network bridge not found") || message.contains("No such network")
}

/// A message cut to 2000 characters (engine errors can carry whole logs).
fn short(message: &str) -> String {
    let message = message.trim();
    if message.len() > 2000 {
        let mut end = 2000;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &message[..end])
    } else {
        message.to_string()
    }
}
