//! Locks for a Python environment, against a package index on loopback (a PEP 503 index made by
//! the test, standing in for PyPI, whose packages this test cannot change): the lock with hashes
//! recorded at build time, `kiln build --locked` after the index gained a newer version, a lock
//! that no longer installs, and `kiln lock` writing the pins into a checkout.

use crate::support::package_index::PackageIndex;
use crate::support::*;

const PACKAGE: &str = "kiln-test-pin";

fn build(args: &[&str]) -> (bool, Vec<serde_json::Value>, String) {
    let out = kiln()
        .args(["build", "--json-logs"])
        .args(args)
        .output()
        .unwrap();
    let events = events(&out.stdout);
    let log = messages(&events);
    (out.status.success(), events, log)
}

fn record(image: &str) -> serde_json::Value {
    let out = kiln_ok(&["sbom", image, "--from", "engine", "--format", "kiln"]);
    serde_json::from_slice(&out).unwrap()
}

fn package<'a>(record: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    record["python"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == "/srv/venv")
        .and_then(|e| {
            e["packages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == name)
        })
        .unwrap_or_else(|| panic!("{name} is not in /srv/venv"))
}

/// The version of the test package that the image imports (asked of the image itself).
fn imported(image: &str) -> String {
    let code = "import kiln_test_pin; print(kiln_test_pin.__version__)";
    in_image(image, &["python", "-c", code]).trim().to_string()
}

