//! Running a built image the way repo2docker does: on a free loopback port, with a token, its log
//! streamed, and the container removed on exit or Ctrl-C.

use std::time::Duration;

use crate::engine::{ContainerSpec, Engine, Resources};
use crate::error::BuildError;

/// A session to start.
#[derive(Clone)]
pub struct RunRequest {
    pub image: String,
    /// The command; `None` starts JupyterLab.
    pub command: Option<Vec<String>>,
    pub port: u16,
    pub token: String,
    pub resources: Resources,
    /// More environment variables, `KEY=VALUE`.
    pub env: Vec<String>,
    /// More ports to publish: (container port, host port), on 127.0.0.1.
    pub publish: Vec<(u16, u16)>,
    /// Bind mounts, `HOST:CONTAINER[:ro]`.
    pub binds: Vec<String>,
}

impl std::fmt::Debug for RunRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunRequest")
            .field("image", &self.image)
            .field("command", &self.command)
            .field("port", &self.port)
            .field("token", &"<redacted>")
            .field("resources", &self.resources)
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|e| e.split('=').next().unwrap_or_default())
                    .collect::<Vec<_>>(),
            )
            .field("publish", &self.publish)
            .field("binds", &self.binds)
            .finish()
    }
}

impl RunRequest {
    /// JupyterLab on a free loopback port with a fresh token.
    pub fn jupyter(image: &str) -> Result<Self, BuildError> {
        Ok(RunRequest {
            image: image.to_string(),
            command: None,
            port: free_port()?,
            token: crate::random::hex(16)?,
            resources: Resources::default(),
            env: Vec::new(),
            publish: Vec::new(),
            binds: Vec::new(),
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
    /// Create and start the container. With host networking JupyterLab listens on the request's
    /// loopback port; otherwise on 8888 inside, published on 127.0.0.1 at that port.
    pub async fn start(engine: &Engine, request: &RunRequest) -> Result<Session, BuildError> {
        let host_network = engine.settings.host_network();
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
        let spec = ContainerSpec {
            name: format!("kiln-run-{}", crate::random::hex(6)?),
            image: request.image.clone(),
            cmd: Some(command),
            env: std::iter::once(format!("JUPYTER_TOKEN={}", request.token))
                .chain(request.env.iter().cloned())
                .collect(),
            publish: (!host_network)
                .then_some((8888, request.port))
                .into_iter()
                .chain(request.publish.iter().copied())
                .collect(),
            binds: request.binds.clone(),
            resources: request.resources.clone(),
        };
        let id = engine.start_container(&spec).await?;
        Ok(Session {
            id,
            engine: engine.clone(),
        })
    }

    /// Stream the container's output to `out` until it exits; returns its exit code.
    pub async fn follow(&self, out: impl FnMut(&[u8])) -> Result<i64, BuildError> {
        self.engine.follow_container(&self.id, out).await
    }

    /// Stop (10 s grace) and remove the container; errors are ignored (it may be gone already).
    pub async fn remove(&self) {
        self.engine.remove_container(&self.id).await;
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
