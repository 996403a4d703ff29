//! Launches on a real JupyterHub (DockerSpawner, configurable-http-proxy) started from
//! `examples/hub/jupyterhub_config.py`: `/build/...` ends `ready` with a URL and token that open the
//! session through the hub's proxy; named servers for hub users; quotas; the hub's faults end in a
//! `failed` event with the hub's reason and leave no temporary user behind.

use std::time::Duration;

use crate::support::jupyterhub::JupyterHubServer;
use crate::support::service::{Service, escaped};
use crate::support::*;
use serde_json::Value;

/// `kiln serve` launching on `hub`, with extra settings.
fn service_on(hub: Option<&JupyterHubServer>, extra: &[(&str, &str)]) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let mut env: Vec<(&str, String)> = hub.map(|h| h.kiln_env()).unwrap_or_default();
    env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut service = Service::start_with(&dir.path().join("state.db"), &env);
    service._dir = Some(dir);
    service
}

fn phases(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["phase"].as_str()).collect()
}

/// The path (and query) of an absolute URL on the hub.
fn path_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    &rest[rest.find('/').unwrap_or(rest.len())..]
}

/// A repository from the python-default example, with extra files (such as a `start` script).
fn repository(server: &GitServer, name: &str, files: &[(&str, &str)]) -> String {
    server.example("python-default", name);
    if !files.is_empty() {
        server.commit(name, files, "test files");
    }
    format!("/build/git/{}/HEAD", escaped(&server.url(name)))
}

/// The launch of `path` ends in `failed`; once the hub lets go of the server, no user is left. Removes
/// the image and returns the failure's message.
fn fails_without_leftovers(
    events: &[Value],
    raw: &str,
    hub: &JupyterHubServer,
    within: u64,
) -> String {
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    let message = last["message"].as_str().unwrap().to_string();
    eprintln!("failed event: {message}");
    hub.wait_until(within, "a temporary user was left behind", |h| {
        h.users().is_empty()
    });
    if let Some(image) = events.iter().find_map(|e| e["imageName"].as_str()) {
        remove_image(image);
    }
    message
}

#[test]
fn a_hub_launch_is_ready_its_url_opens_the_session_and_the_temporary_user_goes_with_it() {
    require_engine();
    let server = GitServer::start();
    let path = repository(&server, "hub-ready", &[]);
    let hub = JupyterHubServer::start();
    let service = service_on(Some(&hub), &[("KILN_MAX_SESSIONS_PER_REPO", "1")]);
    let (events, raw) = service.events(&path);
    assert_eq!(phases(&events).last(), Some(&"ready"), "{raw}");
    let ready = events.last().unwrap();
    let image = ready["image"].as_str().unwrap().to_string();
    // The hub's own spawn progress comes through as `launching` events.
    let launching: Vec<&str> = events
        .iter()
        .filter(|e| e["phase"] == "launching")
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        launching.iter().any(|m| m.contains("Asking the hub")) && launching.len() >= 3,
        "{launching:?}"
    );
    let url = ready["url"].as_str().unwrap();
    let token = ready["token"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}user/hub-ready-", hub.url())) && url.ends_with('/'),
        "{url}"
    );
    assert!(ready["hub_spawn_ms"].as_u64().is_some(), "{ready}");
    // The URL with its token opens the session through the hub's proxy; without it, it does not.
    let (status, body) = hub.http(
        "GET",
        &format!("{}api/status?token={token}", path_of(url)),
        "",
        "",
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"kernels\""), "{body}");
    let (status, _) = hub.http("GET", &format!("{}api/status", path_of(url)), "", "");
    assert_ne!(status, 200);
    // The hub started it with BinderHub's user options.
    let user = path_of(url)
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    let (_, model) = hub.api("GET", &format!("users/{user}"), None);
    let options = &model["servers"][""]["user_options"];
    assert_eq!(options["image"], image.as_str(), "{model}");
    assert_eq!(options["repo_url"], server.url("hub-ready").as_str());
    assert_eq!(options["token"], token);
    assert!(
        options["binder_persistent_request"].is_string(),
        "{options}"
    );

    // Quota: one session of this repository at a time.
    let (events, raw) = service.events(&path);
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("Too many sessions of git://127.0.0.1"),
        "{last}"
    );
    assert_eq!(hub.users(), [user.as_str()]);

    // The hub stops the server (as its idle culler would): kiln deletes the temporary user.
    let (status, _) = hub.api("DELETE", &format!("users/{user}/server"), None);
    assert!(status == 202 || status == 204, "{status}");
    hub.wait_until(30, "the temporary user was not deleted", |h| {
        h.users().is_empty()
    });
    remove_image(&image);
}

