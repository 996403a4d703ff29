//! What a stranger can grow: a checkout that expands past the limit, a build that never ends, the
//! build queue, a flood of log lines, open streams.

use std::time::{Duration, Instant};

use super::{build_events, failure};
use crate::support::service::{Service, escaped};
use crate::support::*;

#[test]
fn a_checkout_bomb_is_stopped_before_it_is_checked_out() {
    require_engine();
    let server = GitServer::start();
    let dir = server.init("bomb");
    // 64 MiB of zeros: a pack of a few hundred KiB that expands sixty-four-fold.
    let file = std::fs::File::create(dir.join("zeros.bin")).unwrap();
    file.set_len(64 << 20).unwrap();
    server.commit("bomb", &[], "a small pack, a large tree");
    let state = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_MAX_REPO_BYTES", "16M")],
    );
    let message = failure(&build_events(
        &service,
        &server.url("bomb"),
        "?build_only=true",
    ));
    assert!(
        message.contains(&format!("larger than the limit of {} bytes", 16 << 20)),
        "{message}"
    );
}

/// Whether a process whose command line holds `marker` runs on this machine.
fn process_with(marker: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(marker))
            .unwrap_or(false)
    })
}

#[test]
fn a_post_build_that_sleeps_forever_is_stopped_at_the_build_timeout() {
    require_engine();
    let server = GitServer::start();
    // A marker only this build's sleep carries on its command line.
    let marker = format!("86400.{}", std::process::id());
    server.commit(
        "sleeper",
        &[("postBuild", &format!("#!/bin/sh\nexec sleep {marker}\n"))],
        "postBuild never ends",
    );
    std::process::Command::new("chmod")
        .args([
            "+x",
            &server
                .repo_dir("sleeper")
                .join("postBuild")
                .display()
                .to_string(),
        ])
        .status()
        .unwrap();
    server.commit("sleeper", &[], "executable postBuild");
    let state = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_BUILD_MAX_AGE", "40")],
    );
    let started = Instant::now();
    let message = failure(&build_events(
        &service,
        &server.url("sleeper"),
        "?build_only=true",
    ));
    assert!(
        message.contains("ran longer than the limit of 40 s"),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(120));
    // The engine's build was stopped with it: the sleep is gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while process_with(&marker) {
        assert!(Instant::now() < deadline, "the build's sleep still runs");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn the_build_queue_is_bounded_and_the_operator_can_cancel() {
    require_engine();
    let server = GitServer::start();
    for name in ["slow-a", "slow-b", "slow-c"] {
        server.commit(
            name,
            &[(
                "Dockerfile",
                &format!(
                    "FROM {}\nRUN echo {} && sleep 120\n",
                    kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
                    unique(name)
                ),
            )],
            "slow",
        );
    }
    let state = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_MAX_BUILDS", "1"),
            ("KILN_MAX_QUEUED_BUILDS", "1"),
            ("KILN_BUILD_TOKEN", "operator-token"),
        ],
    );
    let start = |name: &str| {
        let body = serde_json::json!({"provider": "git", "spec": format!("{}/HEAD", escaped(&server.url(name)))});
        let (status, response) = service.request(
            "POST",
            "/api/builds",
            "Content-Type: application/json\r\nAuthorization: Bearer operator-token\r\n",
            &body.to_string(),
        );
        let json: serde_json::Value =
            serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap_or("null"))
                .unwrap_or_default();
        (status, json)
    };
    let (status, running) = start("slow-a");
    assert_eq!(status, 202, "{running}");
    let (status, queued) = start("slow-b");
    assert_eq!(status, 202, "{queued}");
    let (status, refused) = start("slow-c");
    assert_eq!(status, 429, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("queue is full"),
        "{refused}"
    );
    // Cancelling needs the operator; then the builds end at once.
    for id in [&running["id"], &queued["id"]] {
        let id = id.as_str().unwrap();
        assert_eq!(
            service
                .request("DELETE", &format!("/api/builds/{id}"), "", "")
                .0,
            403
        );
        let (status, _) = service.request(
            "DELETE",
            &format!("/api/builds/{id}"),
            "Authorization: Bearer operator-token\r\n",
            "",
        );
        assert_eq!(status, 202);
        let events = service.api_events(id, None);
        let (_, last) = events.last().unwrap();
        assert_eq!(last["phase"], "failed");
        assert!(
            last["message"].as_str().unwrap().contains("cancelled"),
            "{last}"
        );
    }
}

