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
}

#[async_trait]
impl ContainerEngine for Engine {
    async fn build(
        &self,
        request: BuildRequest,
        sink: &mut dyn EventSink,
    ) -> Result<Built, BuildError> {
        kiln_builder::build(self, Arc::new(LibGit), request, sink).await
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
}