#[test]
fn hub_users_launch_named_servers_with_their_token() {
    require_engine();
    let server = GitServer::start();
    let path = repository(&server, "hub-named", &[]);
    let hub = JupyterHubServer::start();
    let service = service_on(Some(&hub), &[]);
    assert_eq!(hub.api("POST", "users/alice", None).0, 201);
    let (status, issued) = hub.api("POST", "users/alice/tokens", Some("{\"note\": \"test\"}"));
    assert_eq!(status, 201, "{issued}");
    let alice = issued["token"].as_str().unwrap();

    // A token the hub does not know is refused (401, with the hub's reason) before anything starts.
    let (status, answer) = service.request(
        "GET",
        &path,
        "Accept: text/event-stream\r\nAuthorization: token not-a-hub-token\r\n",
        "",
    );
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("did not accept your token"), "{answer}");
    assert_eq!(service.builds_started(), 0);

    let (events, raw) = service.events_with(&path, &format!("Authorization: token {alice}\r\n"));
    assert_eq!(phases(&events).last(), Some(&"ready"), "{raw}");
    let ready = events.last().unwrap();
    let url = ready["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}user/alice/hub-named-", hub.url())),
        "{url}"
    );
    let token = ready["token"].as_str().unwrap();
    let (status, body) = hub.http(
        "GET",
        &format!("{}api/status?token={token}", path_of(url)),
        "",
        "",
    );
    assert_eq!(status, 200, "{body}");
    // No temporary user: the server belongs to alice.
    assert_eq!(hub.users(), ["alice"]);
    let name = path_of(url)
        .trim_matches('/')
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let (_, model) = hub.api("GET", "users/alice", None);
    assert_eq!(
        model["servers"][&name]["user_options"]["image"], ready["image"],
        "{model}"
    );

    // Once the server stops, kiln removes it from alice's list; alice stays.
    hub.api("DELETE", &format!("users/alice/servers/{name}"), None);
    hub.wait_until(30, "the named server was not removed", |h| {
        let (_, model) = h.api("GET", "users/alice", None);
        model["servers"].as_object().is_some_and(|s| s.is_empty())
    });
    assert_eq!(hub.users(), ["alice"]);
    remove_image(ready["image"].as_str().unwrap());
}

#[test]
fn an_unreachable_hub_or_a_wrong_token_fails_clearly() {
    require_engine();
    let server = GitServer::start();
    let path = repository(&server, "hub-faults", &[]);
    // Nothing listens there.
    let nowhere = format!("http://127.0.0.1:{}/", free_port());
    let service = service_on(
        None,
        &[("KILN_HUB_URL", &nowhere), ("KILN_HUB_API_TOKEN", "x")],
    );
    let (events, raw) = service.events(&path);
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{last}"
    );
    drop(service);

    let hub = JupyterHubServer::start();
    let service = service_on(Some(&hub), &[("KILN_HUB_API_TOKEN", "wrong-token")]);
    let (events, raw) = service.events(&path);
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "failed", "{raw}");
    let message = last["message"].as_str().unwrap();
    assert!(
        message.contains("403") && message.contains("KILN_HUB_API_TOKEN"),
        "{message}"
    );
    assert!(hub.users().is_empty());
    drop(service);

    // A hub that only starts images under another prefix refuses this one.
    let strict =
        JupyterHubServer::start_with(&[("KILN_HUB_ALLOWED_IMAGES", "registry.example.org/kiln/")]);
    let service = service_on(Some(&strict), &[]);
    let (events, raw) = service.events(&path);
    let message = fails_without_leftovers(&events, &raw, &strict, 30);
    assert!(message.contains("not allowed"), "{message}");
}

#[test]
fn a_server_that_never_starts_fails_with_the_hubs_reason() {
    require_engine();
    let server = GitServer::start();
    let start = "#!/bin/bash\necho 'kiln-test: this session refuses to start' >&2\nexit 3\n";
    let path = repository(&server, "hub-broken", &[("start", start)]);
    let hub = JupyterHubServer::start_with(&[("KILN_HUB_HTTP_TIMEOUT", "10")]);
    let service = service_on(Some(&hub), &[]);
    let (events, raw) = service.events(&path);
    let message = fails_without_leftovers(&events, &raw, &hub, 30);
    assert!(
        message.contains("the hub could not start the server"),
        "{message}"
    );
    assert!(message.to_lowercase().contains("spawn failed"), "{message}");
}

