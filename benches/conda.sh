#!/usr/bin/env bash
# Benchmark (issue 7): a conda environment, from its specs to layers pushed in a registry, same run.
#   native : kiln's conda crate (benches/conda.rs, release build): solve with a cold and a warm
#            repodata cache, install + pack with a cold and a warm package cache, gzip, and push onto a
#            base image in the registry. No engine.
#   engine : the same lock installed inside an engine build step with py-rattler 0.28 (repo2docker
#            does this with micromamba), warm package cache (a BuildKit cache mount), then docker push.
# Environment: the conda-fixture example (python 3.11 and its libraries, pip, kiln-greet, kiln-hello:
# 9 packages) from the fixture channel (tests/conda/make-channel.sh), served on loopback.
# Peak memory: /usr/bin/time -v of the native benchmark process, and of py-rattler in the build step.
# Usage: bash benches/conda.sh [ROUNDS]   (needs the engine, the base image, docker-registry)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-5}"
channel_dir="${KILN_TEST_CONDA_CHANNEL:-/var/cache/kiln-conda-fixture/channel}"
[ -f "$channel_dir/noarch/repodata.json" ] || {
    echo "no fixture conda channel at $channel_dir: bash tests/conda/make-channel.sh $channel_dir" >&2
    exit 1
}
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
export DOCKER_BUILDKIT=1
docker=/usr/bin/docker
cargo build --release --quiet --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
bench=$(cargo bench --bench conda --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "conda" and m.get("executable"):
        print(m["executable"])')
source benches/common.sh
bench_work conda
start_registry
ch_port=$(port)
python3 tests/services/conda-channel.py "$ch_port" "$channel_dir" & pids+=($!)
sleep 1
channel="http://127.0.0.1:$ch_port/"
registry="127.0.0.1:$reg_port"
base="$registry/bench-base:1"
$docker tag kiln/base:bookworm "$base"
$docker push "$base" > /dev/null

# The lock, from kiln plan (solved against the same channel).
mkdir -p "$work/ctx"
KILN_CONDA_MIRRORS="conda-forge=$channel" KILN_CONDA_CACHE="$work/plan-cache" \
    "$kiln" plan --json examples/repos/conda-fixture |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["build"]["environment"]["conda"]["lock"], end="")' > "$work/ctx/lock.txt"
echo "lock: $(grep -c '#sha256:' "$work/ctx/lock.txt") packages"

echo "native: $rounds rounds"
KILN_BENCH_CHANNEL="$channel" KILN_BENCH_BASE="$base" KILN_BENCH_TARGET="$registry/bench-" \
KILN_BENCH_ROUNDS="$rounds" /usr/bin/time -v "$bench" > "$work/native.tsv" 2> "$work/native.time"

echo "engine: a warm-up build, then $rounds rounds"
cp benches/conda_engine_install.py "$work/ctx/"
cp "$SSL_CERT_FILE" "$work/ctx/ca.pem"
cat > "$work/ctx/Dockerfile" <<DOCKERFILE
FROM $base
USER root
RUN apt-get update -q && apt-get install -y -q --no-install-recommends python3 python3-venv time && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,source=ca.pem,target=/run/ca.pem export SSL_CERT_FILE=/run/ca.pem PIP_CERT=/run/ca.pem \
    && python3 -m venv /opt/rattler && /opt/rattler/bin/pip install -q py-rattler==0.28.0
RUN install -d -o 1000 -g 1000 /srv/conda /srv/conda/envs
COPY conda_engine_install.py lock.txt /opt/
USER 1000
ARG ROUND
RUN --mount=type=cache,id=kiln-bench-rattler,target=/var/cache/rattler,uid=1000,gid=1000 \
    echo "round \$ROUND" && export HOME=/tmp XDG_CACHE_HOME=/var/cache/rattler/xdg && /usr/bin/time -v /opt/rattler/bin/python /opt/conda_engine_install.py \
    $channel /opt/lock.txt /srv/conda/envs/notebook /var/cache/rattler
DOCKERFILE
engine_round() {
    local r=$1 s e
    s=$(date +%s.%N)
    $docker build --network host --progress plain --build-arg "ROUND=$r-$$" -t "$registry/bench-engine-$r:1" "$work/ctx" > "$work/engine-$r.log" 2>&1 ||
        { cat "$work/engine-$r.log"; exit 1; }
    $docker push "$registry/bench-engine-$r:1" > /dev/null
    e=$(date +%s.%N)
    python3 -c "print(f'total-warm\t$r\t{$e - $s:.4f}')" >> "$work/engine.tsv"
    grep -o 'Maximum resident set size (kbytes): [0-9]*' "$work/engine-$r.log" | tail -1 | grep -o '[0-9]*$' >> "$work/engine.rss"
    grep -o 'py-rattler: .*' "$work/engine-$r.log" | tail -1 >> "$work/engine.steps"
}
: > "$work/engine.tsv"; : > "$work/engine.rss"; : > "$work/engine.steps"
engine_round 0
: > "$work/engine.tsv"; : > "$work/engine.rss"; : > "$work/engine.steps"
for r in $(seq 1 "$rounds"); do engine_round "$r"; done

python3 - "$work" <<'PY'
import statistics, sys
work = sys.argv[1]
def load(path):
    out = {}
    for line in open(path):
        phase, _, seconds = line.split("\t")
        out.setdefault(phase, []).append(float(seconds))
    return out
native, engine = load(f"{work}/native.tsv"), load(f"{work}/engine.tsv")
rss = [l for l in open(f"{work}/native.time") if "Maximum resident" in l][0].split(":")[1].strip()
engine_rss = [int(x) for x in open(f"{work}/engine.rss").read().split()]
print("| measure | median (s) | min (s) | max (s) |")
print("|---|---:|---:|---:|")
for name, data in [("native: " + k, v) for k, v in native.items()] + [("engine (py-rattler in a build step) + docker push", engine["total-warm"])]:
    print(f"| {name} | {statistics.median(data):.3f} | {min(data):.3f} | {max(data):.3f} |")
for key in ("total-warm", "total-warm-no-blob-cache"):
    ratio = statistics.median(engine["total-warm"]) / statistics.median(native[key])
    print(f"\nwarm, specs to pushed layers: engine / native ({key}) = {ratio:.1f}x", end="")
print()
print(f"peak memory: native process {int(rss) / 1024:.0f} MiB; py-rattler in the build step {max(engine_rss) / 1024:.0f} MiB (max over rounds)")
print("py-rattler inside the step:", open(f"{work}/engine.steps").read().strip().splitlines()[-1])
PY
# The images of this run.
for r in $(seq 0 "$rounds"); do $docker image rm "$registry/bench-engine-$r:1" > /dev/null 2>&1 || true; done
$docker image rm "$base" > /dev/null 2>&1 || true
