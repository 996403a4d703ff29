//! What an image holds, recorded from the built environment rather than from its inputs.
//!
//! The flow, as the builder uses it:
//!
//! 1. run [`collect::default_script`] in the built image (`/bin/sh -c SCRIPT`, one container run);
//! 2. [`parse_collected`] its standard output, with what the builder knows ([`ImageMeta`]: source,
//!    kiln version, base image, environment key), into a [`Contents`] record (schema
//!    `kiln.contents/v1`, canonical JSON, [`Contents::digest`]);
//! 3. store the record in the image ([`record::IMAGE_PATH`]) and beside it in the registry, with
//!    its CycloneDX 1.6 SBOM ([`to_cyclonedx`]), as OCI referrers (`kiln_registry::referrers`);
//! 4. later: [`table`] lists a record (`kiln sbom`), [`diff()`] compares two (`kiln diff`), and
//!    [`lock`] writes pin files from one (`kiln lock`).
//!
//! Nothing here touches the network, an engine or the clock.

pub mod collect;
pub mod cyclonedx;
pub mod diff;
pub mod error;
pub mod lock;
pub mod parse;
pub mod purl;
pub mod record;
pub mod table;

pub use cyclonedx::to_cyclonedx;
pub use diff::{ContentsDiff, diff};
pub use error::SbomError;
pub use lock::{apt_txt, conda_explicit, requirements_txt, runtime_txt};
pub use parse::parse_collected;
pub use record::{
    BaseImage, CondaEnvironment, CondaPackage, Contents, DebPackage, DirectUrl, Entry, ImageMeta,
    JuliaEnvironment, JuliaPackage, Manager, NpmPackage, Os, PythonEnvironment, PythonPackage,
    REnvironment, RPackage, RRemote, SCHEMA, Source,
};
pub use table::table;
