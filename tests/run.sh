#!/usr/bin/env bash
# kiln's whole test suite: starts what the tests need, then runs every test of the workspace.
#   - the Docker engine (tests/services/engine.sh: installs docker.io when missing, no bridge network)
#   - the default base image (kiln base bootstrap: debootstrap, then import; skipped when present)
#   - JupyterHub, DockerSpawner and configurable-http-proxy (examples/hub/install.sh: PyPI and npm, into
#     /var/cache/kiln-hub/<version>, for JupyterHub 6.1.1 and 5.4.6); the hub tests start their own hubs from examples/hub/jupyterhub_config.py
#   - BinderHub's JavaScript client (tests/services/binderhub-client.sh: @jupyterhub/binderhub-client
#     from npm, into /var/cache/kiln-npm), which the hub service tests drive as fancy-profiles does
#   - the fixture conda channel (tests/conda/make-channel.sh: Debian's Python repackaged with
#     py-rattler-build from PyPI; quick when unchanged), in /var/cache/kiln-conda-fixture/channel
#   - the CycloneDX 1.6 schema validator (sbom/tests/make-validator.sh: cyclonedx-python-lib from PyPI
#     into /var/cache/kiln-cyclonedx/venv)
#   - from Debian when missing: git (its daemon serves the test repositories), debootstrap,
#     docker-registry (CNCF Distribution; tests start their own on loopback), skopeo, htpasswd,
#     chromium and chromium-driver (the web page test; its screenshot lands in test-artifacts/)
# It first checks the code: cargo fmt --check and cargo clippy --all-targets -- -D warnings.
# Usage: bash tests/run.sh   (CI runs exactly this through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Two cores: build with both, run tests two at a time. One build, so no incremental state (it
# doubles the target folder's size).
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

need=()
command -v git >/dev/null || need+=(git)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
command -v npm >/dev/null || need+=(npm)
command -v python3 >/dev/null || need+=(python3 python3-venv)
if [ "${#need[@]}" -gt 0 ]; then
    echo "tests: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo fmt --all --check
cargo clippy --quiet --workspace --all-targets -- -D warnings
bash tests/services/engine.sh
bash examples/hub/install.sh >/dev/null
KILN_JUPYTERHUB_VERSION=5.4.6 bash examples/hub/install.sh >/dev/null
bash tests/services/binderhub-client.sh >/dev/null
cargo build --quiet --bin kiln
"${CARGO_TARGET_DIR:-target}/debug/kiln" base bootstrap
bash tests/conda/make-channel.sh /var/cache/kiln-conda-fixture/channel
export KILN_TEST_CONDA_CHANNEL=/var/cache/kiln-conda-fixture/channel
bash sbom/tests/make-validator.sh >/dev/null

cargo test --workspace --no-fail-fast -- --test-threads 2
