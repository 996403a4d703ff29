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

/// Stops a `kiln run` (by its PID, with SIGTERM, which removes its container) when dropped, so that
/// a failed assertion leaves no session behind.
struct StopOnDrop(std::process::Child);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// Bytecode is compiled when the image is built, so a new session (the server and a kernel)
/// compiles nothing: it writes nothing into the environment (`docker diff` of the container).
#[test]
fn a_started_session_writes_nothing_into_its_environment() {
    require_engine();
    let server = GitServer::start();
    let name = unique("bytecode");
    server.example("python-requirements", &name);
    session_writes_nothing(kiln().args(["run", &server.url(&name)]), &name, "/srv/venv");
}

/// The same for a conda environment (its packages installed natively by kiln, then compiled in a
/// step of their own), from the fixture channel standing in for conda-forge on loopback.
#[test]
fn a_started_conda_session_writes_nothing_into_its_environment() {
    require_engine();
    let channel = crate::support::conda::ChannelServer::start();
    let server = GitServer::start();
    let name = unique("conda-bytecode");
    server.example("conda-fixture", &name);
    session_writes_nothing(
        channel.kiln().args(["run", &server.url(&name)]),
        &name,
        "/srv/conda/envs/notebook",
    );
}

/// Start `kiln run` (its image named after `name`), import what a kernel imports, and check that
/// nothing was written under the environment prefixes and that `bytecode_in` holds bytecode.
fn session_writes_nothing(command: &mut Command, name: &str, bytecode_in: &str) {
    let (child, _, port, token) = start_kiln_run(command);
    let session = StopOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(90);
    while session_status(port, Some(&token)) != 200 {
        assert!(
            Instant::now() < deadline,
            "the session did not answer in 90 s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let ps = docker(&[
        "ps",
        "--filter",
        "name=kiln-run-",
        "--format",
        "{{.ID}} {{.Image}}",
    ]);
    let ps = String::from_utf8_lossy(&ps.stdout);
    let id = ps
        .lines()
        .find(|l| l.contains(name))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no container of {name} in {ps}"))
        .to_string();
    // A kernel's imports too (the notebook's first wait), as the session's user.
    let kernel = docker(&[
        "exec",
        &id,
        "python",
        "-c",
        "import ipykernel.kernelapp, IPython",
    ]);
    assert!(
        kernel.status.success(),
        "{}",
        String::from_utf8_lossy(&kernel.stderr)
    );
    let diff = docker(&["diff", &id]);
    let diff = String::from_utf8_lossy(&diff.stdout);
    let written: Vec<&str> = diff
        .lines()
        .filter(|l| {
            let path = l.get(2..).unwrap_or_default();
            ["/srv/venv", "/srv/python", "/srv/conda", "/opt/kiln"]
                .iter()
                .any(|prefix| path.starts_with(prefix))
        })
        .collect();
    let pyc = docker(&[
        "exec",
        &id,
        "sh",
        "-c",
        &format!("find {bytecode_in} -name '*.pyc' | wc -l"),
    ]);
    let pyc: usize = String::from_utf8_lossy(&pyc.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    drop(session);
    assert!(
        written.is_empty(),
        "the session wrote into its environment: {written:?}"
    );
    assert!(pyc > 1000, "only {pyc} bytecode files in {bytecode_in}");
}

/// repo2docker's options for a session: `--env`, `--volume` (a relative container path is under
/// the repository's folder) and `--editable` (the local folder mounted over the repository's, so
/// that what the session writes lands in it).
#[test]
fn run_env_volume_and_editable_reach_the_session() {
    require_engine();
    let repo = tempfile::tempdir().unwrap();
    copy_tree(&examples().join("python-default"), repo.path());
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("x.txt"), "data-from-the-host\n").unwrap();
    // The session's user (uid 1000) writes into the editable folder.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(repo.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = kiln()
        .args(["run", &repo.path().to_string_lossy()])
        .args(["--env", "KILN_TEST_ENV=from-env", "-e", "OTHER=2"])
        .args(["--volume", &format!("{}:data:ro", data.path().display())])
        .arg("--editable")
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$KILN_TEST_ENV $OTHER\"; cat $HOME/data/x.txt; echo written > $HOME/from-session.txt; \
             touch $HOME/data/refused 2>/dev/null || echo read-only",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in ["from-env 2", "data-from-the-host", "read-only"] {
        assert!(stderr.contains(line), "{line:?} not in {stderr}");
    }
    assert_eq!(
        std::fs::read_to_string(repo.path().join("from-session.txt")).unwrap(),
        "written\n"
    );
}

