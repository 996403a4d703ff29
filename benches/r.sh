#!/usr/bin/env bash
# Benchmark (issue 16): an R repository's packages, kiln against a plain Dockerfile, same run.
#   kiln cold : `kiln build` after install.R changed, with the R package cache emptied (BuildKit's
#               cache mounts pruned; the image's other layers stay cached)
#   kiln warm : `kiln build` after install.R changed again: the packages come from the cache that
#               the repository's earlier build filled (installed as binaries)
#   plain     : `docker build` of a plain Dockerfile (Debian's R and compilers, then
#               `Rscript -e 'install.packages(...)'`) after its install line changed; it has no
#               package cache, so every change downloads and compiles again (the classic builder:
#               this docker CLI has no buildx)
# The repository: examples/repos/r-runtime-dated (runtime.txt r-4.2-2023-01-01; install.R installs
# tinydep, which brings tinypkg, and tinyc, whose C code is made to compile for about as long as a
# real package's: KILN_BENCH_R_HEAVY generated functions, 4000 by default). Packages come from
# tests/services/cran.py on loopback, standing in for CRAN's dated snapshot.
# Usage: bash benches/r.sh [ROUNDS]   (needs the engine and the base image: bash tests/run.sh makes both)
# KILN_BENCH_LOGS=DIR keeps the build logs there.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
heavy="${KILN_BENCH_R_HEAVY:-4000}"
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"

cargo build --quiet --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/debug/kiln"
source benches/common.sh
bench_work r
python3 tests/services/cran.py make "$work/cran" --heavy "$heavy"
cran_port=$(port)
python3 tests/services/cran.py serve "$work/cran" "$cran_port" 2023-01-01 &
pids+=($!)
sleep 1
export KILN_CRAN_URL="http://127.0.0.1:$cran_port/cran/{date}"
snapshot="http://127.0.0.1:$cran_port/cran/2023-01-01"

mkdir -p "$work/repo" "$work/plain"
cp examples/repos/r-runtime-dated/runtime.txt examples/repos/r-runtime-dated/install.R "$work/repo/"
cat > "$work/plain/Dockerfile" <<EOF
FROM kiln/base:bookworm
RUN apt-get update -q && apt-get install -y -q --no-install-recommends r-base-core r-base-dev \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ARG ROUND
RUN echo "round \$ROUND" && Rscript -e 'options(warn = 2); install.packages(c("tinydep", "tinyc"), repos = "$snapshot")'
EOF

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
kiln_build() { # ROUND-NAME
    echo "# $1" >> "$work/repo/install.R"
    local t0
    t0=$(date +%s%N)
    "$kiln" build "$work/repo" --image-name "kiln-bench/r:$1" > "$work/kiln-$1.log" 2>&1 ||
        { tail -20 "$work/kiln-$1.log" >&2; exit 1; }
    ms "$t0"
}
plain_build() { # ROUND-NAME
    local t0
    t0=$(date +%s%N)
    DOCKER_BUILDKIT=0 docker build --network host --build-arg "ROUND=$1" -t "kiln-bench/r-plain:$1" "$work/plain" \
        > "$work/plain-$1.log" 2>&1 || { tail -20 "$work/plain-$1.log" >&2; exit 1; }
    ms "$t0"
}
images=()
echo "warming up (the layers before the R packages, for both)" >&2
kiln_build warmup > /dev/null
plain_build warmup > /dev/null
images+=(kiln-bench/r:warmup kiln-bench/r-plain:warmup)

declare -a cold warm plain
for round in $(seq 1 "$rounds"); do
    docker builder prune -f --filter type=exec.cachemount > /dev/null
    cold+=("$(kiln_build "cold$round")")
    grep -q "installing \*source\* package ‘tinyc’" "$work/kiln-cold$round.log"
    warm+=("$(kiln_build "warm$round")")
    grep -q "installing \*binary\* package ‘tinyc’" "$work/kiln-warm$round.log"
    plain+=("$(plain_build "$round")")
    images+=("kiln-bench/r:cold$round" "kiln-bench/r:warm$round" "kiln-bench/r-plain:$round")
    echo "round $round: kiln cold ${cold[-1]} ms, kiln warm ${warm[-1]} ms, plain ${plain[-1]} ms" >&2
done
docker image rm "${images[@]}" > /dev/null

mean() { python3 -c 'import sys; v=[int(x) for x in sys.argv[1:]]; print(f"{sum(v)/len(v)/1000:.1f}")' "$@"; }
mc=$(mean "${cold[@]}"); mw=$(mean "${warm[@]}"); mp=$(mean "${plain[@]}")
ratio() { python3 -c "print(f'{$1/$2:.2f}x')"; }
echo
echo "R packages (tinydep, tinypkg, tinyc with $heavy generated C functions), $rounds rounds, mean whole-build seconds:"
echo
echo "| build | whole build (s) | plain / this |"
echo "|---|---:|---:|"
echo "| plain Dockerfile, install line changed | $mp | 1.00x |"
echo "| kiln, install.R changed, empty R cache (cold) | $mc | $(ratio "$mp" "$mc") |"
echo "| kiln, install.R changed, the repository's R cache (warm) | $mw | $(ratio "$mp" "$mw") |"
echo
echo "kiln cold / warm: $(ratio "$mc" "$mw")"
[ -z "${KILN_BENCH_LOGS:-}" ] || { mkdir -p "$KILN_BENCH_LOGS" && cp "$work"/*.log "$KILN_BENCH_LOGS"/; }
