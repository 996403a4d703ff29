//! What running code can do: a session that forks without end, sniffs the loopback traffic or
//! tries to gain privileges; a repository's own Dockerfile that writes into the caches kiln's
//! builds share; a launch link whose `urlpath` leads elsewhere.

use std::time::{Duration, Instant};

use super::build_events;
use crate::support::browser::Browser;
use crate::support::in_process::{InProcess, ScriptedEngine};
use crate::support::service::{Service, escaped};
use crate::support::*;

/// The container of the local session listening on `port`.
fn session_container(port: u16) -> String {
    let all = docker(&["ps", "-q", "--filter", "name=kiln-run-"]);
    for id in String::from_utf8_lossy(&all.stdout).split_whitespace() {
        let cmd = docker(&["inspect", "--format", "{{json .Config.Cmd}}", id]);
        if String::from_utf8_lossy(&cmd.stdout).contains(&format!("--port={port}")) {
            return id.to_string();
        }
    }
    panic!("no session container listens on {port}");
}

fn exec(container: &str, script: &str) -> (bool, String) {
    let out = docker(&["exec", container, "sh", "-c", script]);
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_session_cannot_fork_without_end_sniff_loopback_or_gain_privileges() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "contained");
    let state = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_SESSION_PIDS_LIMIT", "200"),
            ("KILN_SESSION_MEMORY_LIMIT", "768M"),
            ("KILN_SESSION_CPU_LIMIT", "0.5"),
        ],
    );
    let events = build_events(&service, &server.url("contained"), "");
    let ready = events.last().unwrap();
    assert_eq!(ready["phase"], "ready", "{events:?}");
    let url = ready["url"].as_str().unwrap();
    let port: u16 = url["http://127.0.0.1:".len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let container = session_container(port);
    let limits = docker(&[
        "inspect",
        "--format",
        "{{.HostConfig.PidsLimit}} {{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{json .HostConfig.CapDrop}} {{json .HostConfig.SecurityOpt}}",
        &container,
    ]);
    let limits = String::from_utf8_lossy(&limits.stdout).to_string();
    assert!(
        limits.starts_with(&format!("200 {} 500000000 [\"ALL\"]", 768 << 20)),
        "{limits}"
    );
    assert!(limits.contains("no-new-privileges"), "{limits}");

    // A fork bomb stops at the process limit (counted from the host: inside, nothing more can
    // start), and the session answers again once it is over (its init reaps what the bomb left).
    let (_, forks) = exec(
        &container,
        "i=0; while [ $i -lt 400 ]; do sleep 10 & i=$((i+1)); done; true",
    );
    // Threads count as tasks against the limit: Jupyter's server has dozens.
    let tasks = |container: &str| {
        let top = docker(&["top", container, "-eLo", "pid,lwp"]);
        String::from_utf8_lossy(&top.stdout)
            .lines()
            .count()
            .saturating_sub(1)
    };
    let running = tasks(&container);
    assert!(running <= 200, "{running} tasks in the session");
    assert!(
        forks.contains("fork") || forks.contains("Resource"),
        "{forks}"
    );
    let token = ready["token"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while tasks(&container) > 120 || session_status(port, Some(token)) != 200 {
        assert!(Instant::now() < deadline, "the session did not recover");
        std::thread::sleep(Duration::from_millis(500));
    }

    // No raw socket: the loopback traffic of the host (hub tokens, registry credentials) cannot be
    // read, even with host networking.
    let (opened, sniff) = exec(
        &container,
        "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(3)); print(\"opened\")'",
    );
    assert!(!opened && sniff.contains("PermissionError"), "{sniff}");
    // No capabilities, and none to gain through a setuid program.
    let (_, status) = exec(
        &container,
        "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status",
    );
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    remove_sessions(&container);
}

fn remove_sessions(container: &str) {
    docker(&["rm", "-f", container]);
}

/// The mount ids of the package caches in a build log (`--mount=type=cache,id=...`).
fn cache_ids(log: &str) -> Vec<String> {
    log.split("type=cache,id=")
        .skip(1)
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn a_repository_dockerfile_cannot_write_into_the_caches_kilns_builds_share() {
    require_engine();
    let server = GitServer::start();
    let marker = unique("poison");
    // A repository's own Dockerfile writes into the cache ids kiln used to use (predictable).
    let mounts: String = ["kiln-uv-1000", "kiln-pip-1000", "kiln-apt-0"]
        .iter()
        .map(|id| format!("--mount=type=cache,id={id},target=/c/{id},uid=0 "))
        .collect();
    server.commit(
        "poisoner",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN {mounts}sh -c 'for d in /c/*; do echo {marker} > $d/poisoned; done'\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE
            ),
        )],
        "writes shared caches",
    );
    let out = kiln()
        .args(["build", "--json-logs", &server.url("poisoner")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // kiln's own build of a Python repository mounts caches under ids no repository knows.
    server.example("python-requirements", "victim");
    let out = kiln()
        .args(["build", "--json-logs", "--no-cache", &server.url("victim")])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{log}");
    let ids = cache_ids(&log);
    assert!(!ids.is_empty(), "the build mounts package caches: {log}");
    for id in &ids {
        assert!(
            ![
                "kiln-uv-1000",
                "kiln-pip-1000",
                "kiln-apt-0",
                "kiln-apt-lists-0"
            ]
            .contains(&id.as_str()),
            "a predictable cache id: {id}"
        );
    }
    // The salt is not in the image.
    let image = last_event(&out.stdout)["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    let salt = std::fs::read_to_string(
        std::path::Path::new(&std::env::var("HOME").unwrap()).join(".cache/kiln/cache-salt"),
    )
    .unwrap_or_default();
    if !salt.is_empty() {
        let inspect = docker(&["image", "inspect", &image]);
        assert!(!String::from_utf8_lossy(&inspect.stdout).contains(salt.trim()));
    }
    remove_image(&image);
}

/// The environment's steps install what a repository's files name, and so run code it chose (a
/// package's build): the uv cache they use is the repository's and ref's own. A package built for
/// another repository, or for a pull request's ref of the same one, finds nothing of the victim's
/// there (it would fail its build if it did), so it can neither read nor replace it; on the
/// victim's own ref the same probe does find the victim's package, so the probe is not blind.
/// The index is on loopback (standing in for PyPI, passing Jupyter's projects through to it).
#[test]
fn a_package_a_repository_names_cannot_read_or_poison_another_repositorys_uv_cache() {
    require_engine();
    let index = crate::support::package_index::PackageIndex::mirror_of_pypi();
    index.publish("kiln-test-victim", "1.0");
    index.publish_probe("kiln-test-probe", "1.0", "*kiln?test?victim*");
    let server = GitServer::start();
    server.commit(
        "victim",
        &[("requirements.txt", "kiln-test-victim==1.0\n")],
        "fills its cache",
    );
    let build = |name: &str, reference: Option<&str>| {
        let image = format!("kiln-test/{}:1", unique(name));
        let out = kiln()
            .env("KILN_PYPI_MIRROR", index.url())
            .args(["build", &server.url(name), "--json-logs"])
            .args(["--image-name", &image])
            .args(reference.map(|r| ["--ref", r]).into_iter().flatten())
            .output()
            .unwrap();
        remove_image(&image);
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let (ok, text) = build("victim", None);
    assert!(ok, "{text}");
    let probe = "kiln-test-probe==1.0\n";
    server.commit(
        "attacker",
        &[("requirements.txt", probe)],
        "a package that probes the cache",
    );
    let (ok, text) = build("attacker", None);
    assert!(ok, "another repository's package saw the cache: {text}");
    let dir = server.repo_dir("victim");
    git(&dir, &["checkout", "--quiet", "-b", "pull-1"]);
    server.commit("victim", &[("requirements.txt", probe)], "a pull request");
    git(&dir, &["checkout", "--quiet", "-"]);
    let (ok, text) = build("victim", Some("pull-1"));
    assert!(ok, "another ref's package saw the cache: {text}");
    server.commit(
        "victim",
        &[("requirements.txt", probe)],
        "the same probe on the default branch",
    );
    let (ok, text) = build("victim", None);
    assert!(!ok, "{text}");
    assert!(text.contains("the cache holds"), "{text}");
}

#[test]
fn a_launch_link_cannot_open_javascript_or_another_site() {
    let service = InProcess::start(
        ScriptedEngine::building(
            "kiln/page:0123456789012345678901234567890123456789",
            2,
            Duration::ZERO,
        ),
        |_| {},
    );
    let browser = Browser::start();
    let spec = format!("git/{}/HEAD", escaped("git://127.0.0.1:9/page"));
    for urlpath in [
        "javascript:alert(document.domain)",
        "JavaScript:alert(1)",
        "//evil.test/",
        "/\\evil.test/",
        "https://evil.test/steal",
        "../../../hub/admin",
    ] {
        let link = format!(
            "http://127.0.0.1:{}/v2/{spec}?urlpath={}",
            service.port,
            url::form_urlencoded::byte_serialize(urlpath.as_bytes()).collect::<String>()
        );
        browser.call("POST", "/url", Some(serde_json::json!({"url": link})));
        let deadline = Instant::now() + Duration::from_secs(30);
        let landed = loop {
            assert!(browser.alert().is_none(), "{urlpath}: a script ran");
            let url = browser.url();
            if url.contains("token=") {
                break url;
            }
            assert!(Instant::now() < deadline, "{urlpath}: still at {url}");
            std::thread::sleep(Duration::from_millis(200));
        };
        assert!(
            landed.starts_with("http://127.0.0.1:"),
            "{urlpath}: {landed}"
        );
        assert!(!landed.contains("evil.test"), "{urlpath}: {landed}");
        // A scheme or another host is never followed: the session's start page opens instead. (A
        // local session is a whole origin of its own, so a relative path stays inside it.)
        if urlpath.contains(':') || urlpath.starts_with("//") || urlpath.starts_with("/\\") {
            assert!(landed.contains("/lab?token="), "{urlpath}: {landed}");
        }
    }
    browser.screenshot("hostile-urlpath.png");
}
