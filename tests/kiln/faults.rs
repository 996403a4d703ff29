//! Bad input and faults: each ends in a `failed` event with a message that says what to do, and
//! leaves no image behind.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use crate::support::*;

fn failed_build(args: &[&str]) -> (String, Vec<serde_json::Value>) {
    let out = kiln()
        .args(["build", "--json-logs"])
        .args(args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "the build must fail: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = events(&out.stdout);
    let last = events.last().expect("events").clone();
    assert_eq!(last["phase"], "failed", "{last}");
    (last["message"].as_str().unwrap().to_string(), events)
}

fn assert_no_image(name: &str) {
    let inspect = docker(&["image", "inspect", name]);
    assert!(
        !inspect.status.success(),
        "{name} must not exist after a failed build"
    );
}

#[test]
fn unreachable_repository() {
    let url = format!("git://127.0.0.1:{}/nothing", free_port());
    let (message, _) = failed_build(&[&url]);
    assert!(
        message.contains(&format!("cannot reach the repository {url}")),
        "{message}"
    );
}

#[test]
fn unknown_ref_lists_what_exists() {
    let server = GitServer::start();
    server.commit("refs", &[("README.md", "x")], "first");
    let (message, _) = failed_build(&[&server.url("refs"), "--ref", "no-such-branch"]);
    assert!(
        message.contains("has no branch, tag or commit \"no-such-branch\"; it has: main"),
        "{message}"
    );
}

#[test]
fn repository_over_the_size_limit() {
    require_engine();
    let server = GitServer::start();
    let big = "0123456789abcdef".repeat(16 * 1024);
    server.commit("big", &[("data.txt", big.as_str())], "big");
    let (message, _) = failed_build(&[&server.url("big"), "--max-repo-bytes", "100000"]);
    assert!(
        message.contains("larger than the limit of 100000 bytes"),
        "{message}"
    );
    assert!(message.contains("--max-repo-bytes"), "{message}");
}

#[test]
fn failing_post_build_reports_exit_code_and_log_tail() {
    require_engine();
    let server = GitServer::start();
    server.commit(
        "postbuild",
        &[("postBuild", "#!/bin/sh\necho kiln-before-failure\nexit 3\n")],
        "fails",
    );
    let image = format!("kiln-test/{}:1", unique("postbuild"));
    let (message, _) = failed_build(&[&server.url("postbuild"), "--image-name", &image]);
    assert!(message.contains("exit code: 3"), "{message}");
    assert!(
        message.contains("kiln-before-failure"),
        "the log tail is in the message: {message}"
    );
    assert_no_image(&image);
}

#[test]
fn apt_package_that_does_not_exist() {
    require_engine();
    let server = GitServer::start();
    server.commit("apt", &[("apt.txt", "kiln-no-such-package\n")], "apt");
    let image = format!("kiln-test/{}:1", unique("apt"));
    let (message, _) = failed_build(&[&server.url("apt"), "--image-name", &image]);
    assert!(
        message.contains("Unable to locate package kiln-no-such-package"),
        "{message}"
    );
    assert_no_image(&image);
}

#[test]
fn no_engine_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let out = kiln()
        .env(
            "DOCKER_HOST",
            format!("unix://{}/none.sock", dir.path().display()),
        )
        .args([
            "build",
            "--json-logs",
            &examples().join("python-default").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = last_event(&out.stdout)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("no container engine answers at unix://"),
        "{message}"
    );
    assert!(message.contains("DOCKER_HOST"), "{message}");
}

/// An engine started without a bridge (as this machine's is; the test starts its own, so it holds
/// on a machine whose main engine has one).
#[test]
fn engine_without_default_network_says_to_set_kiln_network() {
    require_engine();
    let engine = SecondEngine::start();
    let out = kiln()
        .env_remove("KILN_NETWORK")
        .env("DOCKER_HOST", &engine.host)
        .args([
            "build",
            "--json-logs",
            &examples().join("python-default").to_string_lossy(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let message = last_event(&out.stdout)["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("set KILN_NETWORK=host"), "{message}");
}

#[test]
fn bad_sources_and_bad_plans_fail_before_any_build() {
    let (message, _) = failed_build(&["ftp://example.invalid/repo"]);
    assert!(message.contains("not one kiln fetches"), "{message}");
    require_engine();
    let (message, _) = failed_build(&[&examples().join("error-apt-invalid").to_string_lossy()]);
    assert!(message.contains("apt.txt:2:"), "{message}");
}

/// A second engine, started for this test only, is stopped while it builds.
#[test]
fn engine_stopped_mid_build() {
    require_engine();
    let mut engine = SecondEngine::start();
    engine.load_base_image();
    let host = engine.host.clone();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        format!(
            "FROM {}\nRUN echo kiln-started-slow-step && sleep 120\n",
            kiln_buildpacks::options::DEFAULT_BASE_IMAGE
        ),
    )
    .unwrap();
    let mut build = kiln()
        .env("DOCKER_HOST", &host)
        .args([
            "build",
            "--json-logs",
            "--image-name",
            "kiln-test/stopped:1",
        ])
        .arg(repo.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(build.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let started = line.contains("kiln-started-slow-step")
            && line.contains("\"building\"")
            && !line.contains("RUN ");
        seen.push(line);
        if started {
            break;
        }
    }
    engine.stop();
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = build.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen:?} {rest:?}");
    let last: serde_json::Value =
        serde_json::from_str(rest.last().or(seen.last()).unwrap()).unwrap();
    assert_eq!(last["phase"], "failed", "{last}");
}

#[test]
fn repository_with_too_many_files() {
    require_engine();
    let server = GitServer::start();
    let files: Vec<(String, String)> = (0..12)
        .map(|i| (format!("data/{i}.txt"), i.to_string()))
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    server.commit("many", &refs, "many files");
    let (message, _) = failed_build(&[&server.url("many"), "--max-repo-files", "5"]);
    assert!(
        message.contains("larger than the limit of 5 files"),
        "{message}"
    );
}
