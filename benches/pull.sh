#!/usr/bin/env bash
# A node that has never seen an image (issue 18, item 3): cold pull + start on a fresh engine (a
# second dockerd with its own data root, stopped by its PID at the end), from a registry on
# loopback, for the default image as kiln builds it now and as it was before (any image given as
# BEFORE, such as an earlier build still in the main engine), in the same run; then what a node
# that has a commit's image still pulls for the next, code-only commit (kiln pushes it natively).
# Start = `docker run` to JupyterLab answering /api/status with its token.
# Usage: bash benches/pull.sh [BEFORE_IMAGE] [ROUNDS]
#        (needs the engine, the base image, docker-registry; ROUNDS default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
bench_work pull
before="${1:-}"
rounds="${2:-3}"
export KILN_NETWORK=host
kiln="${KILN_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln}"
[ -x "$kiln" ] || cargo build --quiet --bin kiln
start_registry
sleep 1
reg="127.0.0.1:$reg_port"

# The images, in the registry.
git_port=$(port)
mkdir -p "$work/git/default"
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" \
    --base-path="$work/git" "$work/git" >/dev/null 2>&1 &
pids+=($!)
repo="$work/git/default"
cp -r examples/repos/python-default/. "$repo/"
( cd "$repo" && git init -q && git add -A && git -c user.name=b -c user.email=b@b commit -qm one )
url="git://127.0.0.1:$git_port/default"
"$kiln" build --push --image-prefix "$reg/bench-" "$url" >"$work/build.log" 2>&1 || { tail "$work/build.log"; exit 1; }
after_image=$(grep -o "$reg/bench-[^ ]*:[0-9a-f]\{40\}" "$work/build.log" | tail -1)
( cd "$repo" && echo "# a code-only change" >> README.md && git -c user.name=b -c user.email=b@b commit -qam two )
"$kiln" build --push --image-prefix "$reg/bench-" "$url" >"$work/build2.log" 2>&1 || { tail "$work/build2.log"; exit 1; }
next_image=$(grep -o "$reg/bench-[^ ]*:[0-9a-f]\{40\}" "$work/build2.log" | tail -1)
grep -q "without a container" "$work/build2.log" || echo "note: the second commit was not assembled natively"
if [ -n "$before" ]; then
    before_image="$reg/bench-before:1"
    docker tag "$before" "$before_image"
    docker push -q "$before_image" >/dev/null
    docker rmi "$before_image" >/dev/null
fi

ms() { echo $(( ($2 - $1) / 1000000 )); }
pull_start() { # image -> "pull_ms start_ms" on a fresh engine
    fresh_engine
    local t0 t1 start
    t0=$(date +%s%N)
    docker -H "$dh" pull -q "$1" >/dev/null
    t1=$(date +%s%N)
    start=$(jupyter_start_ms "$1" "$dh")
    stop_engine
    echo "$(ms "$t0" "$t1") $start"
}
manifest_layers() { # image in the registry -> "digest size", a line per layer
    local path=${1#"$reg"/}
    curl -s -H 'Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json' \
        "http://$reg/v2/${path%:*}/manifests/${path##*:}" \
        | python3 -c 'import json, sys; [print(l["digest"], l["size"]) for l in json.load(sys.stdin)["layers"]]'
}
size() { manifest_layers "$1" | awk '{ s += $2 } END { print s }'; } # image -> compressed bytes

: >"$work/times"
for r in $(seq "$rounds"); do
    [ -z "$before" ] || echo "before $(pull_start "$before_image")" >>"$work/times"
    echo "after $(pull_start "$after_image")" >>"$work/times"
done
# What a node with the first commit's image pulls for the second.
fresh_engine
docker -H "$dh" pull -q "$after_image" >/dev/null
t0=$(date +%s%N)
docker -H "$dh" pull "$next_image" >"$work/next.log"
t1=$(date +%s%N)
stop_engine
manifest_layers "$after_image" >"$work/layers-one"
manifest_layers "$next_image" >"$work/layers-two"
new_bytes=$(grep -vxF -f "$work/layers-one" "$work/layers-two" \
    | awk -v all="$(wc -l <"$work/layers-two")" '{ n++; s += $2 } END { printf "%d of %d layers, %d bytes", n, all, s }')

python3 - "$work/times" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
for kind in ("before", "after"):
    r = [(int(p), int(s)) for k, p, s in rows if k == kind]
    if r:
        pull = statistics.median(p for p, _ in r); start = statistics.median(s for _, s in r)
        print(f"{kind}: pull p50 {pull:.0f} ms, start p50 {start:.0f} ms, pull + start {pull + start:.0f} ms ({len(r)} rounds)")
PY
[ -z "$before" ] || echo "sizes in the registry (compressed): before $(size "$before_image") bytes, after $(size "$after_image") bytes"
echo "the next, code-only commit on a node that has the first: $new_bytes new, pulled in $(ms "$t0" "$t1") ms"
grep -c "Already exists" "$work/next.log" | sed 's/^/layers the node had already: /'
