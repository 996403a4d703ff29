//! The service's HTTP behaviour in-process, on a scripted engine (no Docker): BinderHub's framing,
//! admission (the Accept header, rate limits, spec patterns, the build token), shared builds, the
//! JSON API's resumable streams, and a local launch to `ready`.

use std::time::Duration;

use crate::support::in_process::{InProcess, ScriptedEngine};
use crate::support::service::escaped;

const IMAGE: &str = "kiln/scripted:0123456789012345678901234567890123456789";

fn spec_path(name: &str) -> String {
    format!(
        "/build/git/{}/HEAD",
        escaped(&format!("git://127.0.0.1:9/{name}"))
    )
}

#[test]
fn build_streams_binderhub_framing_through_to_a_ready_session() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 3, Duration::ZERO), |_| {});
    let (events, raw) = service.events(&spec_path("framing"));
    let phases: Vec<&str> = events
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "fetching",
            "building",
            "building",
            "building",
            "built",
            "launching",
            "ready"
        ]
    );
    // Every event is `data: <json>` and a blank line.
    assert_eq!(raw.matches("data: ").count(), events.len(), "{raw}");
    assert_eq!(raw.matches("\n\n").count(), events.len(), "{raw}");
    let ready = events.last().unwrap();
    assert_eq!(ready["image"], IMAGE);
    let url = ready["url"].as_str().unwrap();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with('/'),
        "{ready}"
    );
    assert!(ready["token"].as_str().unwrap().len() >= 32, "{ready}");
    assert!(
        ready["binder_request"]
            .as_str()
            .unwrap()
            .starts_with("v2/git/"),
        "{ready}"
    );
    // The session the launcher started answers its token.
    let port: u16 = url["http://127.0.0.1:".len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let token = ready["token"].as_str().unwrap();
    assert_eq!(crate::support::session_status(port, Some(token)), 200);
    assert_eq!(crate::support::session_status(port, None), 403);
}

#[test]
fn build_requires_the_event_stream_accept_header() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    let (status, body) = service.get(&spec_path("accept"), None);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Accept: text/event-stream"), "{body}");
    assert_eq!(
        service
            .engine
            .builds
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn rate_limits_spec_patterns_and_the_build_token() {
    let service = InProcess::start(
        ScriptedEngine::building(IMAGE, 1, Duration::ZERO),
        |config| {
            config.rate_limit = 3;
            config.banned_specs = vec!["gh/evil/*".into()];
            config.build_token = Some(kiln_api::config::Secret::new("operator-token"));
        },
    );
    let path = spec_path("limited");
    // A banned spec (counts against the limit).
    assert!(
        service
            .head("/build/gh/evil/repo/HEAD", "")
            .starts_with("HTTP/1.1 403")
    );
    // build_only without the operator's token, or with a wrong one.
    assert!(
        service
            .head(&format!("{path}?build_only=true"), "")
            .starts_with("HTTP/1.1 403")
    );
    assert!(
        service
            .head(&format!("{path}?build_only=true&build_token=wrong"), "")
            .starts_with("HTTP/1.1 403")
    );
    // With the token, as a query parameter or a bearer token: accepted, and (as BinderHub's build
    // token does) not counted against the rate limit.
    assert!(
        service
            .head(
                &format!("{path}?build_only=true&build_token=operator-token"),
                ""
            )
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        service
            .head(
                &format!("{path}?build_only=true"),
                "Authorization: Bearer operator-token\r\n"
            )
            .starts_with("HTTP/1.1 200")
    );
    // The JSON API needs the token too.
    let body = serde_json::json!({"provider": "gh", "spec": "org/repo/HEAD"});
    assert_eq!(service.json("POST", "/api/builds", Some(body)).0, 403);
    // Counted so far: the banned spec; two plain requests are still admitted.
    assert!(service.head(&path, "").starts_with("HTTP/1.1 200"));
    assert!(service.head(&path, "").starts_with("HTTP/1.1 200"));
    // The fourth counted request from this address: 429 with BinderHub's headers.
    let limited = service.head(&path, "");
    assert!(limited.starts_with("HTTP/1.1 429"), "{limited}");
    assert!(
        limited.contains("x-ratelimit-limit: 3") && limited.contains("x-ratelimit-remaining: 0"),
        "{limited}"
    );
}

#[test]
fn build_only_ends_on_ready_with_the_image_name() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    let (events, _) = service.events(&format!("{}?build_only=true", spec_path("only")));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "ready", "{last}");
    assert_eq!(last["imageName"], IMAGE);
    assert!(
        last.get("url").is_none(),
        "no session for build_only: {last}"
    );
    assert!(service.engine.sessions.lock().unwrap().is_empty());
}

