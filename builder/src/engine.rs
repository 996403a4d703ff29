//! The container engine, through bollard: `DOCKER_HOST` or the default socket; Docker or Podman.
//!
//! Builds use BuildKit when the engine offers it (package caches as cache mounts, the CA bundle
//! mounted only while a step downloads) and the classic builder otherwise.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bollard::Docker;
use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion, RemoveImageOptions};
use futures_util::StreamExt;

use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

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
}

/// A connected engine.
#[derive(Clone)]
pub struct Engine {
    pub docker: Docker,
    pub endpoint: String,
    pub buildkit: bool,
    pub settings: EngineSettings,
    pub version: String,
}

/// One image build on the engine.
#[derive(Clone, Debug, Default)]
pub struct EngineBuild {
    pub tag: String,
    pub dockerfile: String,
    pub labels: HashMap<String, String>,
    pub build_args: HashMap<String, String>,
    pub no_cache: bool,
    /// Build only this stage.
    pub target: Option<String>,
    /// Registry credentials for pulling base images, by registry host.
    pub credentials: Option<HashMap<String, bollard::auth::DockerCredentials>>,
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

    /// The labels of a local image, or `None` when the engine has no such image.
    pub async fn image_labels(
        &self,
        name: &str,
    ) -> Result<Option<HashMap<String, String>>, BuildError> {
        match self.docker.inspect_image(name).await {
            Ok(image) => Ok(Some(
                image.config.and_then(|c| c.labels).unwrap_or_default(),
            )),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(BuildError::Engine(e.to_string())),
        }
    }

    pub async fn remove_image(&self, name: &str) -> Result<(), BuildError> {
        self.docker
            .remove_image(
                name,
                Some(RemoveImageOptions {
                    force: true,
                    ..Default::default()
                }),
                None,
            )
            .await
            .map(|_| ())
            .map_err(|e| BuildError::Engine(e.to_string()))
    }

    /// Build `context` (a tar) and tag the result; events carry the engine's log lines.
    pub async fn build(
        &self,
        context: Vec<u8>,
        build: &EngineBuild,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let session = format!("kiln-{}", random_hex());
        let options = BuildImageOptions {
            dockerfile: build.dockerfile.clone(),
            t: Some(build.tag.clone()),
            rm: true,
            forcerm: true,
            nocache: build.no_cache,
            labels: Some(build.labels.clone()),
            buildargs: Some(build.build_args.clone()),
            networkmode: self.settings.network.clone(),
            version: if self.buildkit {
                BuilderVersion::BuilderBuildKit
            } else {
                BuilderVersion::BuilderV1
            },
            session: self.buildkit.then_some(session),
            target: build.target.clone().unwrap_or_default(),
            ..Default::default()
        };
        let mut stream = self.docker.build_image(
            options,
            build.credentials.clone(),
            Some(bollard::body_full(context.into())),
        );
        let mut log = BuildLog::default();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => log.take(info, sink),
                Err(e) => {
                    let message = e.to_string();
                    if self.settings.network.is_none()
                        && (message.contains("network bridge not found")
                            || message.contains("No such network"))
                    {
                        return Err(BuildError::NoDefaultNetwork);
                    }
                    return Err(BuildError::BuildFailed {
                        message: short(&message),
                        tail: log.tail(),
                    });
                }
            }
        }
        if let Some(error) = log.error.take() {
            return Err(BuildError::BuildFailed {
                message: error,
                tail: log.tail(),
            });
        }
        // The engine tags only a finished image; check that it is there.
        match self.image_labels(&build.tag).await? {
            Some(_) => Ok(()),
            None => Err(BuildError::BuildFailed {
                message: "the engine ended the build without an image (was it stopped?)".into(),
                tail: log.tail(),
            }),
        }
    }
}

