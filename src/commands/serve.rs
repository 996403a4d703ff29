//! `kiln serve`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kiln_api::{AppState, Config};
use kiln_builder::{Engine, EngineSettings};

/// Settings come from the environment (see `kiln serve --help`).
#[derive(Args)]
pub struct ServeCommand {
    /// A TOML file of settings (keys: the variable names without KILN_, in lowercase, such as
    /// listen = "0.0.0.0:8585"); the environment wins over it.
    #[arg(long, env = "KILN_CONFIG")]
    config: Option<std::path::PathBuf>,
}

impl ServeCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let config = Config::load(self.config.as_deref())?;
        let engine = Engine::connect(EngineSettings::from_env()).await?;
        if engine.settings.host_network() && !config.development {
            anyhow::bail!(
                "KILN_NETWORK=host lets every build and session reach this machine's loopback services \
                 (the registry, the hub's API, kiln itself): a public service must run them on an \
                 isolated network. On a development machine, set KILN_DEVELOPMENT=1 to allow it"
            );
        }
        let listen = config.listen;
        let store = kiln_api::store::Store::open(&config.state)?;
        let state = AppState::new(config, Arc::new(engine), store)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (KILN_LISTEN)"))?;
        eprintln!("kiln: serving on http://{listen}/");
        if let Some(check) = state.launchers.hub_check().await {
            if check["ok"] == true {
                eprintln!(
                    "kiln: launching on the JupyterHub at {} (version {})",
                    check["url"].as_str().unwrap_or_default(),
                    check["version"].as_str().unwrap_or_default()
                );
            } else {
                eprintln!(
                    "kiln: warning: the JupyterHub at {} is not ready for launches: {}",
                    check["url"].as_str().unwrap_or_default(),
                    check["message"].as_str().unwrap_or_default()
                );
            }
        }
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            eprintln!("kiln: stopping; removing the sessions this service started");
        };
        kiln_api::run(listener, state, shutdown).await?;
        Ok(ExitCode::SUCCESS)
    }
}
