//! What an image holds, beside it in a real registry (CNCF Distribution on loopback, which has no
//! referrers API: the referrers tag schema applies): the record and SBOM attached at push, the one
//! of a natively assembled image taken from its environment, and `kiln diff` between two commits.

use crate::support::*;

fn push(server: &GitServer, repo: &str, prefix: &str) -> Vec<serde_json::Value> {
    let out = kiln()
        .args(["build", "--json-logs", "--push", "--image-prefix", prefix])
        .arg(server.url(repo))
        .output()
        .unwrap();
    let events = events(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    events
}

/// The referrers tag index of `image` (`sha256-<hex>`), read over plain HTTP.
fn referrers(registry: &Registry, image: &str) -> Vec<serde_json::Value> {
    let digest = registry.digest(image, None).unwrap();
    let repository = image.split_once('/').unwrap().1.rsplit_once(':').unwrap().0;
    let url = format!(
        "http://{}/v2/{repository}/manifests/{}",
        registry.host(),
        digest.replacen(':', "-", 1)
    );
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-H",
            "Accept: application/vnd.oci.image.index.v1+json",
            &url,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "no referrers index at {url}");
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

fn sbom_of(image: &str, from: &str, format: &str) -> Vec<u8> {
    let out = kiln()
        .args(["sbom", image, "--from", from, "--format", format])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln sbom {image}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn pushed_images_carry_their_record_beside_them_and_a_changed_pin_is_exactly_the_diff() {
    require_engine();
    let registry = Registry::start(None);
    let prefix = format!("{}/binder-", registry.host());
    let server = GitServer::start();
    server.example("python-requirements", "pins");

    // 1. Built on the engine and pushed: the SBOM and the record are attached as referrers.
    let events = push(&server, "pins", &prefix);
    let built = events.last().unwrap();
    let first = built["imageName"].as_str().unwrap().to_string();
    let listed = referrers(&registry, &first);
    let types: Vec<&str> = listed
        .iter()
        .map(|d| d["artifactType"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"application/vnd.cyclonedx+json"),
        "{types:?}"
    );
    assert!(
        types.contains(&"application/vnd.kiln.contents.v1+json"),
        "{types:?}"
    );
    let bom = sbom_of(&first, "registry", "cyclonedx");
    sbom::assert_valid_cyclonedx(&bom);
    let bom: serde_json::Value = serde_json::from_slice(&bom).unwrap();
    assert!(
        sbom::components(&bom, "python").contains(&("six".to_string(), "1.16.0".to_string())),
        "six 1.16.0 is listed"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&sbom_of(&first, "registry", "kiln")).unwrap();
    assert_eq!(record["source"]["url"], server.url("pins").as_str());
    // The labels in the registry name the record kiln attached.
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{first}"),
        ])
        .output()
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspect["Labels"]["io.kiln.contents.digest"],
        built["contentsDigest"]
    );
    assert_eq!(
        inspect["Labels"]["io.kiln.sbom.digest"],
        built["sbomDigest"]
    );

    // 2. A code-only commit is assembled without an engine, and still has its record: the
    //    environment's packages, its own commit.
    let second = server.commit("pins", &[("notes.md", "code only\n")], "code only");
    let events = push(&server, "pins", &prefix);
    let text: String = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(text.contains("without a container"), "{text}");
    let assembled = events.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    let record: serde_json::Value =
        serde_json::from_slice(&sbom_of(&assembled, "registry", "kiln")).unwrap();
    assert_eq!(record["source"]["commit"], second.as_str());
    let diff = kiln()
        .args(["diff", &first, &assembled, "--json", "--from", "registry"])
        .output()
        .unwrap();
    let diff: serde_json::Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert!(diff.get("packages").is_none(), "the same packages: {diff}");
    // The record in the pulled image is the one beside it.
    assert!(docker(&["pull", "-q", &assembled]).status.success());
    assert_eq!(
        sbom_of(&assembled, "engine", "kiln"),
        sbom_of(&assembled, "registry", "kiln")
    );

    // 3. One pin changes: kiln diff shows exactly that change.
    server.commit(
        "pins",
        &[("requirements.txt", "six==1.17.0\n")],
        "six 1.17.0",
    );
    let events = push(&server, "pins", &prefix);
    let third = events.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    let out = kiln()
        .args(["diff", &first, &third, "--json", "--from", "registry"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let diff: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        diff["packages"],
        serde_json::json!([{
            "manager": "python",
            "environment": "/srv/venv",
            "changed": [{"name": "six", "old": "1.16.0", "new": "1.17.0"}],
        }]),
        "{diff}"
    );
    assert!(diff["size"]["old"].as_u64().unwrap() > 0);
    // The same two images named by their digests.
    let by_digest = |image: &str| {
        let repository = image.rsplit_once(':').unwrap().0;
        format!("{repository}@{}", registry.digest(image, None).unwrap())
    };
    let out = kiln_ok(&[
        "diff",
        &by_digest(&first),
        &by_digest(&third),
        "--json",
        "--from",
        "registry",
    ]);
    let by_digests: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(by_digests["packages"], diff["packages"], "{by_digests}");
    // An image against what a repository's current files give (built on the engine here).
    let out = kiln_ok(&["diff", &first, "--json", "--source", &server.url("pins")]);
    let against: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(against["packages"], diff["packages"], "{against}");
    let table = kiln()
        .args(["diff", &first, &third, "--from", "registry"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("six") && table.contains("1.16.0") && table.contains("1.17.0"),
        "{table}"
    );
}

#[test]
fn an_image_without_a_record_is_listed_from_the_image_with_a_note() {
    require_engine();
    let out = kiln()
        .args([
            "sbom",
            kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
            "--from",
            "engine",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no record"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("libc6"));
    // Not in any registry either: a clear refusal, not an empty list.
    let out = kiln()
        .args(["sbom", "127.0.0.1:1/nothing:here", "--from", "registry"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());
}

#[test]
fn an_image_without_a_shell_is_built_without_a_record_and_a_warning_says_why() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY hello.txt /\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("hello.txt"), "no shell here\n").unwrap();
    let image = format!("kiln-test/{}:1", unique("no-shell"));
    let out = kiln()
        .args(["build", "--json-logs", "--image-name", &image])
        .arg(dir.path())
        .output()
        .unwrap();
    let events = events(&out.stdout);
    assert!(
        out.status.success(),
        "{events:?} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "built");
    assert!(last.get("contentsDigest").is_none(), "{last}");
    let text: String = events
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(text.contains("has no record of what it holds"), "{text}");
    remove_image(&image);
}
