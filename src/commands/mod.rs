//! One module per subcommand.

pub mod base;
pub mod build;
pub mod catalog;
pub mod context;
pub mod lock;
pub mod plan;
pub mod prewarm;
pub mod run;
pub mod sbom;
pub mod serve;
