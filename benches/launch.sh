#!/usr/bin/env bash
# A click on a launch link for an image already built (issue 18: "click to a JupyterLab that answers
# /api/status with its token", local launcher): from the HTTP request to `kiln serve`'s
# /build/git/<repo>/HEAD until the session at the `ready` event's URL answers /api/status with its
# token; against, in the same run, `docker run` of the same image until /api/status answers (the
# floor: what any launcher pays for the container and JupyterLab).
# Usage: bash benches/launch.sh [N]   (default 7; needs the engine and the base image: see README)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
bench_work launch
runs="${1:-7}"
export KILN_NETWORK=host
kiln="${KILN_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln}"
[ -x "$kiln" ] || cargo build --quiet --bin kiln

git_port=$(port)
repo="$work/git/default"
mkdir -p "$repo"
cp -r examples/repos/python-default/. "$repo/"
( cd "$repo" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm one )
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" \
    --base-path="$work/git" "$work/git" >/dev/null 2>&1 &
pids+=($!)
url="git://127.0.0.1:$git_port/default"
escaped=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$url")

kiln_port=$(port)
# Host networking on this development machine (no bridge is allowed here): KILN_DEVELOPMENT; the git
# daemon on loopback is allowed by name.
KILN_DEVELOPMENT=1 KILN_ALLOWED_HOSTS="127.0.0.1:$git_port" KILN_LISTEN="127.0.0.1:$kiln_port" KILN_STATE="$work/state.db" KILN_MAX_SESSIONS=$((runs + 2)) \
    KILN_MAX_SESSIONS_PER_REPO=$((runs + 2)) "$kiln" serve >"$work/serve.log" 2>&1 &
serve_pid=$!
pids+=($serve_pid)
until curl -sf -o /dev/null "http://127.0.0.1:$kiln_port/health"; do
    kill -0 "$serve_pid" 2>/dev/null || { tail -5 "$work/serve.log"; exit 1; }
    sleep 0.1
done
# The image, built once (untimed).
curl -sN -H 'Accept: text/event-stream' "http://127.0.0.1:$kiln_port/build/git/$escaped/HEAD?build_only=true" >"$work/build.sse"
image=$(grep -o '"imageName":"[^"]*"' "$work/build.sse" | tail -1 | cut -d'"' -f4 || true)
[ -n "$image" ] || { tail -5 "$work/build.sse"; tail -5 "$work/serve.log"; exit 1; }

click_ms() { # -> ms from the request to /api/status 200 at the ready URL with its token
    local t0 t1 ready session token
    t0=$(date +%s%N)
    ready=$(curl -sN -H 'Accept: text/event-stream' "http://127.0.0.1:$kiln_port/build/git/$escaped/HEAD" \
        | grep -m1 '"phase":"ready"')
    session=$(python3 -c 'import json, sys; e = json.loads(sys.argv[1].split("data: ", 1)[1]); print(e["url"], e["token"])' "$ready")
    token=${session#* }
    until curl -sf -o /dev/null -H "Authorization: token $token" "${session% *}api/status"; do sleep 0.02; done
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
stats() { python3 -c 'import statistics, sys; v = sorted(map(int, sys.argv[1:])); print(f"p50 {statistics.median(v):.0f} ms, min {v[0]} ms, max {v[-1]} ms")' "$@"; }
ratio() { python3 -c 'import statistics, sys; a, b = (statistics.median(map(int, x.split())) for x in sys.argv[1:]); print(f"{a / b:.2f}x")' "$1" "$2"; }

jupyter_start_ms "$image" >/dev/null # warm the engine's caches once
declare -a clicks floor
for _ in $(seq "$runs"); do
    floor+=("$(jupyter_start_ms "$image")")
    clicks+=("$(click_ms)")
done
# Stopping the service stops the sessions it started.
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true
echo "runs: $runs each, alternating; image $image"
echo "click (request to kiln) to /api/status 200: $(stats "${clicks[@]}")"
echo "floor, docker run to /api/status 200: $(stats "${floor[@]}")"
echo "click / floor: $(ratio "${clicks[*]}" "${floor[*]}")"
