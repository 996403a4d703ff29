//! `kiln prewarm`: pull images onto an engine before they are needed.

use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use kiln_builder::{Engine, EngineSettings};

#[derive(Args)]
pub struct PrewarmCommand {
    /// The images to pull (by tag or digest).
    #[arg(required = true)]
    images: Vec<String>,
}

impl PrewarmCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        for image in &self.images {
            kiln_registry::name::validate(image)
                .map_err(|e| anyhow::anyhow!("{image:?} is not an image name: {e}"))?;
        }
        let engine = Engine::connect(EngineSettings::from_env()).await?;
        let mut failed = 0;
        for image in &self.images {
            let started = Instant::now();
            match engine.pull(image, None).await {
                Ok(()) => eprintln!(
                    "kiln: {image} is on the engine ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ),
                Err(e) => {
                    failed += 1;
                    eprintln!("kiln: {e}");
                }
            }
        }
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
