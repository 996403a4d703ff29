//! `kiln serve`: BinderHub's /build API as server-sent events, read by a real client over TCP,
//! through the whole flow to a session that answers with its token; shared builds; refused sources.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::service::{Service, escaped};
use crate::support::*;

#[test]
fn json_api_builds_resumes_and_lists_images() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "api");
    let service = Service::start();
    let spec = format!("{}/HEAD", escaped(&server.url("api")));
    let (status, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let events = service.api_events(&id, None);
    let (last_id, last) = events.last().unwrap();
    assert_eq!(last["phase"], "built", "{last}");
    assert!(events.len() >= 3);
    // Resume after the second event: only what follows.
    let resumed = service.api_events(&id, Some(events[1].0));
    assert_eq!(resumed.first().unwrap().0, events[2].0);
    assert_eq!(resumed.last().unwrap().0, *last_id);
    let (status, record) = service.json("GET", &format!("/api/builds/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(record["status"], "built");
    assert_eq!(record["image"], last["imageName"]);
    let (_, images) = service.json("GET", "/api/images", None);
    assert!(
        images["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["image"] == last["imageName"])
    );
    // What the image holds: its SBOM, as CycloneDX (valid) and as kiln's record, whose digest the
    // built event gave.
    let image = last["imageName"].as_str().unwrap();
    let (status, bom) = service.get(&format!("/api/images/{image}/sbom"), None);
    assert_eq!(status, 200, "{bom}");
    let body = bom.split("\r\n\r\n").nth(1).unwrap();
    sbom::assert_valid_cyclonedx(body.as_bytes());
    assert!(body.contains("pkg:pypi/jupyterlab@"), "{body}");
    let (status, record) = service.json(
        "GET",
        &format!("/api/images/{image}/sbom?format=kiln"),
        None,
    );
    assert_eq!(status, 200, "{record}");
    assert!(record["deb"].as_array().unwrap().len() > 50);
    assert!(
        last["contentsDigest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    // Only images kiln built: no other image is read for a caller.
    let (status, _) = service.json("GET", "/api/images/docker.io/library/debian:12/sbom", None);
    assert_eq!(status, 404);
    let (status, _) = service.json("GET", &format!("/api/images/{image}/sbom?format=xml"), None);
    assert_eq!(status, 400);
    // Bad input: a clear 4xx.
    let (status, error) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "zz", "spec": "x"})),
    );
    assert_eq!(status, 400, "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("unknown provider")
    );
    assert_eq!(service.json("GET", "/api/builds/999999", None).0, 404);
}

#[test]
fn a_restart_mid_build_marks_it_failed_and_the_next_request_builds() {
    require_engine();
    let server = GitServer::start();
    let marker = unique("slow");
    server.commit(
        "slow",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {marker} && sleep 8\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE
            ),
        )],
        "slow build",
    );
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let mut service = Service::start_with_state(&state);
    let _ = &mut service;
    let spec = format!("{}/HEAD", escaped(&server.url("slow")));
    let (_, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    let id = started["id"].as_str().unwrap().to_string();
    // Follow the build until the slow step runs, then stop the service hard.
    let mut stream = TcpStream::connect(("127.0.0.1", service.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    write!(stream, "GET /api/builds/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            reader.read_line(&mut line).unwrap() > 0,
            "the stream ended before the slow step"
        );
        if line.starts_with("data: ") && line.contains(&marker) && !line.contains("RUN ") {
            break;
        }
        assert!(
            !line.contains("\"phase\":\"built\""),
            "the build finished before the restart"
        );
    }
    let _ = service.child.kill();
    let _ = service.child.wait();
    let service = Service::start_with_state(&service.state.clone());
    let (status, record) = service.json("GET", &format!("/api/builds/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(record["status"], "failed", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap()
            .contains("stopped while this build was running"),
        "{record}"
    );
    let replay = service.api_events(&id, None);
    assert_eq!(replay.last().unwrap().1["phase"], "failed");
    // The next request builds.
    let (_, again) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    let next = again["id"].as_str().unwrap().to_string();
    assert_ne!(next, id);
    let events = service.api_events(&next, None);
    assert_eq!(events.last().unwrap().1["phase"], "built", "{events:?}");
}

#[test]
fn idle_sessions_are_stopped() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "idle");
    let dir = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &dir.path().join("state.db"),
        &[("KILN_SESSION_IDLE_SECONDS", "2")],
    );
    let (events, _) = service.events(&format!("/build/git/{}/HEAD", escaped(&server.url("idle"))));
    let ready = events.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{ready}");
    let url = ready["url"].as_str().unwrap().to_string();
    let port: u16 = url["http://127.0.0.1:".len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the idle session still runs after 30 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn remove_sessions_of(image: &str) {
    let ids = docker(&["ps", "-aq", "--filter", &format!("ancestor={image}")]);
    for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
        docker(&["rm", "-f", id]);
    }
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
    let state = tempfile::tempdir().unwrap();
    let service = std::sync::Arc::new(Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_RATE_LIMIT", "0"),
            ("KILN_MAX_STREAMS_PER_CLIENT", "0"),
        ],
    ));
    let before = service.builds_started();
    let path = format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped(&server.url("shared"))
    );
    let started = Instant::now();
    // One more client leaves after the first event: the others are not affected.
    let quitter = {
        let (service, path) = (service.clone(), path.clone());
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(("127.0.0.1", service.port)).unwrap();
            write!(
                stream,
                "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            )
            .unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 && !line.starts_with("data: ") {
                line.clear();
            }
        })
    };
    let handles: Vec<_> = (0..50)
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
    quitter.join().unwrap();
    assert_eq!(
        service.builds_started() - before,
        1,
        "fifty-one requests, one build"
    );
    assert!(started.elapsed() < Duration::from_secs(600));
}

#[test]
fn refused_sources_and_bad_specs_end_in_a_failed_event() {
    require_engine();
    let service = Service::start();
    let long = format!("/build/gh/org/{}/HEAD", "r".repeat(3000));
    for (path, expected) in [
        (
            "/build/git/file%3A%2F%2F%2Fetc/HEAD",
            "local paths and file:// are refused",
        ),
        (
            "/build/git/http%3A%2F%2F10.1.2.3%2Frepo/HEAD",
            "is a private address",
        ),
        ("/build/zz/a/b/c", "unknown provider"),
        ("/build/gh/a/../b", "path traversal"),
        (long.as_str(), "longer than 2048"),
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
