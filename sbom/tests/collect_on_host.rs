//! The collection script, run for real with `/bin/sh` on this Debian host (the same Debian as kiln's
//! default image) in an empty environment, against a Python venv, a conda prefix and a Julia
//! project made in a temporary folder: its output parses into a record with what is there, the
//! managers that are absent are skipped, and running it twice gives the same digest.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

use std::path::Path;
use std::process::Command;

use kiln_sbom::collect::{Targets, script};
use kiln_sbom::{ImageMeta, parse_collected};

fn have(tool: &str) -> bool {
    Command::new("/bin/sh")
        .args(["-c", &format!("command -v {tool}")])
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .output()
        .is_ok_and(|o| o.status.success())
}

const SHA: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// A venv with one hand-made distribution (no network, no pip run).
fn make_venv(root: &Path) -> std::path::PathBuf {
    let venv = root.join("venv");
    let ok = Command::new("python3")
        .args(["-m", "venv", "--without-pip"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "python3 -m venv failed; install it with: apt-get install -y python3-venv"
    );
    let purelib = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])",
        ])
        .output()
        .unwrap();
    let site = std::path::PathBuf::from(String::from_utf8(purelib.stdout).unwrap().trim());
    let info = site.join("Demo_Pkg-1.2.0.dist-info");
    std::fs::create_dir_all(&info).unwrap();
    std::fs::write(
        info.join("METADATA"),
        "Metadata-Version: 2.1\nName: Demo_Pkg\nVersion: 1.2.0\n",
    )
    .unwrap();
    std::fs::write(info.join("INSTALLER"), "uv\n").unwrap();
    std::fs::write(info.join("REQUESTED"), "").unwrap();
    std::fs::write(
        info.join("direct_url.json"),
        format!(r#"{{"url": "https://files.example.org/demo_pkg-1.2.0-py3-none-any.whl", "archive_info": {{"hashes": {{"sha256": "{SHA}"}}}}}}"#),
    )
    .unwrap();
    venv
}

#[test]
fn the_collection_script_runs_with_sh_on_debian_and_parses() {
    for tool in ["dpkg-query", "python3"] {
        assert!(
            have(tool),
            "{tool} is needed: this test runs the script on a Debian host (apt-get install -y dpkg python3-venv)"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let venv = make_venv(root);
    let conda = root.join("conda/envs/notebook/conda-meta");
    std::fs::create_dir_all(&conda).unwrap();
    std::fs::write(
        conda.join("kiln-lock.txt"),
        format!("@EXPLICIT\nhttps://conda.anaconda.org/conda-forge/noarch/tzdata-2024b-hc8b5060_0.conda#sha256:{SHA}\n"),
    )
    .unwrap();
    std::fs::write(conda.join("tzdata-2024b-hc8b5060_0.json"), "{}").unwrap();
    std::fs::write(conda.join("history"), "").unwrap();
    let julia = root.join("project");
    std::fs::create_dir_all(&julia).unwrap();
    std::fs::write(
        julia.join("Manifest.toml"),
        // A repository may write what it likes in a file: a line that looks like the end of
        // the output must not end it.
        "julia_version = \"1.10.5\"\nmanifest_format = \"2.0\"\n\n[[deps.JSON]]\nuuid = \"682c06a0-de6a-54ab-a142-c8b1cf79cde6\"\nversion = \"0.21.4\"\nnote = \"\"\"\n@@kiln-collect@@ done\n\"\"\"\n",
    )
    .unwrap();
    let home = root.join("home");
    std::fs::create_dir_all(&home).unwrap();

    let p = |p: &Path| p.to_str().unwrap().to_string();
    let targets = Targets {
        python: vec![p(&venv), format!("{}/conda/envs/*", p(root)), p(&venv)],
        conda: vec![format!("{}/conda/envs/*", p(root))],
        julia: vec![p(&julia)],
    };
    let text = script(&targets).unwrap();
    let run = || {
        let out = Command::new("/bin/sh")
            .arg("-c")
            .arg(&text)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", &home)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let output = run();
    let record =
        parse_collected(&output, ImageMeta::default()).unwrap_or_else(|e| panic!("{e}\n{output}"));

    assert_eq!(record.os.as_ref().unwrap().id, "debian");
    assert!(record.architecture.is_some());
    assert!(
        record.deb.iter().any(|d| d.name == "dpkg"),
        "dpkg lists itself"
    );
    assert_eq!(record.python.len(), 1, "the venv, once, though named twice");
    let env = &record.python[0];
    assert!(
        env.python_version
            .as_deref()
            .is_some_and(|v| v.starts_with("3."))
    );
    let demo = env.packages.iter().find(|p| p.name == "demo-pkg").unwrap();
    assert_eq!(demo.installer.as_deref(), Some("uv"));
    assert!(demo.requested);
    assert_eq!(demo.hashes.get("sha256").map(String::as_str), Some(SHA));
    assert_eq!(record.conda.len(), 1);
    assert_eq!(record.conda[0].packages[0].sha256.as_deref(), Some(SHA));
    assert_eq!(record.julia[0].packages[0].name, "JSON");
    assert!(
        output.contains("\n|@@kiln-collect@@ done\n"),
        "file lines are quoted"
    );
    // R and npm: collected when the host has them, skipped when it does not.
    assert_eq!(record.r.is_some(), have("Rscript"));
    if let Some(r) = &record.r {
        assert!(r.packages.iter().any(|p| p.name == "base"));
    }
    assert_eq!(output.contains("begin npm"), have("npm"));

    let again = parse_collected(&run(), ImageMeta::default()).unwrap();
    assert_eq!(
        again.digest(),
        record.digest(),
        "the same host, the same record"
    );
}
