//! kiln's conda side: solve an environment with the rattler crates, record the result as a lock,
//! install the lock into a staging root at the image's prefix without a container, and pack it as
//! deterministic image layers.
//!
//! The flow, in the order of the files: [`settings`] (channels and their mirrors, the package and
//! repodata caches, the target's virtual packages) -> [`solve`] (environment specs -> [`Lock`]) ->
//! [`lock`] (the lock as an `@EXPLICIT` list with sha256, also read from a repository's
//! `@EXPLICIT` list or `conda-lock.yml`) -> [`install`] (download with sha256 checks, link into the
//! staging root with the final prefix, strip host paths) -> [`pack`] (a few tar layers).
//!
//! It knows nothing of images, registries or engines: it returns tar bytes.

pub mod error;
pub mod install;
pub mod lock;
pub mod pack;
pub mod settings;
pub mod solve;

pub use error::CondaError;
pub use install::{Installed, install};
pub use lock::{LOCK_FILE, Lock, LockedPackage};
pub use pack::{PackedLayer, pack};
pub use settings::CondaSettings;
pub use solve::{Request, solve};

/// Where the environment lives in the image, as in repo2docker.
pub const ENV_PREFIX: &str = "/srv/conda/envs/notebook";
