//! `kiln context`: write the build context kiln would send to the engine, to look at or to build by hand.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use kiln_builder::context::{ContextOptions, build_context};
use kiln_buildpacks::RenderOptions;

use crate::commands::plan::PlanArgs;

#[derive(Args)]
pub struct ContextCommand {
    /// The repository folder.
    path: PathBuf,
    /// Where to write the context (an uncompressed tar).
    #[arg(long, short)]
    output: PathBuf,
    /// Render for the classic builder (no BuildKit mounts).
    #[arg(long)]
    classic: bool,
    /// Put this CA bundle in the context and trust it in the steps that download (BuildKit only).
    #[arg(long, env = "SSL_CERT_FILE", value_name = "FILE")]
    ca_bundle: Option<PathBuf>,
    /// The mtime of every entry (seconds since the epoch).
    #[arg(long, default_value_t = 0)]
    mtime: u64,
    #[command(flatten)]
    options: PlanArgs,
}

impl ContextCommand {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        let plan = kiln_buildpacks::plan(&self.path, &self.options.options())
            .with_context(|| format!("cannot plan {}", self.path.display()))?;
        let ca = match (&self.ca_bundle, self.classic) {
            (Some(path), false) => {
                Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
            }
            _ => None,
        };
        let dockerfile = kiln_buildpacks::dockerfile(
            &plan,
            &RenderOptions {
                buildkit: !self.classic,
                build_trust: ca.is_some(),
                ..RenderOptions::default()
            },
        )?;
        let context = build_context(
            &self.path,
            &plan,
            &ContextOptions {
                mtime: self.mtime,
                ca_bundle: ca.as_deref(),
                dockerfile: Some(&dockerfile),
            },
        )?;
        std::fs::copy(context.path(), &self.output)
            .with_context(|| format!("writing {}", self.output.display()))?;
        eprintln!(
            "kiln: wrote {} ({} files, {} KiB); its Dockerfile is {}",
            self.output.display(),
            context.files,
            context.size / 1024,
            context.dockerfile
        );
        Ok(ExitCode::SUCCESS)
    }
}
