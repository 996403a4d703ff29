//! Pushing to a real registry (CNCF Distribution on loopback): push, exists and skip, environment
//! reuse by native assembly for a code-only commit and for a second repository, determinism, auth,
//! and faults.

use crate::support::registry_proxy::{Faults, RegistryProxy};
use crate::support::*;

fn push(
    server: &GitServer,
    repo: &str,
    prefix: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (bool, Vec<serde_json::Value>) {
    let mut command = kiln();
    command
        .args([
            "build",
            "--json-logs",
            "--push",
            "--image-prefix",
            prefix,
            &server.url(repo),
        ])
        .args(extra);
    for (k, v) in env {
        command.env(k, v);
    }
    let out = command.output().unwrap();
    (out.status.success(), events(&out.stdout))
}

fn built_name(events: &[serde_json::Value]) -> String {
    let last = events.last().unwrap();
    assert_eq!(last["phase"], "built", "{last}");
    last["imageName"].as_str().unwrap().to_string()
}

#[test]
fn push_skip_native_reuse_across_commits_and_repositories() {
    require_engine();
    let registry = Registry::start(None);
    let prefix = format!("{}/binder-", registry.host());
    let server = GitServer::start();
    server.example("apt-postbuild-start", "first");
    // postBuild needs a container after the copy: drop it so the native path applies.
    std::fs::remove_file(server.repo_dir("first").join("postBuild")).unwrap();
    std::fs::write(
        server.repo_dir("first").join("verify"),
        "#!/bin/sh\nset -e\ncommand -v jq\ntest \"$KILN_EXAMPLE_STARTED\" = yes\npython -c 'import six'\n",
    )
    .unwrap();
    let commit = server.commit("first", &[], "without postBuild");

    // 1. The first push builds on the engine and pushes the environment and the image.
    let (ok, events) = push(&server, "first", &prefix, &[], &[]);
    assert!(ok, "{}", messages(&events));
    let name = built_name(&events);
    assert!(
        name.starts_with(&format!("{prefix}git-3a-2f-2f127-2e0-2e0-2e1-3a")),
        "BinderHub-style name: {name}"
    );
    assert!(name.ends_with(&format!(":{commit}")));
    assert!(events.iter().any(|e| e["phase"] == "pushing"));
    assert!(registry.digest(&name, None).is_some());

    // 2. The same commit again: the registry has it, nothing is built.
    let (ok, events) = push(&server, "first", &prefix, &[], &[]);
    assert!(ok);
    assert!(
        messages(&events).contains("the registry has it"),
        "{}",
        messages(&events)
    );
    assert!(!events.iter().any(|e| e["phase"] == "building"));

    // 3. A code-only commit: assembled natively on the environment, no engine build.
    let second = server.commit(
        "first",
        &[("analysis.py", "print('code only')\n")],
        "code only",
    );
    let (ok, events) = push(&server, "first", &prefix, &[], &[]);
    assert!(ok, "{}", messages(&events));
    assert!(
        messages(&events).contains("assembling the image without a container"),
        "{}",
        messages(&events)
    );
    assert!(
        !messages(&events).contains("with BuildKit"),
        "no engine build: {}",
        messages(&events)
    );
    let native = built_name(&events);
    assert!(native.ends_with(&second));
    // The first commit's image was put on the environment too, so the two share every blob but
    // the repository layer: a node that has the first pulls only that layer for the second.
    let layers = |image: &str| -> Vec<String> {
        let out = std::process::Command::new("skopeo")
            .args([
                "inspect",
                "--tls-verify=false",
                &format!("docker://{image}"),
            ])
            .output()
            .unwrap();
        let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_string())
            .collect()
    };
    let (one, two) = (layers(&name), layers(&native));
    assert_eq!(one.len(), two.len(), "{one:?} {two:?}");
    // The last: the repository with kiln's record of what the image holds (which names the
    // commit), one layer; every other layer is shared.
    let shared = one.len() - 1;
    assert_eq!(one[..shared], two[..shared], "shared layers");
    assert_ne!(one[shared], two[shared], "the repository layer");
    // Checked by skopeo, pulled by the engine, run, and the example's check passes.
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{native}"),
        ])
        .output()
        .unwrap();
    let inspect: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspect["Labels"]["org.opencontainers.image.revision"],
        second.as_str()
    );
    assert_eq!(inspect["Created"], "2026-01-02T03:04:05Z");
    assert!(docker(&["pull", "-q", &native]).status.success());
    assert_verify(&native);
    let code = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &native,
        "cat",
        "analysis.py",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&code.stdout),
        "print('code only')\n"
    );
    remove_image(&native);

    // 4. Another repository with the same environment files: native too, layers mounted.
    server.init("second");
    for file in ["apt.txt", "requirements.txt", "start"] {
        std::fs::copy(
            server.repo_dir("first").join(file),
            server.repo_dir("second").join(file),
        )
        .unwrap();
    }
    server.commit(
        "second",
        &[("README.md", "another repository\n")],
        "second repository",
    );
    let (ok, events) = push(&server, "second", &prefix, &[], &[]);
    assert!(ok, "{}", messages(&events));
    let text = messages(&events);
    assert!(
        text.contains("assembling the image without a container"),
        "{text}"
    );
    assert!(
        !text.contains(" 0 mounted"),
        "layers come by cross-repository mount: {text}"
    );
}

