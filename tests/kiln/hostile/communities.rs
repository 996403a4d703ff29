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
