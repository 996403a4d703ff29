//! Benchmark of hub launches (issue 6), with the image already built: a real JupyterHub with
//! DockerSpawner from `examples/hub/jupyterhub_config.py`, `kiln serve` launching on it, 20 launches.
//! For each launch: the client's time from the `/build` request to the `ready` event, and the hub's own
//! spawn time (kiln's spawn call to the hub reporting the server ready, `hub_spawn_ms` in `ready`).
//! kiln's overhead is the difference: the request up to the spawn call (ref lookup, registry or engine
//! check, the temporary user and its token) plus hub-ready to the `ready` event. As a baseline in the
//! same run, the two hub calls a launch needs before spawning (create a user, issue a token) are timed
//! alone.
//!
//! Run: `cargo bench --bench hub` (needs the engine, the base image and JupyterHub: see README).

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

// The benchmarks use part of the tests' support code.
#[allow(dead_code)]
#[path = "../tests/kiln/support/mod.rs"]
mod support;

use std::time::Instant;

use support::jupyterhub::JupyterHubServer;
use support::service::{Service, escaped};
use support::*;

const LAUNCHES: usize = 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut values: Vec<f64>) {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "{name:<48} p50 {:>8.1} ms   p99 {:>8.1} ms   min {:>8.1} ms   max {:>8.1} ms",
        percentile(&values, 0.5),
        percentile(&values, 0.99),
        values[0],
        values[values.len() - 1]
    );
}

fn main() {
    require_engine();
    let server = GitServer::start();
    server.example("python-default", "bench-hub");
    let path = format!("/build/git/{}/HEAD", escaped(&server.url("bench-hub")));
    let hub = JupyterHubServer::start();
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(&str, String)> = hub.kiln_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let service = Service::start_with(&dir.path().join("state.db"), &env);

    // Build once (and launch once, untimed: the first launch also warms the hub).
    let (events, raw) = service.events(&path);
    let image = events
        .iter()
        .find(|e| e["phase"] == "built")
        .and_then(|e| e["imageName"].as_str())
        .unwrap_or_else(|| panic!("the build failed: {raw}"))
        .to_string();
    let stop_all = |hub: &JupyterHubServer| {
        for user in hub.users() {
            hub.api("DELETE", &format!("users/{user}"), None);
        }
        hub.wait_until(60, "users remained", |h| h.users().is_empty());
    };
    stop_all(&hub);

    let (mut total, mut spawn, mut overhead) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..LAUNCHES {
        let started = Instant::now();
        let (events, raw) = service.events(&path);
        let elapsed = started.elapsed().as_secs_f64() * 1000.0;
        let ready = events.last().unwrap();
        assert_eq!(ready["phase"], "ready", "{raw}");
        let hub_ms = ready["hub_spawn_ms"].as_f64().unwrap();
        total.push(elapsed);
        spawn.push(hub_ms);
        overhead.push(elapsed - hub_ms);
        stop_all(&hub);
    }

    // Baseline: the hub calls before a spawn, alone.
    let mut calls = Vec::new();
    for i in 0..LAUNCHES {
        let user = format!("bench-baseline-{i}");
        let started = Instant::now();
        assert_eq!(hub.api("POST", &format!("users/{user}"), None).0, 201);
        let body = format!("{{\"scopes\": [\"access:servers!server={user}/\"]}}");
        assert_eq!(
            hub.api("POST", &format!("users/{user}/tokens"), Some(&body))
                .0,
            201
        );
        calls.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    stop_all(&hub);

    println!("hub launches of an image already built ({LAUNCHES} launches, {image})");
    summary("request to ready (client)", total);
    summary("hub spawn: spawn call to hub ready", spawn);
    summary("kiln overhead: the difference", overhead);
    summary("baseline: create user + issue token (alone)", calls);
    remove_image(&image);
}