#[test]
fn native_assembly_is_deterministic() {
    require_engine();
    let registry = Registry::start(None);
    let prefix = format!("{}/det-", registry.host());
    let server = GitServer::start();
    server.example("python-requirements", "det");
    let (ok, events) = push(&server, "det", &prefix, &[], &[]);
    assert!(ok, "{}", messages(&events));
    server.commit("det", &[("notes.md", "code only\n")], "code only");
    let mut digests = Vec::new();
    for tag in ["one", "two"] {
        let name = format!("{prefix}det:{tag}");
        let (ok, events) = push(&server, "det", &prefix, &["--image-name", &name], &[]);
        assert!(ok, "{}", messages(&events));
        assert!(messages(&events).contains("without a container"));
        digests.push(registry.digest(&name, None).unwrap());
    }
    assert_eq!(
        digests[0], digests[1],
        "the same commit assembles to the same manifest"
    );
}

#[test]
fn registry_with_htpasswd_auth() {
    require_engine();
    let registry = Registry::start(Some(("kiln", "registry-s3cret")));
    let prefix = format!("{}/auth-", registry.host());
    let server = GitServer::start();
    server.example("python-default", "auth");

    let wrong = [
        ("KILN_REGISTRY_USERNAME", "kiln"),
        ("KILN_REGISTRY_PASSWORD", "not-the-password"),
    ];
    let (ok, events) = push(&server, "auth", &prefix, &[], &wrong);
    assert!(!ok);
    let text = messages(&events);
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(
        !text.contains("not-the-password"),
        "the secret leaked: {text}"
    );

    let right = [
        ("KILN_REGISTRY_USERNAME", "kiln"),
        ("KILN_REGISTRY_PASSWORD", "registry-s3cret"),
    ];
    let (ok, events) = push(&server, "auth", &prefix, &[], &right);
    assert!(ok, "{}", messages(&events));
    let name = built_name(&events);
    assert!(
        registry
            .digest(&name, Some("kiln:registry-s3cret"))
            .is_some()
    );
    assert!(!messages(&events).contains("registry-s3cret"));
    // Credentials from ~/.docker/config.json (DOCKER_CONFIG), and from --registry-username with the
    // password on standard input.
    let config = tempfile::tempdir().unwrap();
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "a2lsbjpyZWdpc3RyeS1zM2NyZXQ="}}}}}}"#,
            registry.host()
        ),
    )
    .unwrap();
    server.commit("auth", &[("w.py", "1\n")], "code");
    let docker_config = config.path().to_string_lossy().to_string();
    let (ok, events) = push(
        &server,
        "auth",
        &prefix,
        &[],
        &[("DOCKER_CONFIG", docker_config.as_str())],
    );
    assert!(ok, "{}", messages(&events));
    server.commit("auth", &[("v.py", "1\n")], "code");
    let mut child = kiln()
        .args([
            "build",
            "--json-logs",
            "--push",
            "--image-prefix",
            &prefix,
            "--registry-username",
            "kiln",
            "--registry-password-stdin",
            &server.url("auth"),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"registry-s3cret\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // A code-only commit, natively, with auth.
    server.commit("auth", &[("x.py", "1\n")], "code");
    let (ok, events) = push(&server, "auth", &prefix, &[], &right);
    assert!(ok, "{}", messages(&events));
    assert!(messages(&events).contains("without a container"));
}

#[test]
fn registry_faults() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "faults");
    // Unreachable: bounded retries, then a clear error.
    let prefix = format!("127.0.0.1:{}/gone-", free_port());
    let (ok, events) = push(&server, "faults", &prefix, &[], &[]);
    assert!(!ok);
    let text = messages(&events);
    assert!(
        text.contains("cannot reach the registry") && text.contains("after 4 attempts"),
        "{text}"
    );
    // An invalid reference.
    let (ok, events) = push(&server, "faults", "127.0.0.1:5000/Bad Prefix-", &[], &[]);
    assert!(!ok);
    assert!(
        messages(&events).contains("is not a valid image reference"),
        "{}",
        messages(&events)
    );
    // --push without a prefix.
    let out = kiln()
        .env_remove("KILN_IMAGE_PREFIX")
        .args(["build", "--json-logs", "--push", &server.url("faults")])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn steps_after_the_copy_run_in_a_short_build_on_the_environment() {
    require_engine();
    let registry = Registry::start(None);
    let prefix = format!("{}/post-", registry.host());
    let server = GitServer::start();
    server.example("apt-postbuild-start", "post");
    let (ok, events) = push(&server, "post", &prefix, &[], &[]);
    assert!(ok, "{}", messages(&events));
    server.commit("post", &[("analysis.py", "print(1)\n")], "code only");
    let (ok, events) = push(&server, "post", &prefix, &[], &[]);
    let text = messages(&events);
    assert!(ok, "{text}");
    assert!(
        text.contains("building only the repository and what follows it"),
        "{text}"
    );
    assert!(!text.contains("Building the environment"), "{text}");
    let name = built_name(&events);
    assert_verify(&name);
    remove_image(&name);
}

