//! Attacks on communities: one community's admin acting on another, a catalogue source that
//! names the service's own disk or a private address, a community file with a secret that must
//! not be shown, and a stranger promoting or pruning. In-process (a scripted engine): what is
//! tried is the service's admission and the catalogue's refusals.

use std::time::Duration;

use serde_json::Value;

use crate::support::in_process::{InProcess, ScriptedEngine};

fn sha256(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

fn service(files: &[(&str, String)]) -> (InProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let communities = dir.path().to_path_buf();
    let service = InProcess::start(
        ScriptedEngine::building("kiln/scripted:built", 0, Duration::ZERO),
        move |config| {
            config.communities_dir = Some(communities);
            // One tick at the start (entries never checked), then none during the test.
            config.catalog_tick_seconds = 3600;
        },
    );
    (service, dir)
}

/// Wait for the scheduler's first checks (of entries never checked) to end, so that the test's
/// own checks do not find the entries held.
fn wait_until_checked(service: &InProcess, community: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, catalog) = service.json(
            "GET",
            &format!("/api/communities/{community}/catalog"),
            None,
        );
        let entries = catalog["entries"].as_array().cloned().unwrap_or_default();
        if entries.iter().all(|e| !e["last_check"].is_null()) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no first checks: {catalog}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn post(service: &InProcess, path: &str, token: Option<&str>) -> (u16, Value) {
    let headers = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    let (status, body) = service.request("POST", path, &headers, "");
    let json = body.split("\r\n\r\n").nth(1).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[test]
fn another_communitys_admin_token_or_a_stranger_cannot_check_promote_or_prune() {
    let (service, _dir) = service(&[
        (
            "physics.toml",
            format!(
                "name = \"Physics\"\n[admins]\ntoken_sha256 = \"{}\"\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"https://git.example/p.git\"\n",
                sha256("physics-token")
            ),
        ),
        (
            "biology.toml",
            format!(
                "name = \"Biology\"\n[admins]\ntoken_sha256 = \"{}\"\n",
                sha256("biology-token")
            ),
        ),
    ]);
    wait_until_checked(&service, "physics");
    for token in [Some("biology-token"), None, Some("physics-token-")] {
        for path in [
            "/api/communities/physics/entries/py/check?wait=true",
            "/api/communities/physics/check",
            "/api/communities/physics/entries/py/versions/1/promote",
            "/api/communities/physics/retention?apply=true",
        ] {
            let (status, body) = post(&service, path, token);
            assert_eq!(status, 403, "{token:?} {path}: {body}");
        }
    }
    // The right token gets past admission (there is no version 1: 404).
    let (status, body) = post(
        &service,
        "/api/communities/physics/entries/py/versions/1/promote",
        Some("physics-token"),
    );
    assert_eq!(status, 404, "{body}");
}

#[test]
fn a_catalogue_source_naming_the_services_disk_or_a_private_address_is_refused() {
    let (service, _dir) = service(&[(
        "lab.toml",
        format!(
            "name = \"Lab\"\n[admins]\ntoken_sha256 = \"{}\"\n\n[[entry]]\nslug = \"disk\"\nname = \"D\"\nsource = \"/etc\"\n\n[[entry]]\nslug = \"file\"\nname = \"F\"\nsource = \"file:///etc/kiln-repo\"\n\n[[entry]]\nslug = \"private\"\nname = \"P\"\nsource = \"http://10.1.2.3/repo.git\"\n",
            sha256("lab-token")
        ),
    )]);
    wait_until_checked(&service, "lab");
    for (slug, refusal) in [
        ("disk", "is not a repository URL"),
        ("file", "file:// repositories cannot be catalogue sources"),
        ("private", "10.1.2.3"),
    ] {
        let (status, body) = post(
            &service,
            &format!("/api/communities/lab/entries/{slug}/check?wait=true"),
            Some("lab-token"),
        );
        let text = body.to_string();
        assert!(
            (status == 409 || body["outcome"] == "failed") && text.contains(refusal),
            "{slug}: {status} {text}"
        );
    }
    assert_eq!(
        service
            .engine
            .builds
            .load(std::sync::atomic::Ordering::SeqCst),
        0,
        "nothing was built"
    );
}

#[test]
fn a_credential_in_a_catalogue_source_never_reaches_the_catalogue_or_the_profile_list() {
    let (service, _dir) = service(&[(
        "lab.toml",
        "name = \"Lab\"\n\n[[entry]]\nslug = \"py\"\nname = \"Py\"\nsource = \"https://robot:s3cret-token@git.example/lab.git\"\n".to_string(),
    )]);
    // The first load's check fails (git.example does not resolve here); its error is shown.
    wait_until_checked(&service, "lab");
    for path in [
        "/api/communities/lab/catalog",
        "/communities/lab/profiles",
        "/communities",
        "/communities/lab",
    ] {
        let (status, body) = service.request("GET", path, "", "");
        assert_eq!(status, 200, "{path}: {body}");
        assert!(!body.contains("s3cret-token"), "{path}: {body}");
    }
}

/// A catalogue entry whose smoke test tries to take the service's machine: one allocates a
/// gigabyte, one forks two hundred processes. Smoke tests run within a session's limits (here
/// `KILN_SESSION_MEMORY_LIMIT=256m`, `KILN_SESSION_PIDS_LIMIT=64`, on the real engine), so both
/// are stopped and their versions are broken, never offered.
#[test]
fn a_smoke_test_that_hogs_memory_or_forks_without_end_is_held_to_a_sessions_limits() {
    crate::support::require_engine();
    let git = crate::support::GitServer::start();
    git.example("python-default", "smoke-hog");
    let source = git.url("smoke-hog");
    let communities = tempfile::tempdir().unwrap();
    let hog = r#"["python", "-c", "b = bytearray(1 << 30); print('allocated a gigabyte')"]"#;
    let forks = r#"["python", "-c", "import os, time\nfor i in range(200):\n    if os.fork() == 0:\n        time.sleep(30)\n        os._exit(0)\nprint('forked 200')"]"#;
    std::fs::write(
        communities.path().join("lab.toml"),
        format!(
            "name = \"Lab\"\n\n[[entry]]\nslug = \"hog\"\nname = \"Hog\"\nsource = \"{source}\"\nsmoke = {hog}\n\n[[entry]]\nslug = \"forks\"\nname = \"Forks\"\nsource = \"{source}\"\nsmoke = {forks}\n"
        ),
    )
    .unwrap();
    let state = tempfile::tempdir().unwrap();
    let service = crate::support::service::Service::start_with(
        &state.path().join("state.db"),
        &[
            ("KILN_COMMUNITIES_DIR", communities.path().to_str().unwrap()),
            ("KILN_SESSION_MEMORY_LIMIT", "256m"),
            ("KILN_SESSION_PIDS_LIMIT", "64"),
        ],
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let catalog = loop {
        let (_, catalog) = service.json("GET", "/api/communities/lab/catalog", None);
        let entries = catalog["entries"].as_array().cloned().unwrap_or_default();
        if entries.len() == 2 && entries.iter().all(|e| !e["last_check"].is_null()) {
            break catalog;
        }
        assert!(std::time::Instant::now() < deadline, "{catalog:#}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let version = |slug: &str| {
        catalog["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["slug"] == slug)
            .map(|e| e["versions"][0].clone())
            .unwrap()
    };
    let (hog, forks) = (version("hog"), version("forks"));
    assert_eq!(hog["state"], "broken", "{catalog:#}");
    assert!(
        hog["reason"].as_str().unwrap().contains("exited 137"),
        "killed at its memory limit: {hog:#}"
    );
    assert_eq!(forks["state"], "broken", "{catalog:#}");
    assert!(
        forks["reason"]
            .as_str()
            .unwrap()
            .contains("Resource temporarily unavailable"),
        "stopped at its process limit: {forks:#}"
    );
    let (_, profiles) = service.json("GET", "/communities/lab/profiles", None);
    assert_eq!(profiles, serde_json::json!([]), "nothing offered");
    for v in [hog, forks] {
        crate::support::remove_image(v["image"].as_str().unwrap());
    }
}
