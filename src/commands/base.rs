//! `kiln base bootstrap`.

use std::process::ExitCode;

use clap::Subcommand;
use kiln_builder::base::{BaseSpec, bootstrap};
use kiln_builder::{Engine, EngineSettings};

use crate::output::Output;

#[derive(Subcommand)]
pub enum BaseCommand {
    /// Make the default base image locally (debootstrap, then import) unless the engine has it.
    ///
    /// The image is trimmed of what sessions never read: documentation (but each package's
    /// copyright), manual pages, translations, and apt's package lists and caches; dpkg is set to
    /// leave them out of packages installed later too. An image made by an earlier kiln, or with
    /// the other choice of --keep-docs, is made again.
    Bootstrap {
        /// Name of the image to make.
        #[arg(long, env = "KILN_BASE_IMAGE", default_value = kiln_buildpacks::options::DEFAULT_BASE_IMAGE)]
        image: String,
        /// Debian suite.
        #[arg(long, default_value = "bookworm")]
        suite: String,
        /// Debian mirror.
        #[arg(long, default_value = "http://deb.debian.org/debian")]
        mirror: String,
        /// Keep documentation, manual pages and translations (in the base and in the packages
        /// installed on it).
        #[arg(long)]
        keep_docs: bool,
        /// Print events as JSON lines.
        #[arg(long)]
        json_logs: bool,
    },
}

impl BaseCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let BaseCommand::Bootstrap {
            image,
            suite,
            mirror,
            keep_docs,
            json_logs,
        } = self;
        let mut output = Output::new(json_logs);
        let engine = Engine::connect(EngineSettings::from_env()).await?;
        let result = bootstrap(
            &engine,
            &BaseSpec {
                image,
                suite,
                mirror,
                keep_docs,
            },
            &mut output,
        )
        .await;
        output.finish();
        result?;
        Ok(ExitCode::SUCCESS)
    }
}
