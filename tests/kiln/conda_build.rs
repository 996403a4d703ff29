//! conda environments built natively (issue 7), against the real engine and registry, with the
//! fixture conda channel (tests/conda/make-channel.sh) served on loopback as the conda-forge mirror:
//! solve, install and run inside the image, the lock (recorded, printed, honoured), identical layers
//! for the same lock, the errors, and a launch with `kiln run`.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::conda::ChannelServer;
use crate::support::*;

const LOCK_PATH: &str = "/srv/conda/envs/notebook/conda-meta/kiln-lock.txt";

fn label(image: &str, name: &str) -> String {
    let out = docker(&[
        "image",
        "inspect",
        "--format",
        &format!("{{{{index .Config.Labels \"{name}\"}}}}"),
        image,
    ]);
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn in_image(image: &str, script: &str) -> String {
    crate::support::in_image(image, &["sh", "-c", script])
}

/// Remove a final image and the conda image kiln made for it.
pub(crate) fn remove_with_conda(image: &str) {
    let key = label(image, "io.kiln.environment-key");
    if let Some(hex) = key.strip_prefix("sha256:") {
        remove_image(&format!("kiln/conda-environment:{hex}"));
    }
    remove_image(image);
}

#[test]
fn conda_environment_builds_natively_and_records_its_lock() {
    require_engine();
    let channel = ChannelServer::start();
    let server = GitServer::start();
    server.example("conda-fixture", "conda-fixture");
    // The plan solves and prints the lock; its key names the conda image, removed first so that
    // this build installs the environment.
    let plan = channel
        .kiln()
        .args(["plan", "--json"])
        .arg(server.repo_dir("conda-fixture"))
        .output()
        .unwrap();
    assert!(
        plan.status.success(),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let key = plan["environment_key"].as_str().unwrap().to_string();
    remove_image(&format!(
        "kiln/conda-environment:{}",
        key.trim_start_matches("sha256:")
    ));
    let image = format!("kiln-test/{}:1", unique("conda"));
    let out = channel
        .kiln()
        .args([
            "build",
            &server.url("conda-fixture"),
            "--json-logs",
            "--image-name",
            &image,
        ])
        .output()
        .unwrap();
    let events = events(&out.stdout);
    assert!(out.status.success(), "{}", messages(&events));
    let log = messages(&events);
    assert!(log.contains("Conda: solved 9 packages"), "{log}");
    // Virtual packages come from the base image, not from this host.
    assert!(
        log.contains("Conda: virtual packages of kiln/base:bookworm: __glibc 2.36"),
        "{log}"
    );
    assert!(
        log.contains("Conda: loaded kiln/conda-environment:"),
        "{log}"
    );
    // No engine step installs the conda packages.
    assert!(!log.contains("micromamba"), "{log}");

    assert_verify(&image);
    // The lock: in the image at the file its label names, the same as `kiln plan` prints.
    assert_eq!(label(&image, "io.kiln.conda-lock"), LOCK_PATH);
    let stored = in_image(&image, &format!("cat {LOCK_PATH}"));
    assert!(stored.contains("@EXPLICIT"), "{stored}");
    assert!(
        stored.contains("https://conda.anaconda.org/conda-forge/noarch/kiln-greet-0.2.0-"),
        "{stored}"
    );
    assert!(
        !stored.contains("127.0.0.1"),
        "no mirror in the lock: {stored}"
    );
    assert_eq!(
        plan["build"]["environment"]["conda"]["lock"].as_str(),
        Some(stored.as_str())
    );
    assert_eq!(
        key,
        label(&image, "io.kiln.environment-key"),
        "the key covers the lock, the same in the plan and the image"
    );
    // conda-meta holds no host path; the environment belongs to the user.
    let meta = in_image(
        &image,
        "cat /srv/conda/envs/notebook/conda-meta/*.json; stat -c %u /srv/conda/envs/notebook/lib/python3.11/os.py",
    );
    assert!(
        !meta.contains("/tmp/") && !meta.contains("127.0.0.1"),
        "{meta}"
    );
    assert!(meta.trim_end().ends_with("1000"));
    remove_with_conda(&image);
}

/// The conda image's layers (the last `count` of its manifest), read from the registry.
fn conda_layers(events: &[serde_json::Value], count: usize) -> Vec<String> {
    let log = messages(events);
    let name = log
        .lines()
        .find_map(|l| {
            l.strip_prefix("Pushed ")
                .filter(|rest| rest.contains("kiln-conda:"))
                .and_then(|rest| rest.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no conda image was pushed:\n{log}"))
        .to_string();
    let layers = image_layers(&name);
    layers[layers.len() - count..].to_vec()
}

/// The environment image a build's log names (`…kiln-environment:<key>`).
fn environment_of(events: &[serde_json::Value]) -> String {
    let log = messages(events);
    log.split_whitespace()
        .find(|w| w.contains("kiln-environment:"))
        .unwrap_or_else(|| panic!("no environment image in the log:\n{log}"))
        .trim_end_matches([',', '.'])
        .to_string()
}

/// An image's layer digests, read from the registry.
fn image_layers(name: &str) -> Vec<String> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{name}"))
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn conda_push_is_native_and_a_lock_gives_the_same_layers() {
    require_engine();
    let channel = ChannelServer::start();
    let registry = Registry::start(None);
    let prefix = format!("{}/binder-", registry.host());
    let server = GitServer::start();
    let env = |greet: &str| {
        format!(
            "channels: [conda-forge]\ndependencies:\n  - python=3.11\n  - pip\n  - {greet}\n  - kiln-hello\n"
        )
    };
    let verify =
        "#!/bin/sh\nset -e\npython -c 'import kiln_greet; print(kiln_greet.__version__)'\n";
    server.commit(
        "pinned",
        &[
            ("environment.yml", &env("kiln-greet=0.1.0")),
            ("verify", verify),
        ],
        "pinned",
    );
    server.commit(
        "loose",
        &[("environment.yml", &env("kiln-greet")), ("verify", verify)],
        "loose",
    );
    let push = |repo: &str, prefix: &str, extra: &[&str]| {
        let out = channel
            .kiln()
            .args(["build", "--json-logs", "--push", "--image-prefix", prefix])
            .arg(server.url(repo))
            .args(extra)
            .output()
            .unwrap();
        let events = events(&out.stdout);
        assert!(out.status.success(), "{repo}: {}", messages(&events));
        events
    };

    // 1. The environment is solved, its layers appended to the system stage in the registry.
    let first = push("pinned", &prefix, &[]);
    let log = messages(&first);
    assert!(log.contains("Conda: solved"), "{log}");
    let pinned_layers = conda_layers(&first, 3);
    let pinned = first.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    let version = in_image(
        &pinned,
        "python -c 'import kiln_greet; print(kiln_greet.__version__)'",
    );
    assert_eq!(version.trim(), "0.1.0");

    // 2. Another repository, rebuilt with --locked from the first image: no solve, the same
    //    records, the same layer digests, although its environment.yml would pick 0.2.0. Its
    //    environment is keyed by the lock, so it is the first's, and the image is assembled on it.
    let second = push("loose", &prefix, &["--locked", &pinned]);
    let log = messages(&second);
    assert!(!log.contains("Conda: solving"), "{log}");
    assert!(log.contains("installing the lock of"), "{log}");
    assert!(log.contains("without a container"), "{log}");
    let loose = second.last().unwrap()["imageName"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(environment_of(&second), environment_of(&first), "{log}");
    assert_eq!(
        in_image(&loose, &format!("cat {LOCK_PATH}")),
        in_image(&pinned, &format!("cat {LOCK_PATH}"))
    );
    assert_eq!(
        in_image(
            &loose,
            "python -c 'import kiln_greet; print(kiln_greet.__version__)'"
        )
        .trim(),
        "0.1.0"
    );

    // kiln lock writes the first image's lock for a checkout to commit (printed here).
    let checkout = server.repo_dir("loose");
    let out = kiln_ok(&[
        "lock",
        "--dry-run",
        "--image",
        &pinned,
        checkout.to_str().unwrap(),
    ]);
    let printed = String::from_utf8_lossy(&out);
    assert!(printed.contains("==> conda-linux-64.lock"), "{printed}");
    assert!(printed.contains("@EXPLICIT"), "{printed}");
    assert!(printed.contains("kiln-greet-0.1.0"), "{printed}");
    assert!(
        !server
            .repo_dir("loose")
            .join("conda-linux-64.lock")
            .exists(),
        "--dry-run writes nothing"
    );

    // 2b. The environment is known by what it resolved to: a third repository whose
    //     environment.yml is written otherwise (a comment, another order, a looser pin that
    //     solves to the same packages) has the first's environment key, so its image is made
    //     on the first's environment without a container.
    server.commit(
        "same",
        &[
            (
                "environment.yml",
                "# the same packages, said otherwise
channels: [conda-forge]
dependencies:
  - kiln-hello
  - kiln-greet<0.2
  - python=3.11
  - pip
",
            ),
            ("verify", verify),
        ],
        "same",
    );
    let same = push("same", &prefix, &[]);
    let log = messages(&same);
    assert!(log.contains("Conda: solved"), "{log}");
    assert!(log.contains("without a container"), "{log}");
    assert_eq!(environment_of(&same), environment_of(&first), "{log}");

    // 3. The same lock again, from scratch under another prefix, with a fresh package cache:
    //    the same conda layers, byte for byte.
    let again = ChannelServer::start();
    let out = again
        .kiln()
        .args([
            "build",
            "--json-logs",
            "--push",
            "--no-cache",
            "--image-prefix",
            &format!("{}/again-", registry.host()),
        ])
        .arg(server.url("pinned"))
        .output()
        .unwrap();
    let third = events(&out.stdout);
    assert!(out.status.success(), "{}", messages(&third));
    assert_eq!(conda_layers(&third, 3), pinned_layers);

    // Every local image of this registry: the images built, and the conda images pulled.
    let images = docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    for image in String::from_utf8_lossy(&images.stdout).lines() {
        if image.starts_with(&registry.host()) {
            remove_image(image);
        }
    }
}

#[test]
fn conda_errors_fail_clearly_before_any_engine_work() {
    require_engine();
    let channel = ChannelServer::start();
    let server = GitServer::start();
    let build = |repo: &str, command: &mut Command| {
        let started = Instant::now();
        let out = command
            .args(["build", "--json-logs", "--image-name"])
            .arg(format!("kiln-test/{}:1", unique("conda-error")))
            .arg(server.url(repo))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{repo} built");
        let events = events(&out.stdout);
        let last = events.last().unwrap().clone();
        assert_eq!(last["phase"], "failed", "{last}");
        let log = messages(&events);
        assert!(
            !log.contains("Building the"),
            "{repo}: the engine ran:\n{log}"
        );
        (
            last["message"].as_str().unwrap().to_string(),
            started.elapsed(),
        )
    };
    let env = |deps: &str| format!("channels: [conda-forge]\ndependencies: [{deps}]\n");

    // Unsatisfiable: the solver's explanation.
    server.commit(
        "conflict",
        &[("environment.yml", &env("python=3.11, kiln-conflict"))],
        "x",
    );
    let (message, _) = build("conflict", &mut channel.kiln());
    assert!(message.contains("cannot be solved"), "{message}");
    assert!(
        message.contains("kiln-conflict") && message.contains("kiln-greet"),
        "{message}"
    );

    // A package that does not exist.
    server.commit(
        "missing",
        &[("environment.yml", &env("python=3.11, kiln-nope"))],
        "x",
    );
    let (message, _) = build("missing", &mut channel.kiln());
    assert!(message.contains("kiln-nope"), "{message}");

    // A channel that cannot be reached: fast, and the message names it and says what to do.
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let mut command = kiln();
    command
        .env("KILN_CONDA_MIRRORS", format!("conda-forge={dead}"))
        .env("KILN_CONDA_CACHE", channel.cache_dir());
    let (message, took) = build("missing", &mut command);
    assert!(
        message.contains("cannot load the conda channel conda-forge"),
        "{message}"
    );
    assert!(
        message.contains(&dead) && message.contains("KILN_CONDA_MIRRORS"),
        "{message}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");

    // A lock whose sha256 does not match the package: refused.
    let url = "https://conda.anaconda.org/conda-forge/noarch/kiln-hello-0.1.0-h4616a5c_0.conda";
    server.commit(
        "bad-lock",
        &[
            ("environment.yml", &env("kiln-hello")),
            (
                "conda-linux-64.lock",
                &format!("@EXPLICIT\n{url}#sha256:{}\n", "0".repeat(64)),
            ),
        ],
        "x",
    );
    let (message, _) = build("bad-lock", &mut channel.kiln());
    assert!(message.contains("refusing to install it"), "{message}");
    assert!(message.contains(url), "{message}");
}

#[test]
fn conda_example_launches_with_kiln_run() {
    require_engine();
    let channel = ChannelServer::start();
    let server = GitServer::start();
    server.example("conda-fixture", "conda-run");
    // Its own environment key (the lock is the same), so that tests running at the same time do
    // not remove each other's conda image.
    let yml =
        std::fs::read_to_string(server.repo_dir("conda-run").join("environment.yml")).unwrap();
    server.commit(
        "conda-run",
        &[("environment.yml", &format!("{yml}# launched by kiln run\n"))],
        "own key",
    );
    let (mut child, _, port, token) =
        start_kiln_run(channel.kiln().args(["run", &server.url("conda-run")]));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut answered = false;
    while Instant::now() < deadline {
        if session_status(port, Some(&token)) == 200 {
            answered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let _ = child.wait();
    assert!(
        answered,
        "the conda session did not answer /api/status in 90 s"
    );
    let images = docker(&[
        "images",
        "--filter",
        &format!(
            "label=org.opencontainers.image.source={}",
            server.url("conda-run")
        ),
        "--format",
        "{{.Repository}}:{{.Tag}}",
    ]);
    for image in String::from_utf8_lossy(&images.stdout).lines() {
        remove_with_conda(image);
    }
}

/// The `@EXPLICIT` line of a package of the fixture channel, with its sha256 from the repodata.
fn explicit_line(subdir: &str, file: &str) -> String {
    let repodata: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            crate::support::conda::channel_dir()
                .join(subdir)
                .join("repodata.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sha256 = repodata["packages.conda"][file]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("{file} is not in the fixture channel"));
    format!("https://conda.anaconda.org/conda-forge/{subdir}/{file}#sha256:{sha256}")
}

#[test]
fn a_lock_shipped_by_the_repository_is_installed_without_solving() {
    require_engine();
    let channel = ChannelServer::start();
    let server = GitServer::start();
    // The file name of the package of `subdir` whose name starts with `prefix`.
    let package = |subdir: &str, prefix: &str| {
        let repodata: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                crate::support::conda::channel_dir().join(format!("{subdir}/repodata.json")),
            )
            .unwrap(),
        )
        .unwrap();
        repodata["packages.conda"]
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.starts_with(prefix))
            .unwrap()
            .clone()
    };
    let noarch = |prefix: &str| package("noarch", prefix);
    let linux = |prefix: &str| package("linux-64", prefix);
    let mut lock = String::from("# shipped by the repository\n@EXPLICIT\n");
    // The channel also has Python 2.7 and 3.6 with their own pip, openssl, readline and ncurses:
    // the prefixes name the 3.11 environment's.
    for file in [noarch("kiln-greet-0.1.0-"), noarch("pip-26.")] {
        lock.push_str(&explicit_line("noarch", &file));
        lock.push('\n');
    }
    for name in [
        "python-3.11.",
        "libexpat-",
        "openssl-3.",
        "libsqlite-",
        "readline-8.",
        "ncurses-6.4-",
    ] {
        lock.push_str(&explicit_line("linux-64", &linux(name)));
        lock.push('\n');
    }
    server.commit(
        "shipped",
        &[
            // The file alone would give kiln-greet 0.2.0 and kiln-hello.
            (
                "environment.yml",
                "channels: [conda-forge]\ndependencies: [python=3.11, pip, kiln-greet, kiln-hello]\n",
            ),
            ("conda-linux-64.lock", &lock),
        ],
        "shipped lock",
    );
    let image = format!("kiln-test/{}:1", unique("conda-shipped"));
    let out = channel
        .kiln()
        .args(["build", "--json-logs", "--image-name", &image])
        .arg(server.url("shipped"))
        .output()
        .unwrap();
    let events = events(&out.stdout);
    let log = messages(&events);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("installing the repository's lock conda-linux-64.lock (8 packages)"),
        "{log}"
    );
    assert!(!log.contains("Conda: solving"), "{log}");
    let check = in_image(
        &image,
        "python -c 'import kiln_greet; print(kiln_greet.__version__)'; command -v kiln-hello || echo no-hello",
    );
    assert_eq!(check, "0.1.0\nno-hello\n");
    remove_with_conda(&image);
}

/// Old Pythons as repo2docker builds them (issue 16): `runtime.txt` `python-2.7` and an
/// `environment.yml` with `python=3.6`, each from the fixture channel as the kernel's environment
/// at /srv/conda/envs/notebook, while JupyterLab runs on the base image's Python; the example's
/// `verify` starts the kernel with jupyter_client and runs code in it.
#[test]
fn old_pythons_build_from_conda_as_a_kernel_beside_jupyterlab() {
    require_engine();
    let channel = ChannelServer::start();
    let server = GitServer::start();
    for example in ["python-2.7-runtime", "conda-python-3.6"] {
        server.example(example, example);
        let image = format!("kiln-test/{}:1", unique("old-python"));
        let out = channel
            .kiln()
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
        assert!(
            out.status.success(),
            "{example}: {}\n{}",
            messages(&events),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_verify(&image);
        remove_with_conda(&image);
    }
}