#[test]
fn a_spawn_timeout_fails_and_the_user_is_deleted_once_the_hub_gives_up() {
    require_engine();
    let server = GitServer::start();
    let path = repository(
        &server,
        "hub-slow",
        &[("start", "#!/bin/bash\nsleep 600\n")],
    );
    let hub = JupyterHubServer::start_with(&[
        ("KILN_HUB_START_TIMEOUT", "15"),
        ("KILN_HUB_HTTP_TIMEOUT", "15"),
    ]);
    let service = service_on(Some(&hub), &[("KILN_LAUNCH_TIMEOUT", "6")]);
    let (events, raw) = service.events(&path);
    let message = fails_without_leftovers(&events, &raw, &hub, 60);
    assert!(message.contains("did not start within 6 s"), "{message}");
}

#[test]
fn a_hub_restarted_mid_launch_ends_in_failed_and_leaves_no_user() {
    require_engine();
    let server = GitServer::start();
    let path = repository(
        &server,
        "hub-restart",
        &[("start", "#!/bin/bash\nsleep 20\nexec \"$@\"\n")],
    );
    let mut hub = JupyterHubServer::start();
    let service = service_on(Some(&hub), &[]);
    let reader = std::thread::scope(|scope| {
        let reader = scope.spawn(|| service.events(&path));
        // Wait until the hub has a pending spawn, then restart it.
        hub.wait_until(300, "no spawn started", |h| {
            let (_, users) = h.api("GET", "users?state=active", None);
            users.to_string().contains("\"pending\":\"spawn\"")
        });
        std::thread::sleep(Duration::from_secs(1));
        hub.restart(&[]);
        reader.join().unwrap()
    });
    let (events, raw) = reader;
    let message = fails_without_leftovers(&events, &raw, &hub, 60);
    assert!(message.contains("hub"), "{message}");
}

#[test]
fn health_says_when_the_images_jupyterhub_does_not_match_the_hub() {
    require_engine();
    let hub = JupyterHubServer::start();
    // `/health`: the whole report and its hub check.
    let health = |service: &Service| -> (Value, Value) {
        let (_, response) = service.get("/health", None);
        let body = response.split("\r\n\r\n").nth(1).unwrap_or("");
        let body = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
        let report: Value = serde_json::from_str(body).unwrap();
        let check = (report["checks"].as_array().unwrap().iter())
            .find(|c| c["service"] == "hub")
            .cloned()
            .unwrap_or_else(|| panic!("no hub check: {report}"));
        (report, check)
    };
    let service = service_on(Some(&hub), &[]);
    let (_, check) = health(&service);
    assert_eq!(check["ok"], true, "{check}");
    assert_eq!(check["version"], "6.1.1");
    drop(service);
    let service = service_on(Some(&hub), &[("KILN_JUPYTERHUB_VERSION", "5.4.6")]);
    let (report, check) = health(&service);
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["message"]
            .as_str()
            .unwrap()
            .contains("major versions must match"),
        "{check}"
    );
    assert_eq!(report["ok"], false);
}

#[test]
fn a_jupyterhub_5_hub_launches_images_built_for_it() {
    require_engine();
    let server = GitServer::start();
    let path = repository(&server, "hub-five", &[]);
    let hub = JupyterHubServer::start_version("5.4.6", &[]);
    // Images get jupyterhub 5 to match; the spawn body is the bare user options (before JupyterHub 6).
    let service = service_on(Some(&hub), &[("KILN_JUPYTERHUB_VERSION", "5.4.6")]);
    let (events, raw) = service.events(&path);
    assert_eq!(phases(&events).last(), Some(&"ready"), "{raw}");
    let ready = events.last().unwrap();
    let image = ready["image"].as_str().unwrap();
    let inside = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "jupyterhub-singleuser",
        image,
        "--version",
    ]);
    assert!(
        String::from_utf8_lossy(&inside.stdout).starts_with("5.4.6"),
        "{inside:?}"
    );
    let (url, token) = (
        ready["url"].as_str().unwrap(),
        ready["token"].as_str().unwrap(),
    );
    let (status, body) = hub.http(
        "GET",
        &format!("{}api/status?token={token}", path_of(url)),
        "",
        "",
    );
    assert_eq!(status, 200, "{body}");
    let user = path_of(url)
        .trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap()
        .to_string();
    let (_, model) = hub.api("GET", &format!("users/{user}"), None);
    assert_eq!(
        model["servers"][""]["user_options"]["image"], image,
        "{model}"
    );
    hub.api("DELETE", &format!("users/{user}"), None);
    remove_image(image);
}
