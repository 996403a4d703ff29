//! Benchmark (issue 11): 50 concurrent replays of a finished build's 100,000-line log, and how
//! responsive the service stays meanwhile: the latency of `GET /versions`, at p50 and p99, alone
//! (the baseline, in the same run) and during the replays; and how long the replays take.
//!
//! The service runs in-process on a scripted engine (the build is a script of log lines): the
//! router, the store (SQLite, paged replays off the async threads) and the streams are kiln's own.
//!
//! Run: `cargo bench --bench replay`

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

// The benchmarks use part of the tests' support code.
#[allow(dead_code)]
#[path = "../tests/kiln/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::in_process::{InProcess, ScriptedEngine};
use support::service::escaped;

const LINES: usize = 100_000;
const REPLAYS: usize = 50;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds of one `GET /versions`.
fn versions_ms(port: u16) -> f64 {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "GET /versions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    started.elapsed().as_secs_f64() * 1000.0
}

/// Read a build's whole event stream; returns the number of events.
fn replay(port: u16, id: &str) -> usize {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(600)))
        .unwrap();
    write!(
        stream,
        "GET /api/builds/{id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let reader = BufReader::new(stream);
    reader
        .lines()
        .map_while(Result::ok)
        .filter(|l| l.starts_with("data: "))
        .count()
}

fn latencies(port: u16, until: impl Fn() -> bool) -> Vec<f64> {
    let mut samples = Vec::new();
    while !until() || samples.len() < 20 {
        samples.push(versions_ms(port));
        std::thread::sleep(Duration::from_millis(5));
    }
    samples.sort_by(f64::total_cmp);
    samples
}

fn main() {
    let service = InProcess::start(
        ScriptedEngine::building("kiln/replay:1", LINES, Duration::ZERO),
        |config| {
            config.max_log_lines = LINES * 2;
            config.rate_limit = 0;
            config.max_streams_per_client = 0;
        },
    );
    let port = service.port;
    let spec = format!("{}/HEAD", escaped("git://127.0.0.1:9/replay"));
    let (status, started) = service.json(
        "POST",
        "/api/builds",
        Some(serde_json::json!({"provider": "git", "spec": spec})),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_str().unwrap().to_string();
    let build_started = Instant::now();
    let events = replay(port, &id);
    println!(
        "the build: {events} events recorded and read back in {:.2} s",
        build_started.elapsed().as_secs_f64()
    );
    assert_eq!(events, LINES + 2);

    // Baseline: the service idle.
    let idle_until = Instant::now() + Duration::from_secs(3);
    let idle = latencies(port, || Instant::now() > idle_until);

    // 50 replays at once, and the latency meanwhile.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let replays_started = Instant::now();
    let readers: Vec<_> = (0..REPLAYS)
        .map(|_| {
            let (id, done) = (id.clone(), done.clone());
            std::thread::spawn(move || {
                let started = Instant::now();
                let n = replay(port, &id);
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                (n, started.elapsed().as_secs_f64())
            })
        })
        .collect();
    let loaded = latencies(port, || {
        done.load(std::sync::atomic::Ordering::SeqCst) == REPLAYS
    });
    let mut durations: Vec<f64> = readers
        .into_iter()
        .map(|r| {
            let (n, seconds) = r.join().unwrap();
            assert_eq!(n, LINES + 2, "a replay lost events");
            seconds
        })
        .collect();
    let wall = replays_started.elapsed().as_secs_f64();
    durations.sort_by(f64::total_cmp);
    println!(
        "GET /versions while idle:          p50 {:.2} ms  p99 {:.2} ms  ({} samples)",
        percentile(&idle, 0.5),
        percentile(&idle, 0.99),
        idle.len()
    );
    println!(
        "GET /versions during {REPLAYS} replays: p50 {:.2} ms  p99 {:.2} ms  ({} samples)",
        percentile(&loaded, 0.5),
        percentile(&loaded, 0.99),
        loaded.len()
    );
    println!(
        "ratio (during / idle):             p50 {:.1}x  p99 {:.1}x",
        percentile(&loaded, 0.5) / percentile(&idle, 0.5),
        percentile(&loaded, 0.99) / percentile(&idle, 0.99)
    );
    println!(
        "{REPLAYS} replays of {} events: all done in {wall:.2} s; each p50 {:.2} s, slowest {:.2} s ({:.0} events/s in all)",
        LINES + 2,
        percentile(&durations, 0.5),
        durations.last().unwrap(),
        (REPLAYS * (LINES + 2)) as f64 / wall
    );
}
