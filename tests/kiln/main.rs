//! kiln's integration tests: one binary, a module per area, the support code compiled once.
//!
//! The tests use real components, started by the tests themselves or by `bash tests/run.sh`: the
//! Docker engine, git servers, registries, JupyterHubs, Chromium and a conda channel on loopback. A
//! missing component fails the test with the command that starts it. Each module says what it
//! covers; tests are named after the behaviour they guard.

#![allow(clippy::unwrap_used)] // In tests and benchmarks an unwrap is an assertion.

mod support;

mod binderhub_routes;
mod cli;
mod communities;
mod conda_build;
mod contents;
mod engine_features;
mod examples_build;
mod faults;
mod git_sources;
mod handlers;
mod hostile;
mod hub_launch;
mod hub_service;
mod julia_releases;
mod locks;
mod mirrors;
mod r_builds;
mod records;
mod registry;
mod run_session;
mod service;
mod web_page;