impl Engine {
    /// Push a local image to its registry, with `pushing` events per layer.
    pub async fn push(
        &self,
        name: &str,
        credentials: Option<bollard::auth::DockerCredentials>,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        let (repo, tag) = match name.rsplit_once(':') {
            Some((r, t)) if !t.contains('/') => (r, t),
            _ => (name, "latest"),
        };
        let options = bollard::query_parameters::PushImageOptions {
            tag: Some(tag.to_string()),
            ..Default::default()
        };
        let mut stream = self.docker.push_image(repo, Some(options), credentials);
        let mut layers = 0;
        while let Some(item) = stream.next().await {
            let info =
                item.map_err(|e| BuildError::Push(format!("{name}: {}", short(&e.to_string()))))?;
            if let Some(error) = info.error_detail.and_then(|d| d.message) {
                return Err(BuildError::Push(format!("{name}: {}", short(&error))));
            }
            match info.status.as_deref() {
                Some("Pushed") | Some("Layer already exists") => {
                    layers += 1;
                    sink.emit(Event::new(
                        Phase::Pushing,
                        format!(
                            "{name}: layer {layers} {}",
                            info.status.unwrap_or_default().to_lowercase()
                        ),
                    ));
                }
                Some(s) if s.starts_with("Mounted from") || s.contains("digest:") => {
                    sink.emit(Event::new(Phase::Pushing, format!("{name}: {s}")));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Turns the engine's build stream (classic text, or BuildKit status) into events, keeping a tail.
#[derive(Default)]
struct BuildLog {
    tail: VecDeque<String>,
    started: std::collections::HashSet<String>,
    /// Output of each BuildKit step that has not ended with a newline yet.
    partial: HashMap<String, String>,
    error: Option<String>,
}

impl BuildLog {
    fn line(&mut self, line: &str, sink: &mut dyn EventSink) {
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if self.tail.len() == 30 {
            self.tail.pop_front();
        }
        self.tail.push_back(line.to_string());
        sink.emit(Event::new(Phase::Building, line));
    }

    fn take(&mut self, info: BuildInfo, sink: &mut dyn EventSink) {
        if let Some(text) = &info.stream {
            for line in text.lines() {
                self.line(line, sink);
            }
        }
        if let Some(message) = info.error_detail.and_then(|d| d.message) {
            self.error = Some(short(&message));
        }
        if let Some(BuildInfoAux::BuildKit(status)) = info.aux {
            for vertex in &status.vertexes {
                if vertex.started.is_some() && self.started.insert(vertex.digest.clone()) {
                    let cached = if vertex.cached { " (cached)" } else { "" };
                    self.line(&format!("{}{cached}", vertex.name), sink);
                }
                if !vertex.error.is_empty() {
                    self.error = Some(format!("{}: {}", vertex.name, short(&vertex.error)));
                }
            }
            for log in &status.logs {
                let mut buffer = self.partial.remove(&log.vertex).unwrap_or_default();
                buffer.push_str(&String::from_utf8_lossy(&log.msg));
                while let Some(end) = buffer.find('\n') {
                    let line: String = buffer.drain(..=end).collect();
                    self.line(&line, sink);
                }
                if !buffer.is_empty() {
                    self.partial.insert(log.vertex.clone(), buffer);
                }
            }
            for vertex in status.vertexes.iter().filter(|v| v.completed.is_some()) {
                if let Some(rest) = self.partial.remove(&vertex.digest) {
                    self.line(&rest, sink);
                }
            }
        }
    }

    fn tail(&self) -> String {
        if self.tail.is_empty() {
            return String::new();
        }
        let lines: Vec<&str> = self
            .tail
            .iter()
            .rev()
            .take(15)
            .rev()
            .map(String::as_str)
            .collect();
        format!("\nlast lines of the build log:\n  {}", lines.join("\n  "))
    }
}

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

/// 16 random hex characters (session ids, tokens).
pub fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_err()
    {
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        use sha2::Digest;
        bytes.copy_from_slice(&sha2::Sha256::digest(seed.as_bytes())[..16]);
    }
    hex::encode(bytes)
}
