//! `kiln serve` as the tests run it: a child process on a free loopback port; and [`Http`], raw
//! HTTP/1.1 requests and server-sent event readers for any service on loopback (also one that runs
//! in the test's own process).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, kiln, wait_for_port};

pub struct Service {
    pub child: Child,
    pub http: Http,
    pub state: std::path::PathBuf,
    pub _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Service {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

/// Requests to a service on 127.0.0.1.
pub struct Http {
    pub port: u16,
}

impl Service {
    pub fn start() -> Service {
        let dir = tempfile::tempdir().unwrap();
        let mut service = Service::start_with_state(&dir.path().join("state.db"));
        service._dir = Some(dir);
        service
    }

    pub fn start_with_state(state: &std::path::Path) -> Service {
        Service::start_with(state, &[])
    }

    /// The service with settings for tests (127.0.0.1 allowed on every port, development mode for
    /// host networking) and `env`, which wins over them.
    pub fn start_with(state: &std::path::Path, env: &[(&str, &str)]) -> Service {
        Service::spawn(state, env, Stdio::null())
    }

    /// [`Service::start_with`], its log (standard error) written to `log`.
    pub fn start_logged(
        state: &std::path::Path,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Service {
        Service::spawn(state, env, std::fs::File::create(log).unwrap().into())
    }

    /// [`Service::start_logged`] on a given port (a hub that proxies to kiln must know it first).
    pub fn start_on(
        port: u16,
        state: &std::path::Path,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Service {
        Service::spawn_on(port, state, env, std::fs::File::create(log).unwrap().into())
    }

    fn spawn(state: &std::path::Path, env: &[(&str, &str)], stderr: Stdio) -> Service {
        Service::spawn_on(free_port(), state, env, stderr)
    }

    fn spawn_on(
        port: u16,
        state: &std::path::Path,
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Service {
        let child = kiln()
            .arg("serve")
            .env("KILN_STATE", state)
            .env("KILN_LISTEN", format!("127.0.0.1:{port}"))
            .env("KILN_ALLOWED_HOSTS", "127.0.0.1:*")
            .env("KILN_DEVELOPMENT", "1")
            .env_remove("KILN_IMAGE_PREFIX")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        wait_for_port(port);
        Service {
            child,
            http: Http { port },
            state: state.to_path_buf(),
            _dir: None,
        }
    }
}

impl Http {
    /// A JSON request; returns the status and the parsed body.
    pub fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let (status, response) =
            self.request(method, path, "Content-Type: application/json\r\n", &body);
        let json = response.split("\r\n\r\n").nth(1).unwrap_or("null");
        (
            status,
            serde_json::from_str(json).unwrap_or(serde_json::Value::Null),
        )
    }

    /// Read `/api/builds/<id>/events` until `built` or `failed`: (id, event) pairs.
    pub fn api_events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
    ) -> Vec<(u64, serde_json::Value)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .unwrap();
        let resume = last_event_id
            .map(|n| format!("Last-Event-ID: {n}\r\n"))
            .unwrap_or_default();
        write!(stream, "GET /api/builds/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{resume}\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let (mut out, mut current_id, mut line) = (Vec::new(), 0u64, String::new());
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            let l = line.trim_end();
            if let Some(id) = l.strip_prefix("id: ") {
                current_id = id.parse().unwrap();
            } else if let Some(data) = l.strip_prefix("data: ") {
                let value: serde_json::Value = serde_json::from_str(data).unwrap();
                let end = value["phase"] == "built" || value["phase"] == "failed";
                out.push((current_id, value));
                if end {
                    break;
                }
            }
            line.clear();
        }
        out
    }

    /// One HTTP/1.1 request; returns the status and the whole response.
    pub fn request(&self, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, response)
    }

    /// The raw status line and headers of a `/build` request (its stream is not read).
    pub fn head(&self, path: &str, extra: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n{extra}\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let mut text = String::new();
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
            text.push_str(&line);
            line.clear();
        }
        text
    }

    pub fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        self.request("GET", path, &accept, "")
    }

    /// Read a /build stream until `ready` or `failed`; returns the events and the raw body.
    pub fn events(&self, path: &str) -> (Vec<serde_json::Value>, String) {
        self.events_with(path, "")
    }

    /// [`Service::events`] with extra request headers (each ending in `\r\n`).
    pub fn events_with(&self, path: &str, headers: &str) -> (Vec<serde_json::Value>, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n{headers}\r\n",
            self.port
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let (mut events, mut raw) = (Vec::new(), String::new());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            raw.push_str(&line);
            if let Some(data) = line.trim_end().strip_prefix("data: ")
                && let Ok(value) = serde_json::from_str::<serde_json::Value>(data)
            {
                let end = value["phase"] == "ready" || value["phase"] == "failed";
                events.push(value);
                if end {
                    // The blank line that ends the event.
                    let mut blank = String::new();
                    let _ = reader.read_line(&mut blank);
                    raw.push_str(&blank);
                    break;
                }
            }
            line.clear();
        }
        (events, raw)
    }

    pub fn builds_started(&self) -> u64 {
        let (_, response) = self.get("/health", None);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
        serde_json::from_str::<serde_json::Value>(body).unwrap()["builds_started"]
            .as_u64()
            .unwrap()
    }
}

impl Drop for Service {
    /// SIGTERM (the service removes its sessions), then SIGKILL if it is still there after 20 s.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn escaped(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}