#[test]
fn registry_without_mount_support_gets_uploads_instead() {
    require_engine();
    let registry = Registry::start(None);
    let server = GitServer::start();
    server.example("python-requirements", "nm1");
    let (ok, events) = push(
        &server,
        "nm1",
        &format!("{}/nm-", registry.host()),
        &[],
        &[],
    );
    assert!(ok, "{}", messages(&events));
    // A second repository with the same environment, through a front that refuses mounts.
    let proxy = RegistryProxy::start(
        registry.port,
        Faults {
            no_mount: true,
            ..Faults::default()
        },
    );
    server.init("nm2");
    std::fs::copy(
        server.repo_dir("nm1").join("requirements.txt"),
        server.repo_dir("nm2").join("requirements.txt"),
    )
    .unwrap();
    server.commit(
        "nm2",
        &[("verify", "#!/bin/sh\npython -c 'import six'\n")],
        "second",
    );
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(server.repo_dir("nm2").join("verify"))
        .status()
        .unwrap();
    server.commit("nm2", &[], "executable verify");
    let (ok, events) = push(&server, "nm2", &format!("{}/nm-", proxy.host()), &[], &[]);
    let text = messages(&events);
    assert!(ok, "{text}");
    assert!(text.contains("without a container"), "{text}");
    assert!(
        text.contains("(0 mounted") && !text.contains(" 0 copied"),
        "{text}"
    );
    assert!(proxy.mount_requests() > 0, "a mount was tried first");
    let name = built_name(&events).replace(&proxy.host(), &registry.host());
    assert!(docker(&["pull", "-q", &name]).status.success());
    assert_verify(&name);
    remove_image(&name);
}

