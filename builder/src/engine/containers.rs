//! Containers: sessions and commands run from a built image.

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use super::Engine;
use crate::error::BuildError;

/// Limits a container runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPU limit in billionths of a CPU (Docker's `NanoCpus`).
    pub nano_cpus: Option<i64>,
    /// Most processes (fork bombs stop here).
    pub pids: Option<i64>,
    /// Drop every Linux capability and forbid gaining new privileges (setuid, file capabilities).
    pub locked_down: bool,
}

/// A container's host settings on `network`, held to `r`.
fn limited(network: Option<String>, r: &Resources) -> HostConfig {
    let mut host_config = HostConfig {
        network_mode: network,
        memory: r.memory,
        memory_swap: r.memory,
        nano_cpus: r.nano_cpus,
        pids_limit: r.pids,
        // An init process reaps orphans: without one, the zombies of a fork bomb keep the
        // container's process slots forever.
        init: Some(true),
        ..Default::default()
    };
    if r.locked_down {
        host_config.cap_drop = Some(vec!["ALL".into()]);
        host_config.security_opt = Some(vec!["no-new-privileges:true".into()]);
    }
    host_config
}

/// One container to create.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    /// (container port, host port): published on 127.0.0.1 (not with host networking).
    pub publish: Vec<(u16, u16)>,
    /// Bind mounts, `HOST:CONTAINER[:ro]` as the engine takes them.
    pub binds: Vec<String>,
    pub resources: Resources,
}

/// What a command run in an image printed, and how it ended.
#[derive(Clone, Debug, Default)]
pub struct CommandOutput {
    pub status: i64,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Engine {
    /// Run `argv` in a new container of `image` (as the image's user, without a network, with the
    /// image's entrypoint replaced by `argv[0]`) and collect its output; the container is removed.
    /// Output beyond `max_output` bytes per stream, or a run longer than `timeout`, is an error.
    pub async fn run_command(
        &self,
        image: &str,
        argv: &[String],
        timeout: std::time::Duration,
        max_output: usize,
        resources: &Resources,
    ) -> Result<CommandOutput, BuildError> {
        let (entrypoint, cmd) = argv
            .split_first()
            .ok_or_else(|| BuildError::Invalid("no command to run".into()))?;
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            entrypoint: Some(vec![entrypoint.clone()]),
            cmd: Some(cmd.to_vec()),
            network_disabled: Some(true),
            host_config: Some(limited(Some("none".into()), resources)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(None::<CreateContainerOptions>, body)
            .await
            .map_err(|e| BuildError::Engine(format!("{image}: {e}")))?;
        let id = created.id;
        let run = async {
            self.docker
                .start_container(&id, None::<StartContainerOptions>)
                .await
                .map_err(|e| BuildError::Engine(format!("{image}: {e}")))?;
            let mut output = CommandOutput::default();
            let mut logs = self.follow_logs(&id);
            while let Some(chunk) = logs.next().await {
                let (stream, bytes) = match chunk {
                    Ok(bollard::container::LogOutput::StdOut { message }) => {
                        (&mut output.stdout, message)
                    }
                    Ok(bollard::container::LogOutput::StdErr { message }) => {
                        (&mut output.stderr, message)
                    }
                    Ok(_) => continue,
                    Err(e) => return Err(BuildError::Engine(format!("{image}: {e}"))),
                };
                if stream.len() + bytes.len() > max_output {
                    return Err(BuildError::Invalid(format!(
                        "{image}: the command printed more than {max_output} bytes"
                    )));
                }
                stream.extend_from_slice(&bytes);
            }
            output.status = self.exit_code(&id).await?;
            Ok(output)
        };
        let result = match tokio::time::timeout(timeout, run).await {
            Ok(result) => result,
            Err(_) => Err(BuildError::Invalid(format!(
                "{image}: the command ran longer than {} s",
                timeout.as_secs()
            ))),
        };
        self.remove_container(&id).await;
        result
    }

    /// Create and start a container; returns its id. A container that cannot start is removed.
    pub async fn start_container(&self, spec: &ContainerSpec) -> Result<String, BuildError> {
        let mut host_config = limited(self.settings.network.clone(), &spec.resources);
        if !spec.publish.is_empty() {
            host_config.port_bindings = Some(
                spec.publish
                    .iter()
                    .map(|(inside, outside)| {
                        (
                            format!("{inside}/tcp"),
                            Some(vec![PortBinding {
                                host_ip: Some("127.0.0.1".into()),
                                host_port: Some(outside.to_string()),
                            }]),
                        )
                    })
                    .collect(),
            );
        }
        if !spec.binds.is_empty() {
            host_config.binds = Some(spec.binds.clone());
        }
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            host_config: Some(host_config),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(spec.name.clone()),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| self.error(e))?;
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            self.remove_container(&created.id).await;
            return Err(self.error(e));
        }
        Ok(created.id)
    }

    /// Stream a container's output to `out` until it exits; returns its exit code.
    pub async fn follow_container(
        &self,
        id: &str,
        mut out: impl FnMut(&[u8]),
    ) -> Result<i64, BuildError> {
        let mut logs = self.follow_logs(id);
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(output) => out(&output.into_bytes()),
                Err(_) => break,
            }
        }
        self.exit_code(id).await
    }

    /// A container's standard output and error, as it writes them, until it exits.
    fn follow_logs(
        &self,
        id: &str,
    ) -> impl futures_util::Stream<
        Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
    > + use<> {
        self.docker.logs(
            id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        )
    }

    /// Wait for a container to exit; its exit code.
    async fn exit_code(&self, id: &str) -> Result<i64, BuildError> {
        let mut wait = self.docker.wait_container(id, None::<WaitContainerOptions>);
        match wait.next().await {
            Some(Ok(status)) => Ok(status.status_code),
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
            Some(Err(e)) => Err(BuildError::Engine(e.to_string())),
            None => Ok(0),
        }
    }

    /// Stop a container (10 s grace) and remove it. Errors are ignored: it may be gone already.
    pub async fn remove_container(&self, id: &str) {
        let _ = self
            .docker
            .stop_container(
                id,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await;
        let _ = self
            .docker
            .remove_container(
                id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}
