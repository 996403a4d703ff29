//! Engine features: BuildKit and the classic fallback, the CA bundle that never lands in a layer,
//! and the base image bootstrap that does nothing when the image exists.

use std::process::Command;

use crate::support::*;

#[test]
fn classic_builder_fallback_builds() {
    require_engine();
    let image = format!("kiln-test/{}:1", unique("classic"));
    let out = kiln()
        .env("KILN_BUILDKIT", "0")
        .env_remove("SSL_CERT_FILE")
        .args(["build", "--json-logs", "--image-name", &image])
        .arg(examples().join("dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let events = events(&out.stdout);
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .unwrap()
            .contains("with the classic builder")),
        "{events:?}"
    );
    assert_verify(&image);
    remove_image(&image);
}

#[test]
fn the_ca_bundle_is_trusted_during_the_build_and_absent_from_the_image() {
    require_engine();
    let host_bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .expect("the host has a CA bundle");
    let dir = tempfile::tempdir().unwrap();
    let marker = format!("kiln-ca-marker-{}", unique("ca"));
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, format!("# {marker}\n{host_bundle}")).unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("requirements.txt"), "six==1.16.0\n").unwrap();
    std::fs::write(
        repo.join("postBuild"),
        "#!/bin/sh\ngrep -q kiln-ca-marker \"$SSL_CERT_FILE\" && echo bundle-seen-during-build\n",
    )
    .unwrap();
    let image = format!("kiln-test/{}:1", unique("ca"));
    let out = kiln()
        .args([
            "build",
            "--json-logs",
            "--image-name",
            &image,
            "--ca-bundle",
        ])
        .arg(&bundle)
        .arg(&repo)
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("bundle-seen-during-build"),
        "the build trusted the bundle: {log}"
    );
    // Nothing of it in any layer of the image.
    let save = Command::new("sh")
        .arg("-c")
        .arg(format!("docker save {image} | grep -a -c {marker} || true"))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&save.stdout).trim(),
        "0",
        "the bundle is in a layer"
    );
    let inside = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "ls /run/kiln; env | grep -c ca-bundle || true",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&inside.stdout).trim(),
        "0",
        "no trace in the image's environment"
    );
    remove_image(&image);
}

#[test]
fn base_bootstrap_does_nothing_when_the_image_exists() {
    require_engine();
    let out = kiln()
        .args(["base", "bootstrap", "--json-logs"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let last = last_event(&out.stdout);
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("exists already; nothing to do"),
        "{last}"
    );
}

/// `kiln base bootstrap` (which `bash tests/run.sh` runs) trims the base image: no documentation but
/// copyrights, no manual pages or translations, no package lists; the label says so.
#[test]
fn the_base_image_is_trimmed_of_what_sessions_never_read() {
    require_engine();
    let base = kiln_buildpacks::options::DEFAULT_BASE_IMAGE;
    let label = docker(&[
        "image",
        "inspect",
        "--format",
        "{{index .Config.Labels \"io.kiln.base.trimmed\"}}",
        base,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&label.stdout).trim(),
        "true",
        "{base} was not made trimmed: run kiln base bootstrap"
    );
    let out = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        base,
        "sh",
        "-c",
        "find /usr/share/doc -type f ! -name copyright | wc -l; \
         find /usr/share/man /usr/share/info -type f | wc -l; \
         ls /usr/share/locale; \
         ls /var/lib/apt/lists; \
         test -e /usr/share/doc/bash/copyright && echo copyright-kept; \
         cat /etc/dpkg/dpkg.cfg.d/kiln-trim | grep -c path-exclude",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(out.status.success(), "{text}");
    assert_eq!(
        lines,
        // (minbase has no locale.alias to keep, and apt's lists hold only their empty `partial`)
        ["0", "0", "partial", "copyright-kept", "5"],
        "{text}"
    );
}

/// `kiln prewarm` pulls images onto the engine of DOCKER_HOST (here a second, empty engine, as a
/// node that will run a class's sessions) from a registry on loopback; an image the registry does
/// not have fails with its name, and the command exits 1.
#[test]
fn prewarm_pulls_images_onto_an_engine_that_has_never_seen_them() {
    require_engine();
    let registry = Registry::start(None);
    let image = format!("127.0.0.1:{}/kiln-test/prewarm:1", registry.port);
    assert!(
        docker(&["tag", kiln_buildpacks::options::DEFAULT_BASE_IMAGE, &image])
            .status
            .success()
    );
    let pushed = docker(&["push", "-q", &image]);
    assert!(
        pushed.status.success(),
        "{}",
        String::from_utf8_lossy(&pushed.stderr)
    );
    docker(&["rmi", &image]);
    let node = SecondEngine::start();
    let on_node = || {
        Command::new("docker")
            .args(["-H", &node.host, "image", "inspect", &image])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(!on_node());
    let out = kiln()
        .env("DOCKER_HOST", &node.host)
        .args(["prewarm", &image])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("is on the engine"), "{stderr}");
    assert!(on_node(), "the image is not on the node");
    let missing = format!("127.0.0.1:{}/kiln-test/missing:1", registry.port);
    let out = kiln()
        .env("DOCKER_HOST", &node.host)
        .args(["prewarm", &missing])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&missing), "{stderr}");
}
