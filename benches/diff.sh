#!/usr/bin/env bash
# Benchmark (issue 13): `kiln diff` of two images in a registry on loopback (CNCF Distribution,
# which has no referrers API: kiln reads the referrers tag index, then the record), against the
# floor of the same reads made by one Python process (the two records' tag indexes and blobs).
# Two commits of the python-requirements example are pushed (the second changes one pin), then
# ROUNDS runs of each, in the same script.
# Usage: bash benches/diff.sh [ROUNDS]   (needs the engine and the base image)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-20}"
export KILN_NETWORK=host
export SSL_CERT_FILE="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
cargo build --quiet --release --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
source benches/common.sh
bench_work diff
start_registry
sleep 1
prefix="127.0.0.1:$reg_port/bench-diff-"
repo="$work/repo"
cp -r examples/repos/python-requirements "$repo"
git -C "$repo" init -q && git -C "$repo" add -A && git -C "$repo" -c user.name=b -c user.email=b@b commit -qm one
a=$("$kiln" build --push --image-prefix "$prefix" "file://$repo" | tail -n1)
sed -i 's/six==1.16.0/six==1.17.0/' "$repo/requirements.txt"
git -C "$repo" -c user.name=b -c user.email=b@b commit -qam two
b=$("$kiln" build --push --image-prefix "$prefix" "file://$repo" | tail -n1)
"$kiln" diff "$a" "$b" --from registry

# The floor: the reads kiln must make for each image (its manifest, its referrers tag index, the
# record's manifest and blob), made by one Python process over one keep-alive connection and timed
# inside it (the interpreter's start is not counted).
cat > "$work/floor.py" <<'PY'
import http.client, json, sys, time
port, images = int(sys.argv[1]), sys.argv[2:]
c = http.client.HTTPConnection("127.0.0.1", port)
def get(path, accept, head=False):
    c.request("HEAD" if head else "GET", path, headers={"Accept": accept})
    r = c.getresponse(); body = r.read()
    assert r.status == 200, (path, r.status)
    return r, body
t0 = time.perf_counter()
for image in images:
    name, tag = image.split("/", 1)[1].rsplit(":", 1)
    r, _ = get(f"/v2/{name}/manifests/{tag}", "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json", head=True)
    digest = r.getheader("Docker-Content-Digest")
    _, index = get(f"/v2/{name}/manifests/{digest.replace(':', '-')}", "application/vnd.oci.image.index.v1+json")
    record = [m["digest"] for m in json.loads(index)["manifests"] if m.get("artifactType") == "application/vnd.kiln.contents.v1+json"][0]
    _, manifest = get(f"/v2/{name}/manifests/{record}", "application/vnd.oci.image.manifest.v1+json")
    get(f"/v2/{name}/blobs/{json.loads(manifest)['layers'][0]['digest']}", "*/*")
print(round((time.perf_counter() - t0) * 1000, 1))
PY
ms() { python3 -c "print(round(($2 - $1) / 1e6, 1))"; }
printf 'round\tkiln_diff_ms\tfloor_ms\n' > "$work/rounds.tsv"
for round in $(seq 1 "$rounds"); do
    t0=$(date +%s%N); "$kiln" diff "$a" "$b" --from registry --json > /dev/null; t1=$(date +%s%N)
    floor_ms=$(python3 "$work/floor.py" "$reg_port" "$a" "$b")
    printf '%s\t%s\t%s\n' "$round" "$(ms "$t0" "$t1")" "$floor_ms" >> "$work/rounds.tsv"
done
python3 - "$work/rounds.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
k = sorted(float(r["kiln_diff_ms"]) for r in rows)
f = sorted(float(r["floor_ms"]) for r in rows)
p = lambda xs, q: xs[min(len(xs) - 1, int(q * len(xs)))]
print(f"kiln diff (two images, registry on loopback): p50 {p(k, .5):.1f} ms, p90 {p(k, .9):.1f} ms")
print(f"floor (the same reads from one process, one connection): p50 {p(f, .5):.1f} ms")
print(f"ratio kiln/floor at p50: {p(k, .5) / p(f, .5):.2f}")
PY
docker images --format '{{.Repository}}:{{.Tag}}' | grep "^127.0.0.1:$reg_port/" | xargs -r docker image rm -f > /dev/null
