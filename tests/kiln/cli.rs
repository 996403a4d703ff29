//! The `kiln` binary: `plan` and `dockerfile` on the example repositories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(args)
        .output()
        .expect("the kiln binary runs")
}

fn example(name: &str) -> String {
    let path: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/repos")
        .join(name);
    path.to_string_lossy().into_owned()
}

#[test]
fn plan_json_lists_buildpacks_primary_first_and_the_environment_key() {
    let out = kiln(&["plan", "--json", &example("julia")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = plan["buildpacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["julia", "python"]);
    assert!(
        plan["buildpacks"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("Project.toml")
    );
    assert!(
        plan["environment_key"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
}

#[test]
fn plan_text_gives_a_reason_for_each_decision() {
    let out = kiln(&["plan", &example("binder-dir")]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("python     primary  binder/requirements.txt exists"),
        "{text}"
    );
    assert!(
        text.contains("root setup.py: ignored\n      because binder/ exists"),
        "{text}"
    );
    assert!(text.contains("[root] apt.txt: jq"), "{text}");
    assert!(text.contains("Environment key: sha256:"), "{text}");
}

#[test]
fn dockerfile_renders_buildkit_and_classic() {
    let out = kiln(&["dockerfile", &example("python-requirements")]);
    assert!(out.status.success());
    let buildkit = String::from_utf8(out.stdout).unwrap();
    assert!(buildkit.contains("--mount=type=cache"), "{buildkit}");
    // uv only builds: with BuildKit it has a stage of its own and is mounted where it is used.
    assert!(
        buildkit.contains("FROM kiln-base AS kiln-tool-uv\n"),
        "{buildkit}"
    );
    assert!(
        buildkit.contains(
            "--mount=type=bind,from=kiln-tool-uv,source=/opt/kiln/uv/bin/uv,target=/usr/local/bin/uv"
        ),
        "{buildkit}"
    );
    let out = kiln(&["dockerfile", "--classic", &example("python-requirements")]);
    let classic = String::from_utf8(out.stdout).unwrap();
    assert!(!classic.contains("--mount"), "{classic}");
    assert!(classic.contains("UV_NO_CACHE=1"), "{classic}");
    assert!(!classic.contains("kiln-tool-uv"), "{classic}");
    assert!(
        classic.contains("/opt/kiln/uv/bin/pip install"),
        "the classic builder installs uv into the image: {classic}"
    );
    let out = kiln(&[
        "dockerfile",
        "--base-image",
        "example.org/base:1",
        "--uid",
        "1234",
        &example("python-default"),
    ]);
    let custom = String::from_utf8(out.stdout).unwrap();
    assert!(
        custom.contains("FROM example.org/base:1 AS kiln-base\n"),
        "{custom}"
    );
    assert!(custom.contains("create-user jovyan 1234"), "{custom}");
}

#[test]
fn bad_input_fails_with_a_clear_message_and_status_1() {
    for (name, expected) in [
        ("error-both-binder-dirs", "both binder/ and .binder/ exist"),
        ("error-yaml", "environment.yml:5:12: invalid YAML"),
        ("error-apt-invalid", "apt.txt:2:"),
    ] {
        let out = kiln(&["plan", &example(name)]);
        assert_eq!(out.status.code(), Some(1), "{name}");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.starts_with("kiln: error: cannot plan"), "{stderr}");
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(out.stdout.is_empty());
    }
    let out = kiln(&["plan", "/nonexistent/kiln-repo"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/kiln-repo: cannot read"));
    let out = kiln(&["plan", "--user", "Bad User", &example("python-default")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid Linux user name"));
}

/// A setting refused before the build starts is said, not swallowed: an exit status 1 with no
/// word was what a bad KILN_GIT_CREDENTIAL_HOSTS gave.
#[test]
fn a_bad_setting_refused_before_the_build_says_why() {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["build", "--json-logs", &example("python-default")])
        .env("KILN_GIT_CREDENTIAL_HOSTS", "bad host:x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failed: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("null"))
        .unwrap_or_else(|_| panic!("no failed event: {stdout:?}"));
    assert_eq!(failed["phase"], "failed", "{stdout}");
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("KILN_GIT_CREDENTIAL_HOSTS"),
        "{failed}"
    );
}
