#!/usr/bin/env bash
# Benchmarks of image builds on the local engine (issue 3), all in one run:
#  1. cold build of a requirements.txt example (jupyterlab + numpy + pandas + matplotlib), installed
#     with uv (kiln's Dockerfile) and with pip (the same Dockerfile with `uv pip install` replaced by
#     `pip install`), every build cache and cache mount pruned before each build;
#  2. a code-only change (one file edited), warm cache: seconds, and which steps ran again;
#  3. the size of the default environment image (no environment files).
# Usage: bash benches/build.sh   (needs the engine and the base image: see README). It prunes the
# engine's build cache, so run it on a machine whose cache you can spare.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOCKER_BUILDKIT=1 KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
docker_cli=/usr/bin/docker   # Debian's CLI: it builds with BuildKit without buildx
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-target}/release/kiln"
work="$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
logs="${KILN_BENCH_LOGS:-$work}"
mkdir -p "$logs"

repo="$work/repo"
mkdir -p "$repo"
printf 'numpy==2.3.5\npandas==2.3.3\nmatplotlib==3.10.7\n' > "$repo/requirements.txt"
printf 'import pandas\nprint(pandas.__version__)\n' > "$repo/analysis.py"

context() { # repo dir -> extracted context dir
    rm -rf "$2" && mkdir -p "$2"
    "$kiln" context "$1" -o "$work/ctx.tar" 2>/dev/null
    tar -C "$2" -xf "$work/ctx.tar"
}
seconds() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
build() { # dir tag log -> seconds
    local start end
    start=$(date +%s.%N)
    "$docker_cli" build --network host --progress plain -t "$2" "$1" > "$3" 2>&1
    end=$(date +%s.%N)
    seconds "$start" "$end"
}
step_time() { # log pattern -> seconds of the first step whose command matches
    python3 - "$1" "$2" <<'PY'
import re, sys
log, pattern = open(sys.argv[1]).read(), sys.argv[2]
steps = {}
for m in re.finditer(r"^#(\d+) \[[^\]]*\] (.*)$", log, re.M):
    steps.setdefault(m.group(1), m.group(2))
for num, cmd in steps.items():
    if pattern in cmd:
        done = re.search(rf"^#{num} DONE ([0-9.]+)s", log, re.M)
        print(done.group(1) if done else "?")
        break
else:
    print("?")
PY
}

echo "== 1. cold build, uv vs pip"
context "$repo" "$work/uv"
cp -r "$work/uv" "$work/pip"
sed -i -e 's#uv pip install --python /srv/venv/bin/python#/srv/venv/bin/pip install --disable-pip-version-check#' \
       -e 's#UV_CACHE_DIR=/var/cache/kiln/uv#PIP_CACHE_DIR=/var/cache/kiln/uv#' "$work/pip/Dockerfile"
rounds="${KILN_BENCH_ROUNDS:-2}"
: > "$work/cold.tsv"
for round in $(seq 1 "$rounds"); do
    for variant in uv pip; do
        "$docker_cli" builder prune --all --force > /dev/null
        log="$logs/$variant-$round.log"
        t=$(build "$work/$variant" "kiln-bench/$variant:cold" "$log")
        jupyter=$(step_time "$log" "jupyterlab==")
        reqs=$(step_time "$log" "-r /home/jovyan/requirements.txt")
        printf '%s\t%s\t%s\t%s\n' "$variant" "$t" "$jupyter" "$reqs" >> "$work/cold.tsv"
        echo "round $round, $variant: whole build ${t}s, Jupyter step ${jupyter}s, requirements step ${reqs}s"
    done
done
python3 - "$work/cold.tsv" <<'PY'
import sys, statistics
rows = [l.split("\t") for l in open(sys.argv[1]).read().split("\n") if l]
mean = {v: [statistics.mean(float(r[i]) for r in rows if r[0] == v) for i in (1, 2, 3)] for v in ("uv", "pip")}
print(f"means over {len(rows) // 2} rounds")
print("| installer | whole build (s) | Jupyter step (s) | requirements step (s) |")
print("|---|---:|---:|---:|")
for v in ("uv", "pip"):
    print(f"| {v} | {mean[v][0]:.1f} | {mean[v][1]:.1f} | {mean[v][2]:.1f} |")
print("| pip / uv | " + " | ".join(f"{p / u:.2f}x" for p, u in zip(mean["pip"], mean["uv"])) + " |")
PY

echo "== 2. code-only change, warm cache"
build "$work/uv" kiln-bench/uv:warm "$work/warm.log" > /dev/null
echo "# edited" >> "$repo/analysis.py"
context "$repo" "$work/uv2"
t=$(build "$work/uv2" kiln-bench/uv:code-only "$work/code-only.log")
ran=$(python3 - "$work/code-only.log" <<'PY'
import re, sys
log = open(sys.argv[1]).read()
steps = dict(re.findall(r"^#(\d+) (\[stage-0[^\]]*\] .*)$", log, re.M))
cached = set(re.findall(r"^#(\d+) CACHED", log, re.M))
print("; ".join(cmd[:60] for n, cmd in steps.items() if n not in cached))
PY
)
echo "code-only rebuild: ${t}s; steps that ran again: $ran"

echo "== 3. default environment image size"
"$kiln" build examples/repos/python-default --image-name kiln-bench/default:size > /dev/null 2>&1
size=$("$docker_cli" image inspect --format '{{.Size}}' kiln-bench/default:size)
base=$("$docker_cli" image inspect --format '{{.Size}}' kiln/base:bookworm)
echo "default environment image: $((size / 1000000)) MB (base image $((base / 1000000)) MB)"
"$docker_cli" image rm kiln-bench/uv:cold kiln-bench/pip:cold kiln-bench/uv:warm kiln-bench/uv:code-only kiln-bench/default:size > /dev/null
