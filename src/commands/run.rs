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
    /// An environment variable of the session, KEY=VALUE (repeatable), as `docker run -e`: KEY
    /// alone passes this shell's value of KEY (nothing when it has none).
    #[arg(long = "env", short = 'e', value_name = "KEY[=VALUE]", value_parser = env_var)]
    env: Vec<(String, Option<String>)>,
    /// Publish a port of the session on 127.0.0.1, HOST_PORT:CONTAINER_PORT (repeatable). Not with
    /// --network host, where the session's ports are the host's already.
    #[arg(long, short = 'p', value_name = "HOST:CONTAINER", value_parser = port_pair)]
    publish: Vec<(u16, u16)>,
    /// Publish every port the image exposes (`EXPOSE`) on a free port of 127.0.0.1, and print
    /// where, as repo2docker's --publish-all. Not with --network host.
    #[arg(long, short = 'P')]
    publish_all: bool,
    /// Mount a host folder, HOST:CONTAINER[:ro] (repeatable). A relative HOST is taken from the
    /// current folder, a relative CONTAINER from the repository's folder in the image, as
    /// repo2docker does.
    #[arg(long, short = 'v', value_name = "HOST:CONTAINER[:ro]")]
    volume: Vec<String>,
    /// Mount the local folder being run over the repository's folder in the session, so that
    /// edits on either side show on the other (a local folder source only), as repo2docker's
    /// --editable.
    #[arg(long, short = 'E')]
    editable: bool,
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
        // Bad options fail before anything is built.
        if (!self.publish.is_empty() || self.publish_all) && engine.settings.host_network() {
            let option = if self.publish_all {
                "--publish-all"
            } else {
                "--publish"
            };
            anyhow::bail!(
                "{option} needs the engine's own network: with --network host the session's ports are this machine's already"
            );
        }
        let local = match kiln_builder::Source::parse(&self.build.source) {
            Ok(kiln_builder::Source::Local(path)) => Some(path),
            _ => None,
        };
        for volume in &self.volume {
            bind(volume, "/")?;
        }
        if self.editable && local.is_none() {
            anyhow::bail!(
                "--editable mounts a local folder: {} is not one (clone it, then run the folder)",
                self.build.source
            );
        }
        let built = match self.build.build(&engine, &mut output).await {
            Ok(built) => built,
            Err(_) => return Ok(ExitCode::FAILURE),
        };
        output.finish();
        let mut request = RunRequest::jupyter(&built.image)?;
        if !self.command.is_empty() {
            request.command = Some(self.command.clone());
        }
        // Where the repository is in the image: the plan says, for an image built now; else
        // the user's home, where kiln puts it.
        let repo_dir = built
            .plan
            .as_ref()
            .and_then(|p| match &p.build {
                kiln_buildpacks::Build::Layers(layers) => Some(layers.repository.dest.clone()),
                kiln_buildpacks::Build::Dockerfile(_) => None,
            })
            .or_else(|| self.build.plan.target_repo_dir.clone())
            .unwrap_or_else(|| format!("/home/{}", self.build.plan.user));
        request.env = self
            .env
            .iter()
            .filter_map(|(k, v)| {
                v.clone()
                    .or_else(|| std::env::var(k).ok())
                    .map(|v| format!("{k}={v}"))
            })
            .collect();
        request.publish = self
            .publish
            .iter()
            .map(|(host, inside)| (*inside, *host))
            .collect();
        if self.publish_all {
            let config = engine
                .inspect_image(&built.image)
                .await?
                .map(|info| info.config)
                .unwrap_or_default();
            for port in exposed_ports(&config) {
                if request.publish.iter().any(|(inside, _)| *inside == port) {
                    continue;
                }
                let host = kiln_builder::run::free_port()?;
                eprintln!("kiln: publishing the image's port {port} on 127.0.0.1:{host}");
                request.publish.push((port, host));
            }
        }
        request.binds = self
            .volume
            .iter()
            .map(|v| bind(v, &repo_dir))
            .collect::<anyhow::Result<_>>()?;
        if let (true, Some(path)) = (self.editable, &local) {
            let path = std::fs::canonicalize(path)?;
            request.binds.push(format!("{}:{repo_dir}", path.display()));
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

/// `KEY=VALUE`, or `KEY` alone (its value is taken from this process's environment).
fn env_var(s: &str) -> Result<(String, Option<String>), String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (s, None),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!("{s:?} is not KEY=VALUE or KEY"));
    }
    Ok((key.to_string(), value))
}

/// `HOST_PORT:CONTAINER_PORT`.
fn port_pair(s: &str) -> Result<(u16, u16), String> {
    let (host, inside) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST_PORT:CONTAINER_PORT"))?;
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{p:?} in {s:?} is not a port (1 to 65535)"))
    };
    Ok((port(host)?, port(inside)?))
}

/// A `--volume` as the engine takes it: the host side absolute (from the current folder), the
/// container side absolute (from the repository's folder).
fn bind(volume: &str, repo_dir: &str) -> anyhow::Result<String> {
    let mut parts = volume.splitn(3, ':');
    let (Some(host), Some(inside)) = (parts.next(), parts.next()) else {
        anyhow::bail!("--volume {volume:?} is not HOST:CONTAINER[:ro]");
    };
    let mode = parts.next();
    if host.is_empty() || inside.is_empty() || !matches!(mode, None | Some("ro") | Some("rw")) {
        anyhow::bail!("--volume {volume:?} is not HOST:CONTAINER[:ro]");
    }
    let host = std::path::absolute(host)?;
    if !host.exists() {
        anyhow::bail!("--volume {volume:?}: {} does not exist", host.display());
    }
    let inside = if inside.starts_with('/') {
        inside.to_string()
    } else {
        format!(
            "{}/{}",
            repo_dir.trim_end_matches('/'),
            inside.trim_start_matches("./")
        )
    };
    Ok(match mode {
        Some(mode) => format!("{}:{inside}:{mode}", host.display()),
        None => format!("{}:{inside}", host.display()),
    })
}

/// The TCP ports an image's configuration exposes (`ExposedPorts`: `"8080/tcp": {}`), in order.
fn exposed_ports(config: &serde_json::Value) -> Vec<u16> {
    let mut ports: Vec<u16> = config["ExposedPorts"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| {
            let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            (protocol == "tcp").then(|| port.parse().ok()).flatten()
        })
        .collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_volumes_are_read_as_repo2docker_reads_them() {
        assert_eq!(port_pair("8080:80"), Ok((8080, 80)));
        assert!(port_pair("8080").is_err());
        assert!(port_pair("0:80").is_err());
        assert!(port_pair("x:80").is_err());
        let here = std::env::current_dir().unwrap();
        assert_eq!(
            bind(".:data:ro", "/home/jovyan").unwrap(),
            format!("{}:/home/jovyan/data:ro", here.display())
        );
        assert_eq!(
            bind("/tmp:/mnt/tmp", "/home/jovyan").unwrap(),
            "/tmp:/mnt/tmp"
        );
        assert!(bind("/tmp", "/home/jovyan").is_err());
        assert!(bind("/tmp:/x:rwx", "/home/jovyan").is_err());
        assert!(bind("/no/such/folder:/x", "/home/jovyan").is_err());
    }

    #[test]
    fn exposed_tcp_ports_are_read_from_the_image_config() {
        let config =
            serde_json::json!({"ExposedPorts": {"8888/tcp": {}, "53/udp": {}, "80/tcp": {}}});
        assert_eq!(super::exposed_ports(&config), [80, 8888]);
        assert!(super::exposed_ports(&serde_json::json!({})).is_empty());
    }
}
