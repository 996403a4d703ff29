//! Julia from the list of releases: `[compat] julia` picks the newest stable release of a
//! `versions.json` served on loopback (standing in for julialang-s3.julialang.org, which this
//! machine cannot reach), the list is kept and used when the server is gone, a missing list falls
//! back to kiln's built-in one with a warning, and an archive that does not match the list's
//! sha256 fails the build.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::*;

/// A static file server (tests/services/conda-channel.py) for `dir`; stopped on drop.
struct Files {
    child: Child,
    port: u16,
}

impl Files {
    fn serve(dir: &Path) -> Files {
        let port = free_port();
        let child = Command::new("python3")
            .arg(format!(
                "{}/tests/services/conda-channel.py",
                env!("CARGO_MANIFEST_DIR")
            ))
            .arg(port.to_string())
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 runs (it serves the list)");
        wait_for_port(port);
        Files { child, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `versions.json` with 1.3.0, 1.3.1 (neither in kiln's built-in list), 1.12.2 and a 1.13
/// release candidate; archives at `base`, 1.3.1 with `sha256`.
fn versions_json(base: &str, sha256: &str) -> String {
    let release = |v: &str, stable: bool, sha: Option<&str>| {
        serde_json::json!({
            "stable": stable,
            "files": [{
                "triplet": "x86_64-linux-gnu", "kind": "archive", "extension": "tar.gz",
                "os": "linux", "arch": "x86_64", "version": v,
                "url": format!("{base}julia-{v}-linux-x86_64.tar.gz"),
                "sha256": sha,
            }]
        })
    };
    serde_json::json!({
        "1.3.0": release("1.3.0", true, None),
        "1.3.1": release("1.3.1", true, Some(sha256)),
        "1.12.2": release("1.12.2", true, None),
        "1.13.0-rc1": release("1.13.0-rc1", false, None),
    })
    .to_string()
}

/// A folder served on loopback with [`versions_json`] as `versions.json`, archives named at the
/// same server.
fn serve_the_list() -> (tempfile::TempDir, Files) {
    let site = tempfile::tempdir().unwrap();
    let files = Files::serve(site.path());
    std::fs::write(
        site.path().join("versions.json"),
        versions_json(&files.url(""), SHA),
    )
    .unwrap();
    (site, files)
}

fn julia_repo(compat: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Project.toml"),
        format!("[compat]\njulia = \"{compat}\"\n"),
    )
    .unwrap();
    dir
}

/// `kiln plan --json` with the list at `url` and the cache in `cache`: (succeeded, plan, stderr).
fn plan(repo: &Path, url: &str, cache: &Path) -> (bool, serde_json::Value, String) {
    let out = kiln()
        .env("KILN_JULIA_VERSIONS_URL", url)
        .env("XDG_CACHE_HOME", cache)
        .args(["plan", "--json"])
        .arg(repo)
        .output()
        .unwrap();
    let plan = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        plan,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn julia_decision(plan: &serde_json::Value) -> (String, String) {
    let decision = plan["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["topic"] == "julia")
        .unwrap_or_else(|| panic!("no julia decision: {plan}"));
    (
        decision["value"].as_str().unwrap().to_string(),
        decision["reason"].as_str().unwrap().to_string(),
    )
}

const SHA: &str = "5b8d2b0a56d2b4bcf6b1f5f1fe3c3fa1b0c2c3e8f1f33d5bd1bb01e4f1d6a0aa";

#[test]
fn julia_compat_picks_the_newest_matching_release_of_the_list_served_on_loopback() {
    let (_site, files) = serve_the_list();
    let cache = tempfile::tempdir().unwrap();
    let url = files.url("versions.json");

    // `~1.3` admits [1.3.0, 1.4.0); `=1.3` is exactly 1.3.0.
    let repo = julia_repo("~1.3");
    let (ok, plan_json, stderr) = plan(julia_repo("=1.3").path(), &url, cache.path());
    assert!(ok, "{stderr}");
    assert_eq!(julia_decision(&plan_json).0, "1.3.0");
    let (ok, plan_json, stderr) = plan(repo.path(), &url, cache.path());
    assert!(ok, "{stderr}");
    let (version, reason) = julia_decision(&plan_json);
    assert_eq!(version, "1.3.1");
    assert!(reason.contains(&url), "{reason}");
    // The install step downloads the list's archive and checks the list's sha256.
    let text = plan_json.to_string();
    assert!(
        text.contains(&files.url("julia-1.3.1-linux-x86_64.tar.gz")),
        "{text}"
    );
    assert!(text.contains(SHA), "{text}");

    // Not a release candidate: the newest stable 1.x.
    let (ok, plan_json, stderr) = plan(julia_repo("1").path(), &url, cache.path());
    assert!(ok, "{stderr}");
    assert_eq!(julia_decision(&plan_json).0, "1.12.2");

    // The list is kept: with its server gone, the next plan still has it.
    drop(files);
    let (ok, plan_json, stderr) = plan(repo.path(), &url, cache.path());
    assert!(ok, "{stderr}");
    assert_eq!(julia_decision(&plan_json).0, "1.3.1");
}

#[test]
fn without_the_list_julia_is_chosen_from_the_built_in_one_with_a_warning() {
    let cache = tempfile::tempdir().unwrap();
    let nowhere = format!("http://127.0.0.1:{}/versions.json", free_port());
    let (ok, plan_json, stderr) = plan(julia_repo("~1.10").path(), &nowhere, cache.path());
    assert!(ok, "{stderr}");
    assert!(
        stderr.contains("cannot fetch the list of Julia releases"),
        "{stderr}"
    );
    let (version, reason) = julia_decision(&plan_json);
    assert!(version.starts_with("1.10."), "{version}");
    assert!(reason.contains("built-in list"), "{reason}");
    // 1.3 is in the official list only: the error says what kiln can install.
    let (ok, _, stderr) = plan(julia_repo("=1.3").path(), &nowhere, cache.path());
    assert!(!ok);
    assert!(
        stderr.contains("matches none of the Julia releases kiln can install"),
        "{stderr}"
    );
}

/// The list names the archive and its checksum; an archive swapped on the download server (or a
/// mirror) does not match it, and the build fails before anything of it is unpacked.
#[test]
fn a_julia_archive_that_does_not_match_the_lists_sha256_fails_the_build() {
    require_engine();
    let (site, files) = serve_the_list();
    std::fs::write(
        site.path().join("julia-1.3.1-linux-x86_64.tar.gz"),
        b"not the archive the list names",
    )
    .unwrap();
    let repo = julia_repo("~1.3");
    let image = format!("kiln-test/{}:1", unique("julia-sha"));
    // The default cache folder (its build caches are warm); the list's URL has a port of its own.
    let out = kiln()
        .env("KILN_JULIA_VERSIONS_URL", files.url("versions.json"))
        .args(["build", "--json-logs", "--image-name", &image])
        .arg(repo.path())
        .output()
        .unwrap();
    let events = events(&out.stdout);
    assert!(!out.status.success());
    let text = messages(&events);
    assert!(
        text.contains("does not have the sha256 of the list of releases"),
        "{text}"
    );
    remove_image(&image);
}