#[test]
fn a_flood_of_log_lines_is_cut_at_the_limit() {
    require_engine();
    let server = GitServer::start();
    server.commit(
        "flood",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN seq 1 30000 && echo {}\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
                unique("flood")
            ),
        )],
        "many lines",
    );
    let state = tempfile::tempdir().unwrap();
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_MAX_LOG_LINES", "500"), ("KILN_BUILD_TOKEN", "t")],
    );
    let (events, _) = service.events(&format!(
        "/build/git/{}/HEAD?build_only=true&build_token=t",
        escaped(&server.url("flood"))
    ));
    assert_eq!(events.last().unwrap()["phase"], "ready", "{events:?}");
    // 500 lines, the note that the rest is not kept, then built and ready.
    assert!(events.len() <= 503, "{} events", events.len());
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap_or_default()
            .contains("later lines are not kept")),
        "no note of the cut"
    );
    remove_image(events.last().unwrap()["imageName"].as_str().unwrap());
}

/// The classic builder applies per-build limits (BuildKit takes none through the engine's API; the
/// README says how to bound it): a step that eats memory is stopped.
#[test]
fn a_build_step_that_eats_memory_is_stopped_at_the_build_memory_limit() {
    require_engine();
    let server = GitServer::start();
    server.commit(
        "hungry",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {} && perl -e '$x = \"a\" x (400 * 1024 * 1024); print length $x'\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
                unique("hungry")
            ),
        )],
        "eats 400 MiB",
    );
    let state = tempfile::tempdir().unwrap();
    // With room enough, the step runs (the control).
    let roomy = Service::start_with(
        &state.path().join("roomy.db"),
        &[("KILN_BUILDKIT", "0"), ("KILN_BUILD_MEMORY_LIMIT", "1G")],
    );
    let events = build_events(
        &roomy,
        &server.url("hungry"),
        "?build_only=true&build_token=",
    );
    assert_eq!(events.last().unwrap()["phase"], "ready", "{events:?}");
    remove_image(events.last().unwrap()["imageName"].as_str().unwrap());
    drop(roomy);
    let service = Service::start_with(
        &state.path().join("state.db"),
        &[("KILN_BUILDKIT", "0"), ("KILN_BUILD_MEMORY_LIMIT", "96M")],
    );
    let message = failure(&build_events(
        &service,
        &server.url("hungry"),
        "?build_only=true",
    ));
    // Killed by the kernel's OOM killer: exit code 137.
    assert!(message.contains("137"), "{message}");
}

/// kiln records what an image holds by running the image's own interpreters, which the
/// repository's `postBuild` can change: here a `.pth` file, run at every start of Python, forks
/// 300 processes. The collection is held like a session (processes, memory, CPU, no
/// capabilities): the forks stop at the limit, and the build says that the image has no record
/// and why.
#[test]
fn a_post_build_that_makes_python_fork_is_held_when_kiln_records_the_image() {
    require_engine();
    let server = GitServer::start();
    let bomb = "import os, sys, time\n\
                n = 0\n\
                try:\n    \
                    for n in range(300):\n        \
                        if os.fork() == 0:\n            \
                            time.sleep(20)\n            \
                            os._exit(0)\n\
                except OSError as e:\n    \
                    print('not a record')\n    \
                    sys.exit('kiln-test: forks stopped after %d: %s' % (n, e))\n\
                print('not a record')\n\
                sys.exit('kiln-test: forked all 300')\n";
    let post_build = "#!/bin/bash\nset -euo pipefail\n\
                      site=$(python -c 'import site; print(site.getsitepackages()[0])')\n\
                      cp bomb.py \"$site/kiln_test_bomb.py\"\n\
                      echo 'import kiln_test_bomb' > \"$site/kiln-test-bomb.pth\"\n";
    server.commit(
        "forker",
        &[
            ("postBuild", post_build),
            ("bomb.py", bomb),
            ("requirements.txt", ""),
        ],
        "python forks whenever it starts",
    );
    let image = format!("kiln-test/{}:1", unique("forker"));
    let out = kiln()
        .args(["build", "--json-logs", "--image-name", &image])
        .arg(server.url("forker"))
        .output()
        .unwrap();
    remove_image(&image);
    let log = messages(&events(&out.stdout));
    assert!(out.status.success(), "{log}");
    assert!(log.contains("kiln-test: forks stopped after"), "{log}");
    assert!(log.contains("has no record of what it holds"), "{log}");
    assert!(!log.contains("forked all 300"), "{log}");
}
