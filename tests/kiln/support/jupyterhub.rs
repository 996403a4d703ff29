//! A real JupyterHub (from PyPI) with DockerSpawner and configurable-http-proxy on loopback, started
//! from `examples/hub/jupyterhub_config.py` exactly as the README says, on free ports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{docker, free_port};

pub struct JupyterHubServer {
    child: Option<Child>,
    pub port: u16,
    hub_port: u16,
    proxy_port: u16,
    /// kiln's service token on this hub.
    pub token: String,
    bin: PathBuf,
    state: tempfile::TempDir,
    pub log: PathBuf,
}

/// The folder that `examples/hub/install.sh` installs JupyterHub `version` into (installing when missing).
fn hub_home(version: &str) -> PathBuf {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("bash")
        .arg(format!("{root}/examples/hub/install.sh"))
        .env("KILN_JUPYTERHUB_VERSION", version)
        .stderr(Stdio::inherit())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "cannot install JupyterHub with `bash examples/hub/install.sh` (the test command runs it: \
         `bash tests/run.sh`)"
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

impl JupyterHubServer {
    pub fn start() -> JupyterHubServer {
        JupyterHubServer::start_with(&[])
    }

    /// A hub with extra environment for its configuration (such as `KILN_HUB_START_TIMEOUT`).
    pub fn start_with(env: &[(&str, &str)]) -> JupyterHubServer {
        JupyterHubServer::start_version("6.1.1", env)
    }

    /// A hub of another JupyterHub version.
    pub fn start_version(version: &str, env: &[(&str, &str)]) -> JupyterHubServer {
        let home = hub_home(version);
        let mut hub = JupyterHubServer {
            child: None,
            port: free_port(),
            hub_port: free_port(),
            proxy_port: free_port(),
            token: super::unique("kiln-hub-token").replace('/', "-"),
            bin: home.join("bin"),
            state: tempfile::tempdir().unwrap(),
            log: PathBuf::new(),
        };
        hub.log = hub.state.path().join("jupyterhub.log");
        hub.spawn(env);
        hub
    }

    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let config = format!(
            "{}/examples/hub/jupyterhub_config.py",
            env!("CARGO_MANIFEST_DIR")
        );
        let child = Command::new(self.bin.join("jupyterhub"))
            .args(["-f", &config, "--ip", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .current_dir(self.state.path())
            .env("PATH", path)
            .env("KILN_HUB_API_TOKEN", &self.token)
            .env("KILN_HUB_STATE", self.state.path())
            .env("KILN_HUB_PORT", self.hub_port.to_string())
            .env("KILN_HUB_PROXY_API_PORT", self.proxy_port.to_string())
            .env("KILN_HUB_CULL_IDLE", "0")
            .env("KILN_HUB_CONTAINER_PREFIX", self.container_prefix())
            .envs(env.iter().copied())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start jupyterhub");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.api("GET", "", None).0 == 200 {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "jupyterhub exited ({status}) at start:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "jupyterhub did not answer within 60 s:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Session containers of this hub are named `<prefix>-<user>`.
    pub fn container_prefix(&self) -> String {
        format!("kiln-test-hub-{}", self.port)
    }

    /// The hub's public address (ends in `/`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    /// The environment of a `kiln serve` that launches on this hub.
    pub fn kiln_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("KILN_HUB_URL", self.url()),
            ("KILN_HUB_API_TOKEN", self.token.clone()),
            ("KILN_HUB_REAP_SECONDS", "1".into()),
        ]
    }

    /// A hub API call with kiln's service token: status and JSON body.
    pub fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let token = self.token.clone();
        self.api_as(&token, method, path, body)
    }

    pub fn api_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let (status, body) = self.http(
            method,
            &format!("/hub/api/{path}"),
            &format!("Authorization: token {token}\r\n"),
            body.unwrap_or(""),
        );
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// One request through the hub's proxy: status and body.
    pub fn http(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, String::new());
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let _ = write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        );
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        // Chunked bodies: keep the JSON line.
        let body = body
            .lines()
            .find(|l| l.starts_with('{') || l.starts_with('['))
            .unwrap_or(&body)
            .to_string();
        (status, body)
    }

    /// The hub's users' names.
    pub fn users(&self) -> Vec<String> {
        let (_, users) = self.api("GET", "users", None);
        users
            .as_array()
            .or(users["items"].as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|u| u["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Wait until `check` holds (or panic after `seconds`).
    pub fn wait_until(&self, seconds: u64, what: &str, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        while Instant::now() < deadline {
            if check(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!(
            "{what} within {seconds} s; hub log:\n{}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }

    /// Stop the hub (SIGTERM, as an operator restarting it) and wait until it has exited.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stop the hub and start it again with the same database and ports.
    pub fn restart(&mut self, env: &[(&str, &str)]) {
        self.stop();
        self.spawn(env);
    }
}

impl Drop for JupyterHubServer {
    fn drop(&mut self) {
        // Stopping the hub stops its servers; containers of users it no longer knew are removed here.
        self.stop();
        let out = docker(&[
            "ps",
            "-aq",
            "--filter",
            &format!("name={}-", self.container_prefix()),
        ]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            docker(&["rm", "-f", id]);
        }
    }
}