#[test]
fn transient_failures_are_retried_and_no_tag_points_at_a_partial_image() {
    require_engine();
    let registry = Registry::start(None);
    let server = GitServer::start();
    server.example("python-requirements", "flaky");
    let (ok, events) = push(
        &server,
        "flaky",
        &format!("{}/fl-", registry.host()),
        &[],
        &[],
    );
    assert!(ok, "{}", messages(&events));

    // Two failed uploads: retried with backoff, then the push succeeds.
    let proxy = RegistryProxy::start(
        registry.port,
        Faults {
            fail_first_uploads: 2,
            ..Faults::default()
        },
    );
    let pushed = server.commit("flaky", &[("a.py", "1\n")], "code only");
    let (ok, events) = push(&server, "flaky", &format!("{}/fl-", proxy.host()), &[], &[]);
    assert!(ok, "{}", messages(&events));
    assert!(messages(&events).contains("without a container"));
    assert_eq!(proxy.failed_uploads(), 2);
    drop(proxy);

    // A registry that refuses artifacts: the image is pushed all the same, its record stays in
    // the image, and a warning says so.
    let proxy = RegistryProxy::start(
        registry.port,
        Faults {
            refuse_artifacts: true,
            ..Faults::default()
        },
    );
    server.commit("flaky", &[("c.py", "3\n")], "no artifacts");
    let (ok, events) = push(&server, "flaky", &format!("{}/na-", proxy.host()), &[], &[]);
    let text = messages(&events);
    assert!(ok, "{text}");
    assert!(text.contains("did not take"), "{text}");
    let image = events.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    let beside = kiln()
        .args(["sbom", &image, "--from", "registry"])
        .output()
        .unwrap();
    assert!(!beside.status.success(), "no record beside it");
    assert!(docker(&["pull", "-q", &image]).status.success());
    let inside = kiln_ok(&["sbom", &image, "--from", "engine"]);
    assert!(String::from_utf8_lossy(&inside).contains("libc6"));
    remove_image(&image);
    drop(proxy);

    // Uploads that keep failing: bounded retries, a clear error, and no tag for the commit.
    let proxy = RegistryProxy::start(
        registry.port,
        Faults {
            fail_first_uploads: 1000,
            ..Faults::default()
        },
    );
    let commit = server.commit("flaky", &[("b.py", "2\n")], "another");
    let (ok, events) = push(&server, "flaky", &format!("{}/fl-", proxy.host()), &[], &[]);
    let text = messages(&events);
    assert!(!ok);
    assert!(text.contains("after 4 attempts"), "{text}");
    let failed_name = format!("{}/fl-", registry.host());
    let tags = std::process::Command::new("skopeo")
        .args(["list-tags", "--tls-verify=false"])
        .arg(format!(
            "docker://{}",
            built_or_any_name(&failed_name, &server, "flaky")
        ))
        .output()
        .unwrap();
    let tags = String::from_utf8_lossy(&tags.stdout);
    assert!(
        tags.contains(&pushed),
        "the repository lists the earlier push: {tags}"
    );
    assert!(
        !tags.contains(&commit),
        "a tag points at the failed push: {tags}"
    );
}

/// The repository name kiln uses for `repo` under `prefix` (read from a build of another commit).
fn built_or_any_name(prefix: &str, server: &GitServer, repo: &str) -> String {
    let name = kiln_registry::image_name(prefix, &server.url(repo), "x").unwrap();
    name.rsplit_once(':').unwrap().0.to_string()
}
