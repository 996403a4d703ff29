#!/usr/bin/env bash
# Benchmark (issue 17): a new version of an archived record to a pushed image, against a new commit
# of a git repository with the same content, same run. The environment image is in the registry,
# so both are assembled natively (no engine build); the difference is the fetch.
#   record : kiln build --push of a Zenodo-style record (20 files, 50 MB) from the loopback DOI
#            resolver and InvenioRDM API (tests/services/records.py, standing in for doi.org and
#            zenodo.org): resolve, list, download and check 20 files, assemble, push
#   git    : kiln build --push of a git daemon's repository with the same 20 files: resolve the
#            ref, fetch the commit, assemble, push
#   floor  : downloading the 20 files with curl, then tar, gzip -6 and sha256 of them (what any
#            fetcher and pusher must at least do)
# Each round is a new record version (a new id) and a new commit, with one small file changed.
# Usage: bash benches/records.sh [ROUNDS]   (needs the engine, the base image, docker-registry)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
cargo build --release --quiet --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
source benches/common.sh
bench_work records
start_registry
git_port=$(port)
rec_port=$(port)
mkdir -p "$work/git/bench" "$work/site/files"
"$(git --exec-path)/git-daemon" --reuseaddr --export-all --listen=127.0.0.1 --port="$git_port" \
    --base-path="$work/git" "$work/git" > /dev/null 2>&1 &
pids+=($!)
python3 tests/services/records.py "$rec_port" "$work/site" &
pids+=($!)
repo="$work/git/bench"
(
    cd "$repo"
    git init -q
    printf 'six==1.16.0\n' > requirements.txt
    for i in $(seq -w 1 19); do head -c 2750000 /dev/urandom > "data$i.bin"; done
    echo "round 0" > round.txt
    git add -A && git -c user.name=b -c user.email=b@b commit -qm initial
)
echo "repository: $(du -sb --exclude=.git "$repo" | cut -f1) bytes in $(ls "$repo" | wc -l) files"
export KILN_DOI_RESOLVER="http://127.0.0.1:$rec_port/" KILN_INVENIO_HOSTS="127.0.0.1:$rec_port"
# The record site: record N holds the repository's files as they are now.
publish() { # ID
    mkdir -p "$work/site/files/$1"
    cp "$repo"/* "$work/site/files/$1/"
    python3 - "$work/site" "$1" "$rec_port" <<'PY'
import json, os, sys
site_dir, rid, port = sys.argv[1], sys.argv[2], sys.argv[3]
path = os.path.join(site_dir, "site.json")
site = json.load(open(path)) if os.path.exists(path) else {"dois": {}, "records": {}}
names = sorted(os.listdir(os.path.join(site_dir, "files", rid)))
site["dois"][f"10.5281/zenodo.{rid}"] = f"http://127.0.0.1:{port}/records/{rid}"
site["records"][rid] = {"files": [{"key": n, "path": f"files/{rid}/{n}"} for n in names]}
json.dump(site, open(path + ".new", "w"))
os.replace(path + ".new", path)
PY
}
commit() { ( cd "$repo" && echo "round $1" > round.txt && git add -A && git -c user.name=b -c user.email=b@b commit -qm "$1" ); }
timed() { local s e; s=$(date +%s.%N); "$@" > "$work/last.log" 2>&1 || { cat "$work/last.log" >&2; exit 1; }; e=$(date +%s.%N); python3 -c "print(f'{$e - $s:.2f}')"; }
url="git://127.0.0.1:$git_port/bench"
prefix="127.0.0.1:$reg_port/bench-"
publish 1000
sleep 1
echo "initial pushes (engine build of the environment)"
timed "$kiln" build --push --image-prefix "$prefix" "$url" > /dev/null
timed "$kiln" build --push --image-prefix "$prefix" "zenodo:10.5281/zenodo.1000" > /dev/null
: > "$work/times.tsv"
for r in $(seq 1 "$rounds"); do
    commit "$r"
    publish "$((1000 + r))"
    t=$(timed "$kiln" build --push --image-prefix "$prefix" "$url")
    grep -q "without a container" "$work/last.log" || { echo "git: native path not taken" >&2; cat "$work/last.log" >&2; exit 1; }
    printf 'git\t%s\n' "$t" >> "$work/times.tsv"
    t=$(timed "$kiln" build --push --image-prefix "$prefix" "zenodo:10.5281/zenodo.$((1000 + r))")
    grep -q "without a container" "$work/last.log" || { echo "record: native path not taken" >&2; cat "$work/last.log" >&2; exit 1; }
    printf 'record\t%s\n' "$t" >> "$work/times.tsv"
    rid=$((1000 + r))
    t=$(timed sh -c "mkdir -p '$work/floor' && cd '$work/floor' && for f in \$(ls '$work/site/files/$rid'); do curl -sf -o \"\$f\" 'http://127.0.0.1:$rec_port/api/records/$rid/files/'\"\$f\"'/content'; done && tar --sort=name --owner=1000 --group=1000 --mtime=@0 -cf - . | gzip -6 | sha256sum")
    rm -rf "$work/floor"
    printf 'floor\t%s\n' "$t" >> "$work/times.tsv"
    echo "round $r: $(tail -3 "$work/times.tsv" | tr '\n\t' ' :')"
done
python3 - "$work/times.tsv" <<'PY'
import statistics, sys
rows = [l.split("\t") for l in open(sys.argv[1]).read().splitlines() if l]
med = {k: statistics.median(float(v) for kk, v in rows if kk == k) for k in ("git", "record", "floor")}
n = sum(1 for k, _ in rows if k == "git")
print(f"\nmedians of {n} rounds (seconds)\n")
print("| path | seconds | / git | / floor |")
print("|---|---:|---:|---:|")
for k in ("record", "git", "floor"):
    print(f"| {k} | {med[k]:.2f} | {med[k] / med['git']:.2f}x | {med[k] / med['floor']:.2f}x |")
PY
