//! Secrets: a token in a spec, a private build that a request without its credentials tries to
//! join, and the operator's credentials offered to a host of the requester's choosing.

use std::time::Duration;

use super::{build_events, failure};
use crate::support::git_http::GitHttpServer;
use crate::support::service::{Service, escaped};
use crate::support::*;

/// A private repository (Basic auth) served over HTTP, holding a copy of an example.
fn private_repository(
    example: &str,
    user: &str,
    password: &str,
) -> (tempfile::TempDir, GitHttpServer) {
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("private");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    copy_tree(&examples().join(example), &repo);
    git(&repo, &["add", "--all"]);
    git(&repo, &["commit", "--quiet", "-m", "private"]);
    let server = GitHttpServer::start(root.path(), user, password);
    (root, server)
}

fn with_credentials(url: &str, user: &str, password: &str) -> String {
    url.replace("http://", &format!("http://{user}:{password}@"))
}

#[test]
fn a_token_in_a_spec_never_appears_in_answers_logs_events_or_labels() {
    require_engine();
    let token = format!("kiln-secret-{}", unique("token"));
    let (_root, server) = private_repository("python-default", "alice", &token);
    let url = format!("{}/private", server.url());
    let state = tempfile::tempdir().unwrap();
    let log = state.path().join("kiln.log");
    let service = Service::start_logged(
        &state.path().join("state.db"),
        &[
            ("KILN_BUILD_TOKEN", "operator-token"),
            ("RUST_LOG", "debug"),
        ],
        &log,
    );
    let spec = format!("{}/HEAD", escaped(&with_credentials(&url, "alice", &token)));
    let (status, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    // The JSON API is for programs: it needs the operator's token.
    assert_eq!(status, 403, "{started}");
    let (status, response) = service.request(
        "POST",
        "/api/builds",
        "Content-Type: application/json\r\nAuthorization: Bearer operator-token\r\n",
        &serde_json::json!({"provider": "git", "spec": spec}).to_string(),
    );
    assert_eq!(status, 202, "{response}");
    let started: serde_json::Value =
        serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    assert!(id.len() >= 32, "build ids are not guessable: {id}");
    let events = service.api_events(&id, None);
    let (_, built) = events.last().unwrap();
    assert_eq!(built["phase"], "built", "{events:?}");
    let image = built["imageName"].as_str().unwrap().to_string();
    // The same through BinderHub's API, which relays every event.
    let (sse, raw) = service.events(&format!(
        "/build/git/{spec}?build_only=true&build_token=operator-token"
    ));
    assert_eq!(sse.last().unwrap()["phase"], "ready", "{raw}");
    let mut answers = vec![raw, response];
    for path in [
        format!("/api/builds/{id}"),
        "/api/images".to_string(),
        "/health".to_string(),
        "/metrics".to_string(),
    ] {
        answers.push(service.get(&path, None).1);
        answers.push(
            service
                .request("GET", &path, "Authorization: Bearer operator-token\r\n", "")
                .1,
        );
    }
    answers.push(format!("{events:?}"));
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &image,
    ]);
    answers.push(String::from_utf8_lossy(&labels.stdout).to_string());
    answers.push(std::fs::read_to_string(&log).unwrap());
    let history = docker(&["history", "--no-trunc", &image]);
    answers.push(String::from_utf8_lossy(&history.stdout).to_string());
    for answer in &answers {
        assert!(!answer.contains(&token), "the token leaked: {answer}");
    }
    // The private build is not listed for a stranger; the operator sees it.
    let (_, anonymous) = service.json("GET", "/api/images", None);
    assert!(
        !anonymous.to_string().contains(&image),
        "a private image is listed: {anonymous}"
    );
    let (_, operator) = service.request(
        "GET",
        "/api/images",
        "Authorization: Bearer operator-token\r\n",
        "",
    );
    assert!(operator.contains(&image), "{operator}");
    // Its SBOM likewise: not for a stranger, and without the token for the operator.
    let sbom = format!("/api/images/{image}/sbom?format=kiln");
    assert_eq!(
        service.get(&sbom, None).0,
        404,
        "a stranger reads a private image's SBOM"
    );
    let (status, answer) =
        service.request("GET", &sbom, "Authorization: Bearer operator-token\r\n", "");
    assert_eq!(status, 200, "{answer}");
    assert!(
        !answer.contains(&token),
        "the token leaked into the SBOM: {answer}"
    );
    remove_image(&image);
}

#[test]
fn a_request_without_credentials_does_not_join_a_private_build() {
    require_engine();
    let token = format!("kiln-secret-{}", unique("join"));
    // A slow private build, so the second request comes while it runs.
    let root = tempfile::tempdir().unwrap();
    let repo = root.path().join("private");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "--quiet"]);
    std::fs::write(
        repo.join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo {} && sleep 6\n",
            kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
            unique("slow")
        ),
    )
    .unwrap();
    git(&repo, &["add", "--all"]);
    git(&repo, &["commit", "--quiet", "-m", "private"]);
    let server = GitHttpServer::start(root.path(), "alice", &token);
    let url = format!("{}/private", server.url());
    let state = tempfile::tempdir().unwrap();
    let service = std::sync::Arc::new(Service::start_with(&state.path().join("state.db"), &[]));
    let private = {
        let (service, url, token) = (service.clone(), url.clone(), token.clone());
        std::thread::spawn(move || {
            build_events(
                &service,
                &with_credentials(&url, "alice", &token),
                "?build_only=true",
            )
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let before = service.builds_started();
    assert_eq!(before, 1, "the private build runs");
    let stranger = build_events(&service, &url, "?build_only=true");
    let message = failure(&stranger);
    assert!(message.contains("authentication"), "{message}");
    assert!(
        !stranger.iter().any(|e| e["phase"] == "building"),
        "the stranger saw the private build's log: {stranger:?}"
    );
    assert_eq!(
        service.builds_started(),
        2,
        "the stranger got a build of its own"
    );
    let private = private.join().unwrap();
    assert_eq!(private.last().unwrap()["phase"], "ready", "{private:?}");
    remove_image(private.last().unwrap()["imageName"].as_str().unwrap());
}

#[test]
fn the_operators_git_credentials_are_never_sent_to_another_host() {
    require_engine();
    let (_own_root, own) = private_repository("python-default", "kiln", "operator-secret");
    let (_other_root, other) = private_repository("python-default", "someone", "else");
    let state = tempfile::tempdir().unwrap();
    let own_host = own.url().trim_start_matches("http://").to_string();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_GIT_USERNAME", "kiln"),
            ("KILN_GIT_PASSWORD", "operator-secret"),
            ("KILN_GIT_CREDENTIAL_HOSTS", &own_host),
        ],
    );
    // A stranger names another server that asks for credentials: it gets none of the operator's.
    let message = failure(&build_events(
        &service,
        &format!("{}/private", other.url()),
        "?build_only=true",
    ));
    assert!(message.contains("authentication"), "{message}");
    assert!(other.unauthorized_count() > 0, "the other server asked");
    assert!(
        !other
            .credentials_seen()
            .iter()
            .any(|c| c.contains("operator-secret")),
        "the operator's credentials went to another host: {:?}",
        other.credentials_seen()
    );
    // The host they are for gets them, and the build works.
    let events = build_events(
        &service,
        &format!("{}/private", own.url()),
        "?build_only=true",
    );
    assert_eq!(events.last().unwrap()["phase"], "ready", "{events:?}");
    remove_image(events.last().unwrap()["imageName"].as_str().unwrap());
}
