//! kiln's registry side: image names (BinderHub-compatible), the OCI registry client, and native
//! image assembly from an existing image plus layers. It knows nothing of git, buildpacks or HTTP
//! serving.

pub mod assemble;
pub mod client;
pub mod delete;
pub mod error;
pub mod layer;
pub mod name;
pub mod referrers;

pub use assemble::{Assembly, ConfigUpdate, NewLayer, assemble};
pub use client::{Credentials, Registry};
pub use error::RegistryError;
pub use layer::Layer;
pub use name::{environment_image_name, image_name};
pub use referrers::{Artifact, Attached, CYCLONEDX_JSON, Descriptor, Discovery};
