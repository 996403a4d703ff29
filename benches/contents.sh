#!/usr/bin/env bash
# Benchmark (issue 13): the cost of recording what an image holds, in one run.
#   For each image (the default Python image: python-default; the conda fixture: conda-fixture from
#   the fixture channel on loopback), ROUNDS builds of a fresh copy whose environment is new (a
#   comment in its environment file changes the key, so the environment stage is built again; the
#   base layers come from BuildKit's cache):
#     build     : the whole `kiln build`, wall clock
#     recording : the collection run in the image plus the COPY that puts the record in it, as the
#                 build's own "Recorded what the image holds ... in S s" event says
#     lock      : the Python lock with hashes made at build time (uv pip compile of what was
#                 installed), as the step's own "kiln: locked ... in S s" line says (0 for conda)
#   and the bytes the record adds to the image (the last layer, uncompressed, and gzip -6 of it).
# Usage: bash benches/contents.sh [ROUNDS]   (needs the engine and the base image)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
channel_dir="${KILN_TEST_CONDA_CHANNEL:-/var/cache/kiln-conda-fixture/channel}"
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
# A debug build: the time goes to the engine and the containers, not to kiln's own code.
cargo build --quiet --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/debug/kiln"
source benches/common.sh
bench_work contents
ch_port=$(port)
python3 tests/services/conda-channel.py "$ch_port" "$channel_dir" & pids+=($!)
sleep 1
export KILN_CONDA_MIRRORS="conda-forge=http://127.0.0.1:$ch_port/" KILN_CONDA_CACHE="$work/conda-cache"

printf 'image\tround\tbuild_s\trecording_s\tlock_s\tshare\n' > "$work/rounds.tsv"
for example in python-default conda-fixture; do
    env_file=requirements.txt
    [ "$example" = conda-fixture ] && env_file=environment.yml
    for round in $(seq 1 "$rounds"); do
        dir="$work/$example-$round"
        cp -r "examples/repos/$example" "$dir"
        echo "# bench $(date +%s%N)" >> "$dir/$env_file"
        t0=$(date +%s%N)
        "$kiln" build --json-logs "$dir" > "$work/events.jsonl"
        t1=$(date +%s%N)
        rec=$(python3 -c 'import json,re,sys
for line in open(sys.argv[1]):
    m = re.search(r"Recorded what the image holds: .* in ([0-9.]+) s", json.loads(line)["message"])
    if m: print(m.group(1))' "$work/events.jsonl")
        lock=$(python3 -c 'import json,re,sys
found = "0"
for line in open(sys.argv[1]):
    m = re.search(r"kiln: locked [0-9]+ Python distributions .* in ([0-9.]+) s", json.loads(line)["message"])
    if m: found = m.group(1)
print(found)' "$work/events.jsonl")
        image=$(tail -n1 "$work/events.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["imageName"])')
        build=$(python3 -c "print(($t1 - $t0) / 1e9)")
        printf '%s\t%s\t%.2f\t%s\t%s\t%.1f%%\n' "$example" "$round" "$build" "$rec" "$lock" \
            "$(python3 -c "print(100 * ($rec + $lock) / $build)")" >> "$work/rounds.tsv"
        [ "$round" = "$rounds" ] || docker image rm -f "$image" > /dev/null
        last_image=$image
    done
    # The record's layer: its files, as the image has them.
    docker run --rm --network none --entrypoint /bin/sh "$last_image" -c \
        'tar -C / -cf - opt/kiln/contents.json opt/kiln/sbom.cdx.json' > "$work/layer.tar"
    raw=$(stat -c %s "$work/layer.tar")
    gz=$(gzip -6 -c "$work/layer.tar" | wc -c)
    printf '%s: the record adds %s bytes to the image (%s gzip -6)\n' "$example" "$raw" "$gz" >> "$work/sizes.txt"
    docker image rm -f "$last_image" > /dev/null
done
column -t -s $'\t' "$work/rounds.tsv"
cat "$work/sizes.txt"
python3 - "$work/rounds.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for image in sorted({r["image"] for r in rows}):
    mine = [r for r in rows if r["image"] == image]
    b = statistics.median(float(r["build_s"]) for r in mine)
    c = statistics.median(float(r["recording_s"]) for r in mine)
    l = statistics.median(float(r["lock_s"]) for r in mine)
    print(f"{image}: median build {b:.2f} s, recording {c:.2f} s + lock {l:.2f} s = {100 * (c + l) / b:.1f}% of the build")
PY
