//! `kiln serve`: BinderHub's /build API as server-sent events, read by a real client over TCP,
//! through the whole flow to a session that answers with its token; shared builds; refused sources.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use support::*;

struct Service {
    child: Child,
    port: u16,
}

impl Service {
    fn start() -> Service {
        let port = free_port();
        let child = kiln()
            .arg("serve")
            .env("KILN_LISTEN", format!("127.0.0.1:{port}"))
            .env("KILN_ALLOWED_HOSTS", "127.0.0.1")
            .env_remove("KILN_IMAGE_PREFIX")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port);
        Service { child, port }
    }

    fn get(&self, path: &str, accept: Option<&str>) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let accept = accept
            .map(|a| format!("Accept: {a}\r\n"))
            .unwrap_or_default();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{accept}Connection: close\r\n\r\n",
            self.port
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

    /// Read a /build stream until `ready` or `failed`; returns the events and the raw body.
    fn events(&self, path: &str) -> (Vec<serde_json::Value>, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(300)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAccept: text/event-stream\r\n\r\n",
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

    fn builds_started(&self) -> u64 {
        let (_, response) = self.get("/health", None);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
        serde_json::from_str::<serde_json::Value>(body).unwrap()["builds_started"]
            .as_u64()
            .unwrap()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn escaped(url: &str) -> String {
    url.replace(':', "%3A").replace('/', "%2F")
}

fn remove_sessions_of(image: &str) {
    let ids = docker(&["ps", "-aq", "--filter", &format!("ancestor={image}")]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        docker(&["rm", "-f", id]);
    }
}

#[test]
fn build_requires_the_event_stream_accept_header() {
    require_engine();
    let service = Service::start();
    let (status, _) = service.get("/build/gh/org/repo/HEAD", None);
    assert_eq!(status, 400);
}

#[test]
fn the_event_stream_goes_through_the_whole_flow_to_a_ready_session() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "svc");
    let service = Service::start();
    let path = format!("/build/git/{}/HEAD", escaped(&server.url("svc")));
    let (events, raw) = service.events(&path);
    let phases: Vec<&str> = events
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.last(), Some(&"ready"), "{phases:?} {raw}");
    for phase in ["fetching", "built", "launching"] {
        assert!(phases.contains(&phase), "{phase} missing: {phases:?}");
    }
    // BinderHub's framing: `data: <json>` then a blank line.
    for line in raw.lines().filter(|l| l.starts_with("data: ")) {
        assert!(
            raw.contains(&format!("{line}\n\n")),
            "an event without its blank line: {line}"
        );
    }
    let ready = events.last().unwrap();
    let built = events.iter().find(|e| e["phase"] == "built").unwrap();
    assert_eq!(ready["image"], built["imageName"]);
    let url = ready["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{url}"
    );
    for field in [
        "token",
        "repo_url",
        "binder_ref_url",
        "binder_launch_host",
        "binder_request",
        "binder_persistent_request",
    ] {
        assert!(ready[field].is_string(), "{field} missing: {ready}");
    }
    assert_eq!(
        ready["binder_request"],
        format!("v2/git/{}/HEAD", escaped(&server.url("svc"))).as_str()
    );
    // The session answers /api/status with its token.
    let port: u16 = url["http://127.0.0.1:".len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {}\r\nConnection: close\r\n\r\n", ready["token"].as_str().unwrap()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    remove_sessions_of(ready["image"].as_str().unwrap());
    // Prometheus metrics count the build and the launch.
    let (status, metrics) = service.get("/metrics", None);
    assert_eq!(status, 200);
    for line in [
        "kiln_builds_total{status=\"success\"} 1",
        "kiln_launches_total{status=\"success\"} 1",
        "kiln_builds_in_progress 0",
        "kiln_build_duration_seconds_count 1",
        "kiln_launch_duration_seconds_count 1",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
}

#[test]
fn simultaneous_requests_share_one_build() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "shared");
    // A unique file, so the engine really builds (its cache outlives test runs).
    server.commit("shared", &[("id.txt", unique("shared").as_str())], "unique");
    let service = std::sync::Arc::new(Service::start());
    let before = service.builds_started();
    let path = format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped(&server.url("shared"))
    );
    let started = Instant::now();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let (service, path) = (service.clone(), path.clone());
            std::thread::spawn(move || service.events(&path).0)
        })
        .collect();
    let results: Vec<Vec<serde_json::Value>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    for events in &results {
        let last = events.last().unwrap();
        assert_eq!(last["phase"], "ready", "{last}");
        assert!(last["imageName"].is_string());
    }
    assert_eq!(
        service.builds_started() - before,
        1,
        "ten requests, one build"
    );
    assert!(started.elapsed() < Duration::from_secs(600));
}

#[test]
fn refused_sources_and_bad_specs_end_in_a_failed_event() {
    require_engine();
    let service = Service::start();
    for (path, expected) in [
        (
            "/build/git/file%3A%2F%2F%2Fetc/HEAD",
            "local paths and file:// are refused",
        ),
        (
            "/build/git/http%3A%2F%2F10.1.2.3%2Frepo/HEAD",
            "private or link-local address",
        ),
        ("/build/zz/a/b/c", "unknown provider"),
        ("/build/gh/a/../b", "path traversal"),
    ] {
        let (events, raw) = service.events(path);
        let last = events.last().unwrap_or_else(|| panic!("{path}: {raw}"));
        assert_eq!(last["phase"], "failed", "{path}: {last}");
        assert!(
            last["message"].as_str().unwrap().contains(expected),
            "{path}: {last}"
        );
    }
}
