//! The engine behind a trait: everything the service asks of the container engine (builds,
//! sessions, health). [`kiln_builder::Engine`] is the real one; handler tests give the service a
//! scripted engine, so HTTP behaviour is tested in-process without Docker.

use std::sync::Arc;

use async_trait::async_trait;
use kiln_builder::git::LibGit;
use kiln_builder::run::{RunRequest, Session};
use kiln_builder::{BuildError, BuildRequest, Built, Engine, EventSink};

#[async_trait]
pub trait ContainerEngine: Send + Sync {
    /// Build (or reuse) the image of a request, reporting to `sink` (ending in `built` or
    /// `failed`).
    async fn build(
        &self,
        request: BuildRequest,
        sink: &mut dyn EventSink,
    ) -> Result<Built, BuildError>;

    /// Whether the engine answers.
    async fn ping(&self) -> bool;

    /// The engine's name and version, for `/health` and `/versions`.
    fn version(&self) -> String;

    /// Start a session (JupyterLab on the request's port with its token); returns its id.
    async fn start_session(&self, request: &RunRequest) -> Result<String, BuildError>;

    /// Stop and remove a session.
    async fn remove_session(&self, id: &str);

    /// Pull an image onto the engine (a pre-warm before a class), with the registry credentials
    /// given for the image's own registry.
    async fn pull(
        &self,
        image: &str,
        credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<(), BuildError>;

    /// What an image holds: its record, from the engine's image or beside it in `registry`.
    async fn contents(
        &self,
        image: &str,
        registry: Option<&kiln_registry::Registry>,
    ) -> Result<kiln_builder::contents::Found, BuildError>;

    /// The engine's id of an image (the digest of its configuration), `None` when it has none.
    async fn image_id(&self, image: &str) -> Result<Option<String>, BuildError>;

    /// Remove an image from the engine (a check's build, once compared); a failure is only logged.
    async fn remove_image(&self, image: &str);

    /// Solve the request's conda environment again (fetching its source, building nothing) and
    /// compare with the lock `image` holds (a catalogue entry's `rebuild.lock_change`).
    async fn relock(
        &self,
        request: BuildRequest,
        image: &str,
    ) -> Result<kiln_builder::build::Relocked, BuildError> {
        let _ = (request, image);
        Err(BuildError::Invalid(
            "this engine cannot re-solve environments".into(),
        ))
    }

    /// Run `argv` in a new container of `image`, without a network and held to `resources` (a
    /// catalogue version's smoke test); an image the engine lacks is pulled first with
    /// `credentials`.
    async fn run_command(
        &self,
        image: &str,
        argv: &[String],
        timeout: std::time::Duration,
        resources: &kiln_builder::engine::Resources,
        credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<kiln_builder::engine::CommandOutput, BuildError>;
}

/// The most a smoke test's output may be, per stream.
pub const MAX_COMMAND_OUTPUT: usize = 1 << 20;

#[async_trait]
impl ContainerEngine for Engine {
    async fn build(
        &self,
        request: BuildRequest,
        sink: &mut dyn EventSink,
    ) -> Result<Built, BuildError> {
        kiln_builder::build(self, Arc::new(LibGit), request, sink).await
    }

    async fn relock(
        &self,
        request: BuildRequest,
        image: &str,
    ) -> Result<kiln_builder::build::Relocked, BuildError> {
        let mut quiet = |_: kiln_builder::Event| {};
        kiln_builder::build::relock(self, Arc::new(LibGit), &request, image, &mut quiet).await
    }

    async fn ping(&self) -> bool {
        Engine::ping(self).await
    }

    fn version(&self) -> String {
        self.version.clone()
    }

    async fn start_session(&self, request: &RunRequest) -> Result<String, BuildError> {
        Ok(Session::start(self, request).await?.id)
    }

    async fn remove_session(&self, id: &str) {
        self.remove_container(id).await;
    }

    async fn pull(
        &self,
        image: &str,
        credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<(), BuildError> {
        Engine::pull(self, image, credentials).await
    }

    async fn contents(
        &self,
        image: &str,
        registry: Option<&kiln_registry::Registry>,
    ) -> Result<kiln_builder::contents::Found, BuildError> {
        use kiln_builder::contents::{Lookup, find};
        find(Some(self), registry, image, Lookup::Auto).await
    }

    async fn image_id(&self, image: &str) -> Result<Option<String>, BuildError> {
        Ok(self.inspect_image(image).await?.map(|i| i.id))
    }

    async fn remove_image(&self, image: &str) {
        if let Err(e) = Engine::remove_image(self, image).await {
            tracing::warn!("cannot remove {image}: {e}");
        }
    }

    async fn run_command(
        &self,
        image: &str,
        argv: &[String],
        timeout: std::time::Duration,
        resources: &kiln_builder::engine::Resources,
        credentials: Option<kiln_builder::engine::DockerCredentials>,
    ) -> Result<kiln_builder::engine::CommandOutput, BuildError> {
        if self.inspect_image(image).await?.is_none() {
            Engine::pull(self, image, credentials).await?;
        }
        Engine::run_command(self, image, argv, timeout, MAX_COMMAND_OUTPUT, resources).await
    }
}
