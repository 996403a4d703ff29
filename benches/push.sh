#!/usr/bin/env bash
# Benchmark (issue 4): a code-only commit to a pushed image, same repository, same run.
#   native  : kiln build --push, the environment image is in the registry -> native assembly
#   warm    : kiln build --push --no-native on an engine with a warm cache (engine build + push)
#   cold    : the same on an engine whose build cache was pruned (it rebuilds the environment)
#   floor   : tar, gzip -6 and sha256 of the repository's bytes (what any pusher must at least do)
# The repository is about 8.4 MB (4 MB random bytes, 4.4 MB text) with requirements.txt
# numpy, pandas, matplotlib (JupyterLab comes with kiln's environment). A registry (CNCF Distribution)
# and a git daemon run on loopback for the run.
# Usage: bash benches/push.sh [ROUNDS]   (prunes the engine's build cache; needs engine + base image)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
cargo build --release --quiet
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
source benches/common.sh
bench_work push
start_registry
git_port=$(port)
mkdir -p "$work/git/bench"
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" --base-path="$work/git" "$work/git" > /dev/null 2>&1 & pids+=($!)
sleep 1
repo="$work/git/bench"
( cd "$repo"
  git init -q
  printf 'numpy==2.3.5\npandas==2.3.3\nmatplotlib==3.10.7\n' > requirements.txt
  mkdir -p data src
  head -c 4000000 /dev/urandom > data/random.bin
  python3 -c "import random; random.seed(1); open('data/text.csv','w').write('\n'.join(','.join(str(random.random()) for _ in range(8)) for _ in range(27000)))"
  for i in $(seq 1 40); do printf 'def f%s(x):\n    return x * %s\n' "$i" "$i" > "src/m$i.py"; done
  git add -A && git -c user.name=b -c user.email=b@b commit -qm initial )
echo "repository: $(du -sb --exclude=.git "$repo" | cut -f1) bytes"
url="git://127.0.0.1:$git_port/bench"
prefix="127.0.0.1:$reg_port/bench-"
commit() { ( cd "$repo" && echo "# change $1" >> src/m1.py && git add -A && git -c user.name=b -c user.email=b@b commit -qm "$1" ); }
timed() { local s e; s=$(date +%s.%N); "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log"; exit 1; }; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.2f}')"; }

echo "initial push (engine build of the environment and the image)"
timed "$kiln" build --push --image-prefix "$prefix" "$url" > /dev/null
: > "$work/times.tsv"
for r in $(seq 1 "$rounds"); do
    commit "native-$r"; t=$(timed "$kiln" build --push --image-prefix "$prefix" "$url")
    grep -q "without a container" "$work/last.log" || { echo "native path not taken"; cat "$work/last.log"; exit 1; }
    printf 'native\t%s\n' "$t" >> "$work/times.tsv"
    commit "warm-$r"; t=$(timed "$kiln" build --push --no-native --image-prefix "$prefix" "$url")
    printf 'warm\t%s\n' "$t" >> "$work/times.tsv"
    commit "cold-$r"; /usr/bin/docker builder prune --all --force > /dev/null
    t=$(timed "$kiln" build --push --no-native --image-prefix "$prefix" "$url")
    printf 'cold\t%s\n' "$t" >> "$work/times.tsv"
    t=$(timed sh -c "tar -C '$repo' --exclude=.git --sort=name --owner=1000 --group=1000 --mtime=@0 -cf - . | gzip -6 | sha256sum")
    printf 'floor\t%s\n' "$t" >> "$work/times.tsv"
    echo "round $r: $(tail -4 "$work/times.tsv" | tr '\n\t' ' :')"
done
python3 - "$work/times.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
med = {k: statistics.median(float(v) for kk, v in rows if kk == k) for k in ("native", "warm", "cold", "floor")}
n = sum(1 for k, _ in rows if k == "native")
print(f"medians over {n} rounds (seconds)")
print("| path | code-only commit to pushed image (s) | ratio |")
print("|---|---:|---:|")
print(f"| engine build + push, cold engine (cache pruned) | {med['cold']:.2f} | {med['cold'] / med['native']:.1f}x native |")
print(f"| engine build + push, warm engine | {med['warm']:.2f} | {med['warm'] / med['native']:.1f}x native |")
print(f"| kiln native assembly | {med['native']:.2f} | 1.0 |")
print(f"| floor: tar + gzip + sha256 of the repository | {med['floor']:.2f} | native = {med['native'] / med['floor']:.1f}x floor |")
PY
