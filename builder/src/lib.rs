//! kiln's builder: from a source to an image on a container engine.
//!
//! The flow of one build, in the order of the files: [`source`] (what was asked for) ->
//! [`git`] (resolve the ref without cloning, then fetch exactly that commit) -> the plan
//! (`kiln-buildpacks`) -> [`context`] (a deterministic tar) -> [`engine`] (build on Docker or Podman)
//! -> [`events`] all along. [`build`] ties them together in that order (its module map lists the
//! steps); [`conda`] installs conda environments natively; [`julia`] fetches the list of Julia releases; [`run`] starts a built image; [`base`]
//! makes the default base image when it cannot be pulled; [`random`] issues tokens.

pub mod base;
pub mod build;
pub mod conda;
pub mod contents;
pub mod context;
pub mod engine;
pub mod error;
pub mod events;
pub mod git;
pub mod julia;
pub mod random;
pub mod records;
pub mod run;
pub mod source;

pub use build::{BuildRequest, Built, Outcome, PushSettings, build};
pub use engine::{Engine, EngineSettings};
pub use error::BuildError;
pub use events::{Event, EventSink, Phase, Ready};
pub use source::Source;
