//! Benchmark (issue 15): the freshness check of a catalogue of 100 entries when nothing changed
//! (each entry's ref listed on a real git server, its newest version compared, the registry asked
//! for its image's digest), against the baseline of listing the same 100 refs with `git ls-remote`
//! one after the other, as a tag-bumping script would; and the latency of the spawn form's
//! profile list at p50 and p99, against `GET /versions` in the same run.
//!
//! The service runs in-process on a scripted engine (which counts builds: there must be none);
//! the git server (git-daemon) and the registry (CNCF Distribution) are real, on loopback. The
//! catalogue state is seeded with version 1 of every entry, pushed to the registry as a minimal
//! image (a config and no layers).
//!
//! Run: `cargo bench --bench catalog`

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

// The benchmarks use part of the tests' support code.
#[allow(dead_code)]
#[path = "../tests/kiln/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::Ordering;
use std::time::Instant;

use sha2::Digest;
use support::in_process::{InProcess, ScriptedEngine};
use support::{GitServer, Registry};

const ENTRIES: usize = 100;
const TOKEN: &str = "bench-admin-token";

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// One request; the status and the body.
fn request(port: u16, method: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let auth = token
        .map(|t| format!("Authorization: token {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    BufReader::new(stream)
        .read_to_string(&mut response)
        .unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Milliseconds of one GET whose answer must be 200.
fn get_ms(port: u16, path: &str) -> f64 {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{path}: {line}");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    started.elapsed().as_secs_f64() * 1000.0
}

fn latencies(port: u16, path: &str, n: usize) -> (f64, f64) {
    let mut all: Vec<f64> = (0..n).map(|_| get_ms(port, path)).collect();
    all.sort_by(f64::total_cmp);
    (percentile(&all, 0.5), percentile(&all, 0.99))
}

/// CPU seconds (user + system) this process has used.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn main() {
    let registry = Registry::start(None);
    let host = registry.host();
    let server = GitServer::start();
    let commits: Vec<String> = (0..ENTRIES)
        .map(|i| {
            server.commit(
                &format!("env{i}"),
                &[("README.md", &format!("{i}\n"))],
                "one",
            )
        })
        .collect();
    // git-daemon answers one connection at a time (about 50 ms each here): the repositories are
    // served over smart HTTP instead (`git http-backend`, a process per request, in parallel).
    let http = support::git_http::GitHttpServer::start(server.root.path(), "bench", "bench-pw");
    let repo_url = |i: usize| {
        format!(
            "http://bench:bench-pw@{}/env{i}",
            http.url().trim_start_matches("http://")
        )
    };

    // Version 1 of every entry: a minimal image in the registry, recorded as promoted.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#;
    let config_digest = format!("sha256:{}", hex::encode(sha2::Sha256::digest(config)));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": [],
    })
    .to_string();
    let state = tempfile::tempdir().unwrap();
    let catalog_state = state.path().join("catalog.db");
    let store = kiln_catalog::CatalogStore::open(&catalog_state).unwrap();
    let base = kiln_buildpacks::PlanOptions::default().base_image;
    let registry_client =
        kiln_registry::Registry::for_reference(&format!("{host}/lab-probe:x"), None).unwrap();
    let mut file = format!(
        "name = \"Bench\"\nregistry_prefix = \"{host}/lab-\"\n[admins]\ntoken_sha256 = \"{}\"\n",
        hex::encode(sha2::Sha256::digest(TOKEN.as_bytes()))
    );
    for (i, commit) in commits.iter().enumerate() {
        let image = format!("{host}/lab-e{i}:{}", kiln_catalog::version::tag(1, commit));
        let digest = runtime.block_on(async {
            registry_client
                .push_blob(&image, config, &config_digest)
                .await
                .unwrap();
            registry_client
                .push_manifest(
                    &image,
                    manifest.as_bytes(),
                    "application/vnd.oci.image.manifest.v1+json",
                )
                .await
                .unwrap()
        });
        let slug = format!("e{i}");
        store
            .reserve("lab", &slug, |number| kiln_catalog::Version {
                number,
                commit: commit.clone(),
                image: image.clone(),
                digest: Some(digest.clone()),
                base: Some(format!("sha256:scripted-{}", base.len())),
                contents_digest: None,
                sbom_digest: None,
                started: 0,
                finished: Some(1),
                state: kiln_catalog::State::Promoted,
                reason: None,
                smoke_output: None,
                build_id: None,
                deleted: None,
                built: None,
                refresh: None,
            })
            .unwrap();
        // Checked once already: the scheduler leaves them alone.
        store
            .record_check(
                "lab",
                &slug,
                &kiln_catalog::Check {
                    checked: 1,
                    result: "seeded".into(),
                    error: None,
                },
            )
            .unwrap();
        file.push_str(&format!(
            "\n[[entry]]\nslug = \"{slug}\"\nname = \"Entry {i}\"\nsource = \"{}\"\nref = \"main\"\n",
            repo_url(i)
        ));
    }
    drop(store);
    let communities = tempfile::tempdir().unwrap();
    std::fs::write(communities.path().join("lab.toml"), file).unwrap();

    let (dir, db) = (communities.path().to_path_buf(), catalog_state.clone());
    let service = InProcess::start(
        ScriptedEngine::building("kiln/unused:built", 0, std::time::Duration::ZERO),
        move |config| {
            config.communities_dir = Some(dir);
            config.catalog_state = db;
            config.catalog_tick_seconds = 3600;
        },
    );
    let port = service.http.port;

    // Baseline: the 100 refs listed one after the other with git.
    let mut baseline = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        for i in 0..ENTRIES {
            let out = std::process::Command::new("git")
                .args([
                    "ls-remote",
                    &server.url(&format!("env{i}")),
                    "refs/heads/main",
                ])
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        baseline.push(started.elapsed().as_secs_f64());
    }
    baseline.sort_by(f64::total_cmp);

    // One entry's check alone.
    let mut single = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        let (status, body) = request(
            port,
            "POST",
            "/api/communities/lab/entries/e0/check?wait=true",
            Some(TOKEN),
        );
        single.push(started.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(status, 200, "{body}");
    }
    single.sort_by(f64::total_cmp);

    // kiln's check of the whole catalogue, nothing changed.
    let (status, _) = request(
        port,
        "POST",
        "/api/communities/lab/check?wait=true",
        Some(TOKEN),
    );
    assert_eq!(status, 200, "warm-up");
    let mut runs = Vec::new();
    let cpu_before = cpu_seconds();
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = request(
            port,
            "POST",
            "/api/communities/lab/check?wait=true",
            Some(TOKEN),
        );
        runs.push(started.elapsed().as_secs_f64());
        assert_eq!(status, 200, "{body}");
        let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
        let reports = answer["reports"].as_array().unwrap();
        assert_eq!(reports.len(), ENTRIES);
        for r in reports {
            assert_eq!(r["outcome"], "nothing", "{r}");
        }
    }
    let cpu = (cpu_seconds() - cpu_before) / 5.0;
    runs.sort_by(f64::total_cmp);
    assert_eq!(
        service.engine.builds.load(Ordering::SeqCst),
        0,
        "no engine work when nothing changed"
    );

    // The profile list, against /versions.
    let (versions_p50, versions_p99) = latencies(port, "/versions", 2000);
    let (profiles_p50, profiles_p99) = latencies(port, "/communities/lab/profiles", 2000);
    let (_, profiles) = request(port, "GET", "/communities/lab/profiles", None);
    let profiles: serde_json::Value = serde_json::from_str(&profiles).unwrap();
    assert_eq!(profiles.as_array().unwrap().len(), ENTRIES);

    let median = |v: &[f64]| v[v.len() / 2];
    println!("catalogue of {ENTRIES} entries, nothing changed");
    println!(
        "  baseline: git ls-remote x{ENTRIES}, one after the other: median {:.3} s",
        median(&baseline)
    );
    println!(
        "  kiln: POST /api/communities/lab/check: median {:.3} s, slowest {:.3} s (goal < 2 s); ratio to the baseline {:.2}x",
        median(&runs),
        runs[runs.len() - 1],
        median(&runs) / median(&baseline)
    );
    println!("  builds started: 0; CPU time of the service per check: {cpu:.3} s");
    println!(
        "  one entry's check alone: median {:.1} ms",
        single[single.len() / 2]
    );
    println!(
        "profile list ({ENTRIES} profiles, {} bytes): p50 {profiles_p50:.2} ms, p99 {profiles_p99:.2} ms (goal p99 < 5 ms)",
        profiles.to_string().len()
    );
    println!(
        "  baseline GET /versions: p50 {versions_p50:.2} ms, p99 {versions_p99:.2} ms; ratio p99 {:.2}x",
        profiles_p99 / versions_p99
    );
}
