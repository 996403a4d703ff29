//! `kiln run`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use kiln_builder::run::{RunRequest, Session, wait_until_ready};

use crate::commands::build::BuildArgs;
use crate::output::Output;

#[derive(Args)]
pub struct RunCommand {
    #[command(flatten)]
    build: BuildArgs,
    /// Run this command in the image instead of JupyterLab (after `--`).
    #[arg(last = true)]
    command: Vec<String>,
}

impl RunCommand {
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut output = Output::new(self.build.json_logs);
        let Some(engine) = self.build.connect(&mut output).await else {
            return Ok(ExitCode::FAILURE);
        };
        let built = match self.build.build(&engine, &mut output).await {
            Ok(built) => built,
            Err(_) => return Ok(ExitCode::FAILURE),
        };
        output.finish();
        let mut request = RunRequest::jupyter(&built.image)?;
        if !self.command.is_empty() {
            request.command = Some(self.command.clone());
        }
        let session = Session::start(&engine, &request).await?;
        if request.command.is_none() {
            eprintln!("kiln: starting JupyterLab from {}", built.image);
            let url = format!("{}lab?token={}", request.url(), request.token);
            println!("{url}");
            let ready_request = request.clone();
            tokio::spawn(async move {
                if wait_until_ready(&ready_request, Duration::from_secs(120)).await {
                    eprintln!("kiln: ready at {url}");
                }
            });
        }
        let follow = session.follow(|bytes| {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
        });
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let code = tokio::select! {
            code = follow => code?,
            _ = tokio::signal::ctrl_c() => {
                eprintln!("kiln: stopping the session");
                130
            }
            _ = terminate.recv() => {
                eprintln!("kiln: stopping the session");
                143
            }
        };
        session.remove().await;
        Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
    }
}
