#!/usr/bin/env bash
# kiln's whole test suite: starts what the tests need, then runs every test of the workspace.
# Usage: bash tests/run.sh   (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Two cores: build with both, run tests two at a time.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
cargo test --workspace --no-fail-fast -- --test-threads 2
