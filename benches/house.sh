#!/usr/bin/env bash
# The cost of the code's shape (issue 12): for two commits of kiln, a clean `cargo build
# --workspace` then `cargo test --workspace --no-run`, each with a fresh target folder (crates.io
# downloads come from cargo's cache), wall time and CPU time (user + system), and the largest source
# files (lines). The two are built one after the other on the same machine, so other work on the
# machine affects both; the CPU time is the steadier figure.
# Usage: bash benches/house.sh [BEFORE [AFTER]]   (commits; default: the last commit before the
#        restructure, d8113c7, and HEAD; a BEFORE of - measures AFTER alone, for when the figures
#        of BEFORE are already in BENCHMARKS.md from the same machine)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
before="${1:-d8113c7}"
after="${2:-HEAD}"
bench_work house
export CARGO_TERM_COLOR=never CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

measure() { # label commit
    local dir="$work/$1"
    git worktree add -q --detach "$dir" "$2"
    trap 'git worktree remove --force "$work/before" 2>/dev/null || true; git worktree remove --force "$work/after" 2>/dev/null || true; rm -rf "$work"' EXIT
    local target="$work/target-$1"
    local t0 t1 t2
    t0=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$work/$1.build.cpu" cargo build --quiet --workspace --manifest-path "$dir/Cargo.toml" --target-dir "$target"
    t1=$(date +%s.%N)
    /usr/bin/time -f "%U %S" -o "$work/$1.test.cpu" cargo test --workspace --no-run --manifest-path "$dir/Cargo.toml" --target-dir "$target" 2>"$work/$1.test.log"
    t2=$(date +%s.%N)
    local bcpu tcpu
    bcpu=$(awk '{print $1+$2}' "$work/$1.build.cpu")
    tcpu=$(awk '{print $1+$2}' "$work/$1.test.cpu")
    printf '%-7s %s: build %6.0f s wall %6.0f s cpu; test --no-run %6.0f s wall %6.0f s cpu; total %6.0f s wall %6.0f s cpu\n' \
        "$1" "$(git -C "$dir" rev-parse --short HEAD)" \
        "$(echo "$t1 - $t0" | bc)" "$bcpu" "$(echo "$t2 - $t1" | bc)" "$tcpu" \
        "$(echo "$t2 - $t0" | bc)" "$(echo "$bcpu + $tcpu" | bc)"
    echo "  largest source files (lines):"
    (cd "$dir" && git ls-files '*.rs' | xargs wc -l | grep -v ' total$' | sort -rn | head -5 | sed 's/^/    /')
    echo "  integration test binaries of the root package: $(grep -c 'Executable tests/' "$work/$1.test.log")"
    rm -rf "$target"
}
command -v bc >/dev/null || { echo "needs bc (apt-get install bc)"; exit 1; }
[ "$before" = "-" ] || measure before "$before"
measure after "$after"
