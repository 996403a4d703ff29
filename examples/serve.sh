#!/usr/bin/env bash
# kiln's main job on this machine: the service with its web page, plus a git server on loopback that
# serves the example repositories, so there is something to paste into the page.
# Installs and starts what is missing: the Docker engine (Debian's docker.io, started without a bridge
# network), debootstrap and the base image (kiln base bootstrap). Stop it with Ctrl-C.
# Usage: bash examples/serve.sh [--hub]   (KILN_LISTEN=address:port to choose where; default 127.0.0.1:8585)
#   --hub   also start a JupyterHub (examples/hub: DockerSpawner, on 127.0.0.1:${KILN_HUB_PORT_PUBLIC:-8000})
#           and launch sessions on it instead of on the service's own engine
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

cleanup="kill $daemon ${conda_channel_pid} 2>/dev/null; rm -rf $repos"
trap "$cleanup" EXIT
if [ "${1:-}" = "--hub" ]; then
    hub_home="$(bash examples/hub/install.sh)"
    hub_state="$(mktemp -d "${TMPDIR:-/tmp}/kiln-hub.XXXXXX")"
    hub_port="${KILN_HUB_PORT_PUBLIC:-8000}"
    export KILN_HUB_API_TOKEN="${KILN_HUB_API_TOKEN:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
    # Its own session: Ctrl-C reaches kiln, and the hub is stopped by the trap (SIGTERM to it alone,
    # so it can stop its servers, proxy and services in order).
    KILN_HUB_STATE="$hub_state" PATH="$hub_home/bin:$PATH" setsid \
        "$hub_home/bin/jupyterhub" -f examples/hub/jupyterhub_config.py --ip 127.0.0.1 --port "$hub_port" \
        >"$hub_state/jupyterhub.log" 2>&1 &
    hub=$!
    cleanup="kill $hub 2>/dev/null; wait $hub 2>/dev/null; rm -rf $hub_state; $cleanup"
    trap "$cleanup" EXIT
    for _ in $(seq 1 120); do
        curl -fsS "http://127.0.0.1:$hub_port/hub/api/" >/dev/null 2>&1 && break
        kill -0 "$hub" 2>/dev/null || { cat "$hub_state/jupyterhub.log" >&2; exit 1; }
        sleep 0.5
    done
    export KILN_HUB_URL="http://127.0.0.1:$hub_port/"
    echo "kiln: JupyterHub on $KILN_HUB_URL (log: $hub_state/jupyterhub.log)" >&2
fi

export KILN_LISTEN="${KILN_LISTEN:-127.0.0.1:8585}"
export KILN_ALLOWED_HOSTS="${KILN_ALLOWED_HOSTS:-127.0.0.1:*}"
# Host networking (this machine has no bridge): a development machine only (README, Security).
export KILN_DEVELOPMENT="${KILN_DEVELOPMENT:-1}"
echo "kiln: open http://$KILN_LISTEN/ and paste, for example, git://127.0.0.1:$git_port/python-requirements" >&2
"$kiln" serve
