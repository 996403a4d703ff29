//! The hostile-input suite: each test tries one attack on a running `kiln serve` (with the real
//! engine, git servers, registry, conda channel and browser on loopback) and asserts the refusal or
//! the limit. Tests are named after the attack they try.
//!
//! - [`network`]: reaching loopback and private networks through sources, redirects, submodules and
//!   conda channels, and conda packages that write outside their environment;
//! - [`secrets`]: credentials in specs, private builds, the operator's credentials;
//! - [`limits`]: checkout bombs, builds that never end, queues, floods of log lines and streams;
//! - [`sessions`]: what a session and a repository's Dockerfile can do to the machine, and the
//!   launch page's `urlpath`;
//! - [`communities`]: one community's admin acting on another, catalogue sources naming the
//!   service's disk or private addresses, secrets in community files.

mod communities;
mod limits;
mod network;
mod secrets;
mod sessions;

use crate::support::service::{Service, escaped};

/// The events of `/build` for a git URL at HEAD.
fn build_events(service: &Service, url: &str, query: &str) -> Vec<serde_json::Value> {
    service
        .events(&format!("/build/git/{}/HEAD{query}", escaped(url)))
        .0
}

/// The last event's message, asserting the stream ended `failed`.
fn failure(events: &[serde_json::Value]) -> String {
    let last = events.last().expect("at least one event");
    assert_eq!(last["phase"], "failed", "{events:?}");
    last["message"].as_str().unwrap_or_default().to_string()
}