#[test]
fn locked_rebuilds_the_same_python_packages_after_the_index_gained_a_newer_version() {
    require_engine();
    let index = PackageIndex::start();
    let sha_10 = index.publish(PACKAGE, "1.0");
    let server = GitServer::start();
    let requirements = format!("--extra-index-url {}\n{PACKAGE}\n", index.url());
    // apt.txt names a package the base image has, so that its pin costs no download.
    server.commit(
        "pins",
        &[("requirements.txt", &requirements), ("apt.txt", "less\n")],
        "unpinned",
    );
    let name = |what: &str| format!("kiln-test/{}:1", unique(what));
    let (first, locked, locked_again) =
        (name("lock-first"), name("lock-locked"), name("lock-gone"));

    // 1. Built: the record holds the lock made at build time, with the hashes of every file of
    //    each version, and the indexes it came from.
    let (ok, _, log) = build(&["--image-name", &first, &server.url("pins")]);
    assert!(ok, "{log}");
    let held = record(&first);
    let pin = package(&held, PACKAGE);
    assert_eq!(pin["version"], "1.0");
    assert_eq!(pin["lock_hashes"], serde_json::json!([sha_10]));
    let jupyterlab = package(&held, "jupyterlab");
    assert!(
        !jupyterlab["lock_hashes"].as_array().unwrap().is_empty(),
        "packages from PyPI are locked with their hashes too: {jupyterlab}"
    );
    // A package built for many platforms keeps only the hashes of the files that install here
    // (PyPI lists dozens of pyzmq wheels for each version).
    let pyzmq = package(&held, "pyzmq")["lock_hashes"]
        .as_array()
        .unwrap()
        .len();
    assert!((1..=2).contains(&pyzmq), "pyzmq keeps {pyzmq} hashes");
    let venv = held["python"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["prefix"] == "/srv/venv")
        .unwrap();
    assert!(
        venv["indexes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.as_str().unwrap().ends_with(&index.url())),
        "{venv}"
    );

    // 2. The index gains 1.1: resolving the repository's files again would now pick it.
    index.publish(PACKAGE, "1.1");
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "sh",
        &first,
        "-c",
        // (uv only builds, so it is not in the image: the environment's pip asks the index.)
        &format!(
            "pip download --quiet --no-deps --index-url {} --trusted-host 127.0.0.1 -d /tmp/resolved {PACKAGE} && ls /tmp/resolved",
            index.url()
        ),
    ]);
    let resolved = String::from_utf8_lossy(&out.stdout);
    assert!(
        resolved.contains("-1.1") && !resolved.contains("-1.0"),
        "{resolved}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 3. --locked installs what the first image held instead: 1.0, with its hash checked.
    let (ok, events, log) = build(&[
        "--image-name",
        &locked,
        "--locked",
        &first,
        &server.url("pins"),
    ]);
    assert!(ok, "{log}");
    assert!(
        log.contains(&format!("--locked {first}: installing what it held")),
        "{log}"
    );
    assert!(log.contains("with the hashes of their files"), "{log}");
    assert!(log.contains("holds exactly its packages"), "{log}");
    assert_eq!(imported(&locked), "1.0");
    let less = held["deb"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "less")
        .unwrap()["version"]
        .as_str()
        .unwrap()
        .to_string();
    // apt.txt's package is installed at the version the earlier image held (the engine's log
    // shows the command).
    assert!(log.contains(&format!("less={less}")), "{log}");
    let installed = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "dpkg-query",
        &locked,
        "-W",
        "-f",
        "${Version}",
        "less",
    ]);
    assert_eq!(String::from_utf8_lossy(&installed.stdout), less);
    let pins = |record: &serde_json::Value| -> Vec<(String, String, String)> {
        let venv = record["python"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["prefix"] == "/srv/venv")
            .unwrap();
        venv["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].to_string(),
                    p["version"].to_string(),
                    p["lock_hashes"].to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        pins(&record(&locked)),
        pins(&held),
        "the same Python packages and hashes"
    );
    assert!(events.last().unwrap()["contentsDigest"].as_str().is_some());

    // 4. kiln lock writes the pins into the checkout, for the user to commit.
    let checkout = server.repo_dir("pins");
    let out = kiln_ok(&["lock", "--image", &first, checkout.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out).contains("Wrote requirements.txt"));
    let written = std::fs::read_to_string(checkout.join("requirements.txt")).unwrap();
    assert!(
        written.contains(&format!("--extra-index-url {}", index.url())),
        "{written}"
    );
    assert!(
        written.contains(&format!("{PACKAGE}==1.0 \\\n    --hash=sha256:{sha_10}\n")),
        "{written}"
    );
    let apt = std::fs::read_to_string(checkout.join("apt.txt")).unwrap();
    assert!(apt.contains(&format!("\nless={less}\n")), "{apt}");

    // 5. A lock that no longer installs (its version is gone from the index): the build fails
    //    and names the package, and no image is made. The earlier image is remade with a record
    //    whose pin names a version the index never had (the record stays canonical JSON, so the
    //    label's digest is its sha256).
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "cat",
        &first,
        "/opt/kiln/contents.json",
    ]);
    let json = String::from_utf8(out.stdout).unwrap();
    let pinned = format!("\"name\":\"{PACKAGE}\",");
    assert!(json.contains(&pinned), "{json}");
    // Keys are sorted: the package's version comes after its name.
    let at = json.find(&pinned).unwrap();
    let version = at + json[at..].find("\"version\":\"1.0\"").unwrap();
    let gone_json = format!(
        "{}\"version\":\"9.9\"{}",
        &json[..version],
        &json[version + "\"version\":\"1.0\"".len()..]
    );
    assert_ne!(gone_json, json, "{json}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("contents.json"), &gone_json).unwrap();
    let digest = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(gone_json.as_bytes()))
    };
    let gone = format!("kiln-test/{}:1", unique("lock-gone-source"));
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {first}\nCOPY contents.json /opt/kiln/contents.json\nLABEL io.kiln.contents.digest=sha256:{digest}\n"),
    )
    .unwrap();
    let made = docker(&["build", "-q", "-t", &gone, dir.path().to_str().unwrap()]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (ok, _, log) = build(&[
        "--image-name",
        &locked_again,
        "--locked",
        &gone,
        &server.url("pins"),
    ]);
    assert!(!ok, "{log}");
    assert!(log.contains(&format!("{PACKAGE}==9.9")), "{log}");
    assert!(
        !docker(&["image", "inspect", &locked_again])
            .status
            .success()
    );

    for image in [&first, &locked, &gone] {
        remove_image(image);
    }
}

#[test]
fn a_reused_image_still_names_its_record_in_the_built_event() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "reused");
    let image = format!("kiln-test/{}:1", unique("reused"));
    let (ok, events, log) = build(&["--image-name", &image, &server.url("reused")]);
    assert!(ok, "{log}");
    let digest = events.last().unwrap()["contentsDigest"].clone();
    assert!(digest.is_string());
    let (ok, events, log) = build(&["--image-name", &image, &server.url("reused")]);
    assert!(ok && log.contains("Reusing"), "{log}");
    assert_eq!(events.last().unwrap()["contentsDigest"], digest);
    assert!(events.last().unwrap()["sbomDigest"].is_string());
    remove_image(&image);
}
