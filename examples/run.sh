#!/usr/bin/env bash
# kiln's main job on this machine: build an example repository and open it in JupyterLab.
# Installs and starts what is missing: the Docker engine (Debian's docker.io, started without a bridge
# network), debootstrap and the base image (kiln base bootstrap), then runs `kiln run`.
# Usage: bash examples/run.sh [EXAMPLE] [-- COMMAND...]   (EXAMPLE: a folder of examples/repos,
#        default python-requirements; conda-fixture is a conda environment). Stop the session with Ctrl-C.
# It sets KILN_NETWORK=host because this machine has no bridge network: builds and the session then
# share the host's network. Do not use host networking for repositories you do not trust.
set -euo pipefail
cd "$(dirname "$0")/.."
example="${1:-python-requirements}"
shift || true
source examples/setup.sh
trap '[ -z "$conda_channel_pid" ] || kill "$conda_channel_pid" 2>/dev/null' EXIT
"$kiln" run "examples/repos/$example" "$@"
