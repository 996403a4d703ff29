//! Image builds on the engine and their log. BuildKit when the engine offers it (package caches as
//! cache mounts, the CA bundle mounted only while a step downloads); the classic builder otherwise.

use std::collections::{HashMap, HashSet, VecDeque};

use bollard::models::{BuildInfo, BuildInfoAux};
use bollard::query_parameters::{BuildImageOptions, BuilderVersion};
use futures_util::StreamExt;

use super::{Engine, names_missing_network, short};
use crate::error::BuildError;
use crate::events::{Event, EventSink, Phase};

/// One image build on the engine.
#[derive(Clone, Default)]
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
    /// Memory and CPUs of the build's steps. The classic builder applies them; BuildKit takes no
    /// per-build limits through the engine's API (bound the engine's BuildKit instead: README).
    pub resources: super::Resources,
}

impl std::fmt::Debug for EngineBuild {
    /// Everything but the credentials, of which only the registry hosts are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuild")
            .field("tag", &self.tag)
            .field("dockerfile", &self.dockerfile)
            .field("labels", &self.labels)
            .field("build_args", &self.build_args.keys().collect::<Vec<_>>())
            .field("no_cache", &self.no_cache)
            .field("target", &self.target)
            .field("resources", &self.resources)
            .field(
                "credentials",
                &self.credentials.as_ref().map(|c| {
                    c.keys()
                        .map(|h| format!("{h}: <redacted>"))
                        .collect::<Vec<_>>()
                }),
            )
            .finish()
    }
}

impl Engine {
    /// Build `context` (a tar file, streamed to the engine) and tag the result; events carry the
    /// engine's log lines.
    ///
    /// A build whose stream breaks off (the connection to the engine, not a step, failed) and
    /// that left no image is run once more: its finished steps come from the engine's cache.
    pub async fn build(
        &self,
        context: &std::path::Path,
        build: &EngineBuild,
        sink: &mut dyn EventSink,
    ) -> Result<(), BuildError> {
        match self.build_once(context, build, sink).await {
            Err(Attempt::BrokenStream(error)) => {
                sink.emit(Event::new(
                    Phase::Building,
                    format!(
                        "Warning: the engine's build stream broke off ({error}); building once more"
                    ),
                ));
                self.build_once(context, build, sink)
                    .await
                    .map_err(Attempt::into_error)
            }
            other => other.map_err(Attempt::into_error),
        }
    }

    async fn build_once(
        &self,
        context: &std::path::Path,
        build: &EngineBuild,
        sink: &mut dyn EventSink,
    ) -> Result<(), Attempt> {
        let file = tokio::fs::File::open(context).await.map_err(|e| {
            BuildError::io(
                format!("reading the build context {}", context.display()),
                e,
            )
        })?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 1 << 20);
        let session = format!("kiln-{}", crate::random::hex(16)?);
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
            // The API takes 32-bit numbers: a limit above 2 GiB is 2 GiB for the classic builder.
            memory: build
                .resources
                .memory
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            memswap: build
                .resources
                .memory
                .map(|m| i32::try_from(m).unwrap_or(i32::MAX)),
            cpuperiod: build.resources.nano_cpus.map(|_| 100_000),
            cpuquota: build
                .resources
                .nano_cpus
                .map(|n| i32::try_from(n / 10_000).unwrap_or(i32::MAX)),
            ..Default::default()
        };
        let mut stream = self.docker.build_image(
            options,
            build.credentials.clone(),
            Some(bollard::body_try_stream(body)),
        );
        let mut log = BuildLog::default();
        let mut broken = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => log.take(info, sink),
                // The stream itself broke off (its last line cut short, the connection lost):
                // whether the build ended is told by its image, below.
                Err(e @ bollard::errors::Error::IOError { .. }) => {
                    broken = Some(short(&e.to_string()));
                    break;
                }
                Err(e) => {
                    let message = e.to_string();
                    if self.settings.network.is_none() && names_missing_network(&message) {
                        return Err(BuildError::NoDefaultNetwork.into());
                    }
                    return Err(BuildError::BuildFailed {
                        message: short(&message),
                        tail: log.tail(),
                    }
                    .into());
                }
            }
        }
        if let Some(error) = log.error.take() {
            return Err(BuildError::BuildFailed {
                message: error,
                tail: log.tail(),
            }
            .into());
        }
        // The engine tags only a finished image; check that it is there.
        match (self.image_labels(&build.tag).await?, broken) {
            (Some(_), _) => Ok(()),
            (None, Some(message)) => Err(Attempt::BrokenStream(BuildError::BuildFailed {
                message,
                tail: log.tail(),
            })),
            (None, None) => Err(BuildError::BuildFailed {
                message: "the engine ended the build without an image (was it stopped?)".into(),
                tail: log.tail(),
            }
            .into()),
        }
    }
}

/// How one build attempt failed.
enum Attempt {
    /// The build failed (a step, the engine's answer).
    Failed(BuildError),
    /// The stream broke off and no image was made: worth one more try.
    BrokenStream(BuildError),
}

impl Attempt {
    fn into_error(self) -> BuildError {
        match self {
            Attempt::Failed(e) | Attempt::BrokenStream(e) => e,
        }
    }
}

impl From<BuildError> for Attempt {
    fn from(e: BuildError) -> Attempt {
        Attempt::Failed(e)
    }
}

/// Turns the engine's build stream (classic text, or BuildKit status) into events, keeping a tail.
#[derive(Default)]
struct BuildLog {
    tail: VecDeque<String>,
    started: HashSet<String>,
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