#[test]
fn concurrent_requests_share_one_build() {
    let service = InProcess::start(
        ScriptedEngine::building(IMAGE, 2, Duration::from_millis(600)),
        |_| {},
    );
    let path = format!("{}?build_only=true", spec_path("shared"));
    let http = &service.http;
    let results: Vec<Vec<serde_json::Value>> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| http.events(&path).0))
            .collect();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        service
            .engine
            .builds
            .load(std::sync::atomic::Ordering::SeqCst),
        1,
        "eight requests, one build"
    );
    for events in results {
        assert_eq!(events.last().unwrap()["imageName"], IMAGE);
        // Every watcher got the whole log, the early part replayed.
        assert!(
            events.iter().any(|e| e["message"] == "step 0\n"),
            "{events:?}"
        );
    }
}

#[test]
fn a_failed_build_ends_the_stream_with_its_reason() {
    let service = InProcess::start(
        ScriptedEngine::failing("the build failed: scripted failure"),
        |_| {},
    );
    let (events, _) = service.events(&spec_path("fails"));
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("scripted failure"),
        "{last}"
    );
    assert!(service.engine.sessions.lock().unwrap().is_empty());
}

#[test]
fn json_api_replays_and_resumes_after_last_event_id() {
    let service = InProcess::start(
        ScriptedEngine::building(IMAGE, 1200, Duration::ZERO),
        |_| {},
    );
    let spec = format!("{}/HEAD", escaped("git://127.0.0.1:9/replay"));
    let (status, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let events = service.api_events(&id, None);
    // fetching, 1200 lines, built: more than two pages of the store's replay.
    assert_eq!(events.len(), 1202);
    let ids: Vec<u64> = events.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (0..1202).collect::<Vec<u64>>(), "ids count up from 0");
    let resumed = service.api_events(&id, Some(700));
    assert_eq!(resumed.first().unwrap().0, 701);
    assert_eq!(resumed.len(), 501);
    let (status, record) = service.json("GET", &format!("/api/builds/{id}"), None);
    assert_eq!(status, 200);
    assert_eq!(record["status"], "built");
    assert_eq!(record["image"], IMAGE);
    assert_eq!(service.json("GET", "/api/builds/999999", None).0, 404);
}

#[test]
fn a_last_event_id_past_the_end_does_not_overflow() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    let spec = format!("{}/HEAD", escaped("git://127.0.0.1:9/overflow"));
    let (_, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    let id = started["id"].as_str().unwrap().to_string();
    service.api_events(&id, None);
    let (status, response) = service.request(
        "GET",
        &format!("/api/builds/{id}/events"),
        &format!(
            "Accept: text/event-stream\r\nLast-Event-ID: {}\r\n",
            u64::MAX
        ),
        "",
    );
    assert_eq!(status, 200, "{response}");
    assert!(!response.contains("data: "), "nothing follows: {response}");
}

#[test]
fn bad_specs_end_in_a_failed_event_and_the_json_api_answers_400() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |_| {});
    let (events, _) = service.events("/build/zz/a/b/HEAD");
    assert_eq!(events.last().unwrap()["phase"], "failed");
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
    assert_eq!(
        service
            .engine
            .builds
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[test]
fn prewarm_is_for_the_operator_and_reports_each_image() {
    let service = InProcess::start(ScriptedEngine::building(IMAGE, 1, Duration::ZERO), |c| {
        c.build_token = Some(kiln_api::config::Secret::new("operator-token"));
    });
    let body = |images: serde_json::Value| serde_json::json!({ "images": images }).to_string();
    let post = |headers: &str, body: &str| {
        service.request(
            "POST",
            "/api/prewarm",
            &format!("Content-Type: application/json\r\n{headers}"),
            body,
        )
    };
    let operator = "Authorization: Bearer operator-token\r\n";
    let images = body(serde_json::json!([
        "127.0.0.1:5000/kiln-a:1",
        "127.0.0.1:5000/kiln-missing:1"
    ]));
    // A stranger, or a wrong token: refused, nothing pulled.
    assert_eq!(post("", &images).0, 403);
    assert_eq!(post("Authorization: Bearer wrong\r\n", &images).0, 403);
    assert!(service.engine.pulled.lock().unwrap().is_empty());
    // The operator: each image's result.
    let (status, response) = post(operator, &images);
    assert_eq!(status, 200, "{response}");
    let answer: serde_json::Value =
        serde_json::from_str(response.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert_eq!(answer["images"][0]["ok"], true, "{answer}");
    assert_eq!(answer["images"][1]["ok"], false, "{answer}");
    assert!(
        answer["images"][1]["error"]
            .as_str()
            .unwrap()
            .contains("not found")
    );
    assert_eq!(
        service.engine.pulled.lock().unwrap().as_slice(),
        [("127.0.0.1:5000/kiln-a:1".to_string(), false)]
    );
    // Bad input: none, too many, a name that is no image name.
    assert_eq!(post(operator, &body(serde_json::json!([]))).0, 400);
    let many: Vec<String> = (0..51).map(|i| format!("kiln/a:{i}")).collect();
    assert_eq!(post(operator, &body(serde_json::json!(many))).0, 400);
    assert_eq!(
        post(operator, &body(serde_json::json!(["Bad Name!"]))).0,
        400
    );
}
