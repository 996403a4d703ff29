//! Running a built image the way repo2docker does: on a free loopback port, with a token, its log
//! streamed, and the container removed on exit or Ctrl-C.

use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, PortBinding};
use bollard::query_parameters::{
    CreateContainerOptions, LogsOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use crate::engine::{Engine, random_hex};
use crate::error::BuildError;

/// A session to start.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub image: String,
    /// The command; `None` starts JupyterLab.
    pub command: Option<Vec<String>>,
    pub port: u16,
    pub token: String,
}

impl RunRequest {
    /// JupyterLab on a free loopback port with a fresh token.
    pub fn jupyter(image: &str) -> Result<Self, BuildError> {
        Ok(RunRequest {
            image: image.to_string(),
            command: None,
            port: free_port()?,
            token: random_hex(),
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16, BuildError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| BuildError::io("finding a free port", e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| BuildError::io("finding a free port", e))
}

/// A running container.
pub struct Session {
    pub id: String,
    engine: Engine,
}

impl Session {
    /// Create and start the container.
    pub async fn start(engine: &Engine, request: &RunRequest) -> Result<Session, BuildError> {
        let host_network = engine.settings.network.as_deref() == Some("host");
        let (ip, port) = if host_network {
            ("127.0.0.1", request.port)
        } else {
            ("0.0.0.0", 8888)
        };
        let command = request.command.clone().unwrap_or_else(|| {
            vec![
                "jupyter".into(),
                "lab".into(),
                format!("--ip={ip}"),
                format!("--port={port}"),
                "--no-browser".into(),
                format!("--IdentityProvider.token={}", request.token),
                format!(
                    "--ServerApp.custom_display_url=http://127.0.0.1:{}",
                    request.port
                ),
            ]
        });
        let mut host_config = HostConfig {
            network_mode: engine.settings.network.clone(),
            ..Default::default()
        };
        if !host_network {
            host_config.port_bindings = Some(
                [(
                    "8888/tcp".to_string(),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(request.port.to_string()),
                    }]),
                )]
                .into_iter()
                .collect(),
            );
        }
        let body = ContainerCreateBody {
            image: Some(request.image.clone()),
            cmd: Some(command),
            env: Some(vec![format!("JUPYTER_TOKEN={}", request.token)]),
            host_config: Some(host_config),
            ..Default::default()
        };
        let name = format!("kiln-run-{}", &random_hex()[..12]);
        let created = engine
            .docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some(name),
                    ..Default::default()
                }),
                body,
            )
            .await
            .map_err(|e| engine_error(engine, e))?;
        let session = Session {
            id: created.id,
            engine: engine.clone(),
        };
        if let Err(e) = engine
            .docker
            .start_container(&session.id, None::<StartContainerOptions>)
            .await
        {
            session.remove().await;
            return Err(engine_error(engine, e));
        }
        Ok(session)
    }

    /// Stream the container's output to `out` until it exits; returns its exit code.
    pub async fn follow(&self, mut out: impl FnMut(&[u8])) -> Result<i64, BuildError> {
        let mut logs = self.engine.docker.logs(
            &self.id,
            Some(LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            }),
        );
        while let Some(chunk) = logs.next().await {
            match chunk {
                Ok(output) => out(&output.into_bytes()),
                Err(_) => break,
            }
        }
        let mut wait = self
            .engine
            .docker
            .wait_container(&self.id, None::<WaitContainerOptions>);
        let code = match wait.next().await {
            Some(Ok(status)) => status.status_code,
            Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
            Some(Err(e)) => return Err(BuildError::Engine(e.to_string())),
            None => 0,
        };
        Ok(code)
    }

    /// Stop (10 s grace) and remove the container; errors are ignored (it may be gone already).
    pub async fn remove(&self) {
        let _ = self
            .engine
            .docker
            .stop_container(
                &self.id,
                Some(StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                }),
            )
            .await;
        let _ = self
            .engine
            .docker
            .remove_container(
                &self.id,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await;
    }
}

fn engine_error(engine: &Engine, e: bollard::errors::Error) -> BuildError {
    let message = e.to_string();
    if engine.settings.network.is_none()
        && (message.contains("network bridge not found") || message.contains("No such network"))
    {
        BuildError::NoDefaultNetwork
    } else {
        BuildError::Engine(message)
    }
}

/// Wait until Jupyter answers `/api/status` with the token (or the timeout passes).
pub async fn wait_until_ready(request: &RunRequest, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if status_ok(request.port, &request.token).await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

/// A minimal HTTP GET of `/api/status` on loopback.
pub async fn status_ok(port: u16, token: &str) -> bool {
    status(port, token).await.is_some()
}

/// Jupyter's `/api/status` (connections, kernels, activity) of a session on loopback, when it answers
/// 200 to its token.
pub async fn status(port: u16, token: &str) -> Option<serde_json::Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!(
        "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    if !response.starts_with(b"HTTP/1.1 200") {
        return None;
    }
    let text = String::from_utf8_lossy(&response);
    let body = text.split("\r\n\r\n").nth(1)?;
    Some(serde_json::from_str(body.trim()).unwrap_or(serde_json::Value::Null))
}