/// A repository Dockerfile gets repo2docker's NB_USER and NB_UID build arguments, from
/// `--user-name` and `--user-id` (repo2docker's spellings of --user and --uid).
#[test]
fn a_repository_dockerfile_gets_nb_user_and_nb_uid() {
    require_engine();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        format!(
            "FROM {}\nARG NB_USER\nARG NB_UID\nRUN echo \"$NB_USER $NB_UID {}\" > /nb.txt\n",
            kiln_buildpacks::options::DEFAULT_BASE_IMAGE,
            unique("nb")
        ),
    )
    .unwrap();
    let run = |extra: &[&str]| {
        let out = kiln()
            .args([
                "run",
                &repo.path().to_string_lossy(),
                "--platform",
                "linux/amd64",
            ])
            .args(extra)
            .args(["--", "cat", "/nb.txt"])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    assert!(run(&[]).contains("jovyan 1000 "));
    assert!(run(&["--user-name", "alice", "--user-id", "1234"]).contains("alice 1234 "));
}

/// Options a session cannot honour fail before anything is built, with the reason.
#[test]
fn unusable_run_options_are_refused_before_building() {
    require_engine();
    let example = examples().join("python-default");
    for (args, reason) in [
        (vec!["--platform", "linux/arm64"], "--platform linux/arm64"),
        (
            vec!["--publish", "8080:80"],
            "--publish needs the engine's own network",
        ),
        (vec!["--publish", "80"], "HOST_PORT:CONTAINER_PORT"),
        (
            vec!["--publish-all"],
            "--publish-all needs the engine's own network",
        ),
        (vec!["--volume", "/no/such/folder:/x"], "does not exist"),
    ] {
        let out = kiln()
            .arg("run")
            .arg(&example)
            .args(&args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains(reason), "{args:?}: {stderr}");
        assert!(!stderr.contains("[building]"), "{args:?} built: {stderr}");
    }
    let out = kiln()
        .args(["run", "git://127.0.0.1:9/x", "--editable"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--editable mounts a local folder"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// repo2docker's build options: `--subdir` builds a folder of the repository (the root's
/// Dockerfile, which would fail, is not used), `--target-repo-dir` puts it elsewhere than the home
/// (and the session works there, and may write there), `--appendix` runs at the very end; `-e KEY`
/// passes this shell's value.
#[test]
fn subdir_target_repo_dir_and_appendix_build_as_repo2docker_does() {
    require_engine();
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(
        repo.path().join("Dockerfile"),
        "FROM kiln-test/does-not-exist\n",
    )
    .unwrap();
    std::fs::create_dir(repo.path().join("analysis")).unwrap();
    std::fs::write(repo.path().join("analysis/notes.md"), "# notes\n").unwrap();
    let marker = unique("appendix");
    let out = kiln()
        .args(["run", &repo.path().to_string_lossy()])
        .args(["--subdir", "analysis", "--target-repo-dir", "/srv/repo"])
        .args(["--appendix", &format!("RUN echo {marker} > /tmp/appendix.txt")])
        .args(["-e", "KILN_PASSED"])
        .env("KILN_PASSED", "through")
        .args([
            "--",
            "sh",
            "-c",
            "pwd; echo \"repo $REPO_DIR home $HOME\"; ls; cat /tmp/appendix.txt; touch ok && echo writable; echo \"passed $KILN_PASSED\"",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for line in [
        "/srv/repo\n",
        "repo /srv/repo home /home/jovyan",
        "notes.md",
        marker.as_str(),
        "writable",
        "passed through",
    ] {
        assert!(stderr.contains(line), "{line:?} not in {stderr}");
    }
    assert!(!stderr.contains("Dockerfile\n"), "{stderr}");
    // A folder outside the repository, or one it does not have, is refused before building.
    for (subdir, reason) in [("../x", "without .."), ("missing", "no such folder")] {
        let out = kiln()
            .args(["build", &repo.path().to_string_lossy(), "--subdir", subdir])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(reason),
            "{subdir}: {stderr}"
        );
        assert!(!stderr.contains("Building"), "{subdir}: {stderr}");
    }
}
