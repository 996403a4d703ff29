#!/usr/bin/env bash
# Make sure a Docker engine answers on /var/run/docker.sock: install Debian's docker.io when missing and
# start dockerd the only way this machine allows (no bridge network, no iptables; builds and
# containers use host networking). Safe to run again: it does nothing when the engine answers.
# Usage: bash tests/services/engine.sh
set -euo pipefail
sock="${KILN_DOCKER_SOCKET:-/var/run/docker.sock}"
log_dir="${KILN_SERVICE_LOGS:-/var/log/kiln-services}"
mkdir -p "$log_dir"

engine_answers() {
    [ -S "$sock" ] && curl --silent --fail --max-time 2 --unix-socket "$sock" http://localhost/_ping >/dev/null 2>&1
}

if engine_answers; then
    echo "engine: already running at $sock"
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1; then
    echo "engine: installing docker.io (Debian)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends docker.io >/dev/null
fi
echo "engine: starting dockerd (log: $log_dir/dockerd.log)"
# setsid: the engine outlives this script; it is stopped by PID from $log_dir/dockerd.pid.
setsid dockerd --host "unix://$sock" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
    >"$log_dir/dockerd.log" 2>&1 < /dev/null &
echo $! > "$log_dir/dockerd.pid"
for _ in $(seq 1 60); do
    if engine_answers; then
        echo "engine: ready (pid $(cat "$log_dir/dockerd.pid"))"
        exit 0
    fi
    sleep 0.5
done
echo "engine: dockerd did not answer within 30 s; see $log_dir/dockerd.log" >&2
tail -20 "$log_dir/dockerd.log" >&2
exit 1
