//! `kiln run`: builds when needed, prints the session URL with its token, and the session answers
//! `/api/status` with that token; stopping kiln removes the container.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn run_prints_a_url_whose_token_opens_the_session() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "session");
    let (mut child, url, port, token) =
        start_kiln_run(kiln().args(["run", &server.url("session")]));
    assert!(url.contains("/lab?token="), "{url}");

    let deadline = Instant::now() + Duration::from_secs(90);
    while session_status(port, Some(&token)) != 200 {
        assert!(
            Instant::now() < deadline,
            "the session did not answer /api/status in 90 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        session_status(port, None),
        403,
        "without the token the session refuses"
    );

    // Stopping kiln (by its PID) removes the container.
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let code = child.wait().unwrap();
    assert!(!code.success());
    let left = docker(&[
        "ps",
        "-a",
        "--filter",
        "name=kiln-run-",
        "--format",
        "{{.Names}} {{.Image}}",
    ]);
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.contains("kiln/reuse") && !left.contains("session"),
        "containers left: {left}"
    );
    assert_eq!(session_status(port, Some(&token)), 0, "the session is gone");
}

#[test]
fn run_with_a_command_streams_its_output_and_exit_code() {
    require_engine();
    let example = examples().join("python-default");
    let out = kiln()
        .args([
            "run",
            &example.to_string_lossy(),
            "--",
            "sh",
            "-c",
            "echo kiln-hello-from-$(whoami); exit 7",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&out.stderr).contains("kiln-hello-from-jovyan"));
}
