//! Build example repositories on the real engine, fetched from a git server on loopback, and judge
//! each image by its own `verify` script run inside it (without network).

use crate::support::*;

/// Build `example` from the git server and run its `verify` in the image.
fn build_and_verify(example: &str) {
    build_and_verify_with(example, &[], |_| {});
}

/// [`build_and_verify`] with `env` set for kiln, then `check` on the image before it is removed.
pub(crate) fn build_and_verify_with(
    example: &str,
    env: &[(&str, String)],
    check: impl FnOnce(&str),
) {
    require_engine();
    let server = GitServer::start();
    let commit = server.example(example, example);
    let image = format!("kiln-test/{}:{commit}", unique(example));
    let out = kiln()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args([
            "build",
            &server.url(example),
            "--json-logs",
            "--image-name",
            &image,
        ])
        .output()
        .unwrap();
    let events = events(&out.stdout);
    let last = events.last().unwrap_or_else(|| {
        panic!(
            "no events; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(out.status.success(), "{example}: build failed: {last}");
    assert_eq!(last["phase"], "built", "{last}");
    assert_eq!(last["imageName"], image.as_str());
    let phases: Vec<&str> = events
        .iter()
        .map(|e| e["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases.first(), Some(&"fetching"));
    assert!(phases.contains(&"building"));

    assert_verify(&image);
    assert_sbom_tells_the_truth(example, &image, last);
    // Labels and annotations: source, commit, created (the commit time), environment key.
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        &image,
    ]);
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(labels["org.opencontainers.image.revision"], commit.as_str());
    assert_eq!(
        labels["org.opencontainers.image.source"],
        server.url(example).as_str()
    );
    assert_eq!(
        labels["org.opencontainers.image.created"],
        "2026-01-02T03:04:05Z"
    );
    if example != "dockerfile" {
        assert!(
            labels["io.kiln.environment-key"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
    }
    check(&image);
    remove_image(&image);
}

/// The image's record and SBOM are in it, named by its labels and the `built` event; the SBOM is
/// valid CycloneDX 1.6 and lists what the example's `verify` uses at the versions the image has.
fn assert_sbom_tells_the_truth(example: &str, image: &str, built: &serde_json::Value) {
    let out = kiln()
        .args(["sbom", image, "--format", "cyclonedx", "--from", "engine"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{example}: kiln sbom failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    sbom::assert_valid_cyclonedx(&out.stdout);
    let bom: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let labels = docker(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]);
    let labels: serde_json::Value = serde_json::from_slice(&labels.stdout).unwrap();
    assert_eq!(
        labels["io.kiln.contents.digest"], built["contentsDigest"],
        "{example}"
    );
    assert_eq!(
        labels["io.kiln.sbom.digest"], built["sbomDigest"],
        "{example}"
    );
    // The SBOM in the image is the one kiln sbom prints.
    let inside = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "cat",
        image,
        "/opt/kiln/sbom.cdx.json",
    ]);
    let digest = kiln_registry::layer::sha256_digest(&inside.stdout);
    assert_eq!(labels["io.kiln.sbom.digest"], digest.as_str(), "{example}");
    assert_eq!(
        inside.stdout,
        out.stdout.strip_suffix(b"\n").unwrap_or(&out.stdout),
        "{example}"
    );
    let verify =
        std::fs::read_to_string(examples().join(example).join("verify")).unwrap_or_default();
    let checked = sbom::assert_lists_what_verify_uses(image, &verify, &bom);
    if verify.contains("import six") || verify.contains("command -v jq") {
        assert!(
            checked > 0,
            "{example}: nothing of verify was checked against the SBOM"
        );
    }
    assert!(
        !sbom::components(&bom, "deb").is_empty(),
        "{example}: the SBOM lists no Debian packages"
    );
}

macro_rules! examples {
    ($($name:ident => $example:literal),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                build_and_verify($example);
            }
        )*
    };
}

examples! {
    python_default => "python-default",
    python_requirements => "python-requirements",
    python_setup_py => "python-setup-py",
    python_pyproject_package => "python-pyproject-package",
    python_requirements_local => "python-requirements-local",
    python_uv_lock => "python-uv-lock",
    binder_dir => "binder-dir",
    apt_postbuild_start => "apt-postbuild-start",
    postbuild_node => "postbuild-node",
    dockerignore => "dockerignore",
    pipfile => "pipfile",
    dockerfile => "dockerfile",
}

/// `docker run IMAGE ./script` runs in REPO_DIR (= $HOME) through the entrypoint that applies `start`,
/// with the environment's python first on PATH.
#[test]
fn images_run_commands_like_repo2docker() {
    require_engine();
    let server = GitServer::start();
    server.example("apt-postbuild-start", "r2d-compat");
    server.commit(
        "r2d-compat",
        &[("script.sh", "#!/bin/sh\necho \"pwd=$(pwd) home=$HOME started=$KILN_EXAMPLE_STARTED python=$(command -v python)\"\necho \"$PATH\"\n")],
        "add a script",
    );
    let dir = server.repo_dir("r2d-compat");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(dir.join("script.sh"))
        .status()
        .unwrap();
    server.commit("r2d-compat", &[], "make it executable");
    let image = format!("kiln-test/{}:1", unique("r2d"));
    let out = kiln()
        .args([
            "build",
            &server.url("r2d-compat"),
            "--image-name",
            &image,
            "--json-logs",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", last_event(&out.stdout));
    let run = docker(&["run", "--rm", "--network", "none", &image, "./script.sh"]);
    let text = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        text.contains("pwd=/home/jovyan home=/home/jovyan started=yes python=/srv/venv/bin/python"),
        "{text}"
    );
    let path = text.lines().nth(1).unwrap();
    assert!(
        path.starts_with("/srv/venv/bin:/home/jovyan/.local/bin:"),
        "{path}"
    );
    let user = docker(&["run", "--rm", "--network", "none", &image, "id", "-u"]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "1000");
    remove_image(&image);
}

/// The same source and commit is not built twice; a code-only change rebuilds only the copy and
/// what follows it.
#[test]
fn reuse_and_code_only_rebuilds() {
    require_engine();
    let server = GitServer::start();
    server.example("python-requirements", "reuse");
    let image = format!("kiln-test/{}", unique("reuse"));
    let build = |tag: &str| {
        let out = kiln()
            .args([
                "build",
                &server.url("reuse"),
                "--json-logs",
                "--image-name",
                &format!("{image}:{tag}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", last_event(&out.stdout));
        events(&out.stdout)
    };
    build("a");
    let again = build("a");
    let last = again.last().unwrap();
    assert_eq!(last["phase"], "built");
    assert!(
        last["message"]
            .as_str()
            .unwrap()
            .contains("the engine has it, built from this commit"),
        "{last}"
    );
    assert!(
        !again.iter().any(|e| e["phase"] == "building"),
        "nothing is built again"
    );

    // Unique content: the engine's cache outlives test runs, and commit times are fixed.
    let change = format!("print('{}')\n", unique("changed"));
    server.commit("reuse", &[("analysis.py", change.as_str())], "code only");
    let rebuilt = build("b");
    let messages: Vec<&str> = rebuilt
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    // Every step before the repository copy comes from the cache.
    let requirements = messages
        .iter()
        .find(|m| m.contains("uv pip install") && m.contains("requirements.txt"))
        .unwrap();
    assert!(requirements.contains("(cached)"), "{requirements}");
    let copy = messages
        .iter()
        .find(|m| m.contains("COPY --chown=1000:1000 src/ /home/jovyan/"))
        .unwrap();
    assert!(!copy.contains("(cached)"), "{copy}");
    remove_image(&format!("{image}:a"));
    remove_image(&format!("{image}:b"));
}
