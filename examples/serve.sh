#!/usr/bin/env bash
# kiln's main job on this machine: the service with its web page, plus a git server on loopback that
# serves the example repositories, so there is something to paste into the page.
# Installs and starts what is missing: the Docker engine (Debian's docker.io, started without a bridge
# network), debootstrap and the base image (kiln base bootstrap). Stop it with Ctrl-C.
# Usage: bash examples/serve.sh   (KILN_LISTEN=address:port to choose where; default 127.0.0.1:8585)
# It sets KILN_NETWORK=host because this machine has no bridge network: builds and sessions then share
# the host's network. Do not serve untrusted repositories this way (see README, Security).
set -euo pipefail
cd "$(dirname "$0")/.."
source examples/setup.sh

# The example repositories, each as a git repository, served by git daemon on loopback.
repos="$(mktemp -d "${TMPDIR:-/tmp}/kiln-examples.XXXXXX")"
git_port="${KILN_EXAMPLES_GIT_PORT:-9418}"
for dir in examples/repos/*/; do
    name="$(basename "$dir")"
    case "$name" in error-*) continue ;; esac
    mkdir -p "$repos/$name" && cp -a "$dir." "$repos/$name/"
    (cd "$repos/$name" && git init -q && git add -A && git -c user.name=kiln -c user.email=kiln@localhost commit -qm "$name")
done
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" --base-path="$repos" "$repos" &
daemon=$!
trap 'kill "$daemon" 2>/dev/null; rm -rf "$repos"' EXIT

export KILN_LISTEN="${KILN_LISTEN:-127.0.0.1:8585}"
export KILN_ALLOWED_HOSTS="${KILN_ALLOWED_HOSTS:-127.0.0.1}"
echo "kiln: open http://$KILN_LISTEN/ and paste, for example, git://127.0.0.1:$git_port/python-requirements" >&2
"$kiln" serve
