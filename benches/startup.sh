#!/usr/bin/env bash
# Start-up of a built image (issue 18, item 1): for the default environment (examples/repos/python-default)
# as kiln builds it now, against, in the same run,
#  - the same image with its bytecode deleted (what kiln built before it compiled bytecode: uv
#    compiled none), and
#  - the same environment with rfc3987-syntax installed again (what kiln's Jupyter held before it
#    left it out: the default example with a requirements.txt that asks for it, built by kiln on
#    the same Jupyter layer):
#  - from `docker run` to a JupyterLab that answers /api/status with its token (what kiln run and a
#    local launch wait for), N starts each, alternating;
#  - the import of the Jupyter server (`import jupyter_server.serverapp, jupyterlab`) in a new
#    container;
#  - the image size, and the .py and .pyc files under /srv/venv.
# Usage: bash benches/startup.sh [N]   (default 7; needs the engine and the base image: see README)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
bench_work startup
runs="${1:-7}"
export KILN_NETWORK=host
kiln="${KILN_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln}"
if [ ! -x "$kiln" ]; then
    cargo build --quiet --bin kiln
fi
with=kiln-bench/startup:bytecode
without=kiln-bench/startup:no-bytecode
slow=kiln-bench/startup:rfc3987-syntax
"$kiln" build examples/repos/python-default --image-name "$with" >"$work/build.log" 2>&1 \
    || { tail -20 "$work/build.log"; exit 1; }
mkdir -p "$work/slow"
cp -r examples/repos/python-default/. "$work/slow/"
echo "rfc3987-syntax==1.1.0" >"$work/slow/requirements.txt"
"$kiln" build "$work/slow" --image-name "$slow" >"$work/build-slow.log" 2>&1 \
    || { tail -20 "$work/build-slow.log"; exit 1; }
# The same image without bytecode: one layer that deletes it (a whiteout per file; the files
# are still pulled, which is not measured here).
printf 'FROM %s\nUSER root\nRUN find /srv/venv -name "*.pyc" -delete && find /srv/venv -name __pycache__ -type d -empty -delete\nUSER 1000\n' "$with" \
    | docker build --quiet --network host -t "$without" - >/dev/null
trap 'for i in "$with" "$without" "$slow"; do docker rmi -f "$i" >/dev/null 2>&1 || true; done; rm -rf "$work"' EXIT

start_ms() { jupyter_start_ms "$1"; } # image -> milliseconds from docker run to /api/status 200
import_ms() { # image -> milliseconds of the imports in a new container (docker run included)
    local t0 t1
    t0=$(date +%s%N)
    docker run --rm --network host "$1" python -c 'import jupyter_server.serverapp, jupyterlab' >/dev/null
    t1=$(date +%s%N)
    echo $(((t1 - t0) / 1000000))
}
stats() { # numbers -> "p50 min"
    python3 -c 'import statistics, sys; v = sorted(map(int, sys.argv[1:])); print(f"p50 {statistics.median(v):.0f} ms, min {v[0]} ms")' "$@"
}

declare -a s_with s_without s_slow i_with i_without i_slow
start_ms "$with" >/dev/null # warm the engine's caches once
for _ in $(seq "$runs"); do
    s_without+=("$(start_ms "$without")")
    s_slow+=("$(start_ms "$slow")")
    s_with+=("$(start_ms "$with")")
    i_without+=("$(import_ms "$without")")
    i_slow+=("$(import_ms "$slow")")
    i_with+=("$(import_ms "$with")")
done
files() { docker run --rm "$1" sh -c 'printf "%s .py, %s .pyc" $(find /srv/venv -name "*.py" | wc -l) $(find /srv/venv -name "*.pyc" | wc -l)'; }
size() { docker image inspect -f '{{.Size}}' "$1" | awk '{printf "%.0f MB", $1 / 1e6}'; }
ratio() { python3 -c 'import statistics, sys; a, b = (statistics.median(map(int, x.split())) for x in sys.argv[1:]); print(f"{a / b:.2f}x")' "$1" "$2"; }
echo "runs: $runs each, alternating"
echo "docker run to /api/status 200: now $(stats "${s_with[@]}"); without bytecode $(stats "${s_without[@]}") ($(ratio "${s_without[*]}" "${s_with[*]}")); with rfc3987-syntax $(stats "${s_slow[@]}") ($(ratio "${s_slow[*]}" "${s_with[*]}"))"
echo "import of the Jupyter server in a new container: now $(stats "${i_with[@]}"); without bytecode $(stats "${i_without[@]}") ($(ratio "${i_without[*]}" "${i_with[*]}")); with rfc3987-syntax $(stats "${i_slow[@]}") ($(ratio "${i_slow[*]}" "${i_with[*]}"))"
echo "files: without: $(files "$without"); with: $(files "$with")"
echo "image size: without bytecode $(size "$without") (the deleted files still count in the lower layer); with $(size "$with")"
