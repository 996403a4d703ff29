//! Benchmarks of `kiln serve` (issue 5), on loopback with the real engine and a git daemon:
//!  1. image already built: request to `built` event, p50 and p99, beside the remote ref lookup alone;
//!  2. 1,000 concurrent watchers of one build: memory per watcher (the service's RSS), and how much
//!     later each watcher gets an event than the first watcher that got it (fan-out delay), p50 and p99.
//!
//! Run: `cargo bench --bench service` (needs the engine and the base image: see README).

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

// The benchmarks use part of the tests' support code.
#[allow(dead_code)]
#[path = "../tests/kiln/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_builder::git::{GitBackend, LibGit};
use kiln_builder::source::Source;
use support::service::escaped;
use support::*;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Open `path` as an event stream; call `on_event` with each `data:` line's arrival time, until
/// `built`/`ready`/`failed`.
fn watch(port: u16, path: &str, mut on_event: impl FnMut(&str, Instant)) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if let Some(data) = line.trim_end().strip_prefix("data: ") {
            let at = Instant::now();
            on_event(data, at);
            if data.contains("\"phase\":\"built\"")
                || data.contains("\"phase\":\"ready\"")
                || data.contains("\"phase\":\"failed\"")
            {
                return;
            }
        }
        line.clear();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "fast");
    let state = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut service = kiln()
        .arg("serve")
        .env("KILN_LISTEN", format!("127.0.0.1:{port}"))
        .env("KILN_ALLOWED_HOSTS", "127.0.0.1:*")
        .env("KILN_DEVELOPMENT", "1")
        .env("KILN_RATE_LIMIT", "0")
        .env("KILN_STATE", state.path().join("state.db"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_port(port);

    // 1. Image already built: request to `built`.
    let path = format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped(&server.url("fast"))
    );
    watch(port, &path, |_, _| {});
    let runs = 50;
    let mut built_ms = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut at = None;
        watch(port, &path, |data, t| {
            if data.contains("\"phase\":\"built\"") {
                at = Some(t);
            }
        });
        built_ms.push(
            at.expect("a built event")
                .duration_since(start)
                .as_secs_f64()
                * 1000.0,
        );
    }
    let Source::Git(git) = Source::parse(&server.url("fast")).unwrap() else {
        unreachable!()
    };
    let mut lookup_ms = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        LibGit
            .resolve(
                &git,
                Some("HEAD"),
                &kiln_builder::git::FetchSettings::default(),
            )
            .unwrap();
        lookup_ms.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    built_ms.sort_by(f64::total_cmp);
    lookup_ms.sort_by(f64::total_cmp);
    println!("## request to built, image already built ({runs} requests, sequential)");
    println!("| measure | p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|");
    println!(
        "| request -> `built` event (kiln serve, build_only) | {:.1} | {:.1} |",
        percentile(&built_ms, 0.5),
        percentile(&built_ms, 0.99)
    );
    println!(
        "| remote ref lookup alone (libgit2, same repository) | {:.1} | {:.1} |",
        percentile(&lookup_ms, 0.5),
        percentile(&lookup_ms, 0.99)
    );

    // 2. 1,000 watchers of one build.
    let marker = unique("watchers");
    server.commit(
        "slow",
        &[(
            "Dockerfile",
            &format!(
                "FROM {}\nRUN echo {marker} && for i in $(seq 1 40); do echo kiln-line-$i; sleep 0.25; done\n",
                kiln_buildpacks::options::DEFAULT_BASE_IMAGE
            ),
        )],
        "slow build",
    );
    let before = rss_kib(service.id());
    let watchers = 1000;
    let slow = Arc::new(format!(
        "/build/git/{}/HEAD?build_only=true",
        escaped(&server.url("slow"))
    ));
    let connected = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let handles: Vec<_> = (0..watchers)
        .map(|_| {
            let (slow, connected) = (slow.clone(), connected.clone());
            std::thread::Builder::new()
                .stack_size(128 * 1024)
                .spawn(move || {
                    let mut arrivals: Vec<(String, Instant)> = Vec::new();
                    let mut first = true;
                    watch(port, &slow, |data, t| {
                        if first {
                            connected.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            first = false;
                        }
                        arrivals.push((data.to_string(), t));
                    });
                    arrivals
                })
                .unwrap()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while connected.load(std::sync::atomic::Ordering::SeqCst) < watchers
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let during = rss_kib(service.id());
    let results: Vec<Vec<(String, Instant)>> =
        handles.into_iter().map(|h| h.join().unwrap()).collect();
    // For each event (by its position in the stream), how much later than the first watcher each got it.
    let events = results.iter().map(Vec::len).min().unwrap_or(0);
    let mut delays = Vec::new();
    for k in 0..events {
        let first = results.iter().map(|r| r[k].1).min().unwrap();
        delays.extend(
            results
                .iter()
                .map(|r| r[k].1.duration_since(first).as_secs_f64() * 1000.0),
        );
    }
    delays.sort_by(f64::total_cmp);
    println!();
    println!("## {watchers} concurrent watchers of one build ({events} events each)");
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| service RSS before / with {watchers} watchers | {} MiB / {} MiB |",
        before / 1024,
        during / 1024
    );
    println!(
        "| memory per watcher | {:.1} KiB |",
        (during.saturating_sub(before)) as f64 / watchers as f64
    );
    println!(
        "| fan-out delay, p50 | {:.2} ms |",
        percentile(&delays, 0.5)
    );
    println!(
        "| fan-out delay, p99 | {:.2} ms |",
        percentile(&delays, 0.99)
    );
    let _ = service.kill();
    let _ = service.wait();
}
