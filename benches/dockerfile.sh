#!/usr/bin/env bash
# Benchmark: the whole process `kiln dockerfile PATH`, against repo2docker's `--no-build` (which prints
# its Dockerfile) on the same repositories, in the same run.
#   (a) examples/repos/binder-dir: a binder folder with apt.txt, requirements.txt and postBuild
#   (b) the same repository plus 10,000 generated files
# Usage: bash benches/dockerfile.sh [RUNS]   (needs hyperfine; installs repo2docker in a venv)
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-30}"
command -v hyperfine >/dev/null || { echo "benches/dockerfile.sh: needs hyperfine (apt-get install hyperfine)" >&2; exit 1; }
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-target}/release/kiln"

work="$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
venv="${KILN_BENCH_VENV:-$HOME/.cache/kiln-bench/r2d-venv}"
if [ ! -x "$venv/bin/repo2docker" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet jupyter-repo2docker==2026.4.0
fi

small="$PWD/examples/repos/binder-dir"
large="$work/large"
cp -r "$small" "$large"
for d in $(seq -w 0 99); do
    mkdir -p "$large/data/$d"
    (cd "$large/data/$d" && seq -w 0 99 | sed 's/$/.csv/' | xargs touch)
done
echo "large repository: $(find "$large" -type f | wc -l) files"

hyperfine --warmup 3 --runs "$runs" --style basic --export-markdown "$work/results.md" \
    -n "kiln (a) binder-dir" "$kiln dockerfile $small" \
    -n "kiln (b) 10,000 files" "$kiln dockerfile $large" \
    -n "repo2docker (a) binder-dir" "$venv/bin/repo2docker --no-build $small" \
    -n "repo2docker (b) 10,000 files" "$venv/bin/repo2docker --no-build $large"
cat "$work/results.md"
