#!/usr/bin/env bash
# Where a cold pull's time goes (issue 18, item 3), for the default image as kiln pushes it (gzip
# layers) to a registry on loopback, in the same run:
#  - pull: `docker pull` on a fresh engine (a second dockerd with its own data root);
#  - download: the compressed layers fetched from the registry with curl, to /dev/null;
#  - decompress: the same layers through `gzip -dc` (one core, as this engine decompresses without
#    unpigz), to /dev/null;
#  - extract: `docker load` of the same image's uncompressed layers (saved from the engine that
#    pulled it) on another fresh engine: the writing of the files, with no network and no
#    decompression;
#  - uncompressed pull: `docker pull` on a fresh engine of the same image pushed with its layers
#    uncompressed (OCI `application/vnd.oci.image.layer.v1.tar`), the lever left on loopback.
# Usage: bash benches/pull_parts.sh [ROUNDS]   (default 3; needs the engine, the base image,
#        docker-registry)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
bench_work pullparts
rounds="${1:-3}"
export KILN_NETWORK=host
kiln="${KILN_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln}"
[ -x "$kiln" ] || cargo build --quiet --bin kiln
start_registry
sleep 1
reg="127.0.0.1:$reg_port"

"$kiln" build --push --image-prefix "$reg/bench-" examples/repos/python-default >"$work/build.log" 2>&1 \
    || { tail "$work/build.log"; exit 1; }
image=$(grep -o "$reg/bench-[^ ]*" "$work/build.log" | tail -1)
path=${image#"$reg"/}
name=${path%:*}
tag=${path##*:}
accept='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
curl -sf -H "Accept: $accept" "http://$reg/v2/$name/manifests/$tag" >"$work/manifest.json"
python3 -c 'import json, sys; [print(l["digest"]) for l in json.load(open(sys.argv[1]))["layers"]]' \
    "$work/manifest.json" >"$work/layers"
mkdir -p "$work/blobs"

# The same image with uncompressed layers, pushed beside it (saved once from a fresh engine).
fresh_engine
docker -H "$dh" pull -q "$image" >/dev/null
docker -H "$dh" save "$image" -o "$work/image.tar"
stop_engine
mkdir -p "$work/saved"
tar -xf "$work/image.tar" -C "$work/saved"
python3 - "$work/saved" "$reg" "$name" <<'PY'
import hashlib, json, os, sys, urllib.request
saved, reg, name = sys.argv[1:]
manifest = json.load(open(os.path.join(saved, "manifest.json")))[0]
def push(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(f"http://{reg}/v2/{name}/blobs/uploads/", method="POST")
    location = urllib.request.urlopen(start).headers["Location"]
    sep = "&" if "?" in location else "?"
    url = location if location.startswith("http") else f"http://{reg}{location}"
    put = urllib.request.Request(f"{url}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Content-Type": "application/octet-stream"})
    urllib.request.urlopen(put)
    return {"digest": digest, "size": len(data)}
config = open(os.path.join(saved, manifest["Config"]), "rb").read()
layers = []
for layer in manifest["Layers"]:
    blob = push(open(os.path.join(saved, layer), "rb").read())
    layers.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", **blob})
body = json.dumps({
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **push(config)},
    "layers": layers,
}).encode()
put = urllib.request.Request(f"http://{reg}/v2/{name}/manifests/uncompressed", data=body, method="PUT",
                             headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
urllib.request.urlopen(put)
PY
plain="$reg/$name:uncompressed"

ms() { echo $(( ($2 - $1) / 1000000 )); }
timed_pull() { # image -> ms of docker pull on a fresh engine
    fresh_engine
    local t0 t1
    t0=$(date +%s%N)
    docker -H "$dh" pull -q "$1" >/dev/null
    t1=$(date +%s%N)
    stop_engine
    ms "$t0" "$t1"
}
: >"$work/times"
for _ in $(seq "$rounds"); do
    echo "pull $(timed_pull "$image")" >>"$work/times"
    t0=$(date +%s%N)
    while read -r digest; do
        curl -sf -o "$work/blobs/${digest#sha256:}" "http://$reg/v2/$name/blobs/$digest"
    done <"$work/layers"
    t1=$(date +%s%N)
    echo "download $(ms "$t0" "$t1")" >>"$work/times"
    t0=$(date +%s%N)
    for blob in "$work"/blobs/*; do gzip -dc "$blob" >/dev/null; done
    t1=$(date +%s%N)
    echo "decompress $(ms "$t0" "$t1")" >>"$work/times"
    fresh_engine
    t0=$(date +%s%N)
    docker -H "$dh" load -q -i "$work/image.tar" >/dev/null
    t1=$(date +%s%N)
    stop_engine
    echo "extract $(ms "$t0" "$t1")" >>"$work/times"
    echo "uncompressed $(timed_pull "$plain")" >>"$work/times"
done
compressed=$(du -cb "$work"/blobs/* | tail -1 | cut -f1)
uncompressed=$(python3 -c 'import json, os, sys; d = sys.argv[1]; m = json.load(open(os.path.join(d, "manifest.json")))[0]; print(sum(os.path.getsize(os.path.join(d, l)) for l in m["Layers"]))' "$work/saved")
python3 - "$work/times" "$compressed" "$uncompressed" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
p50 = {k: statistics.median(int(v) for kind, v in rows if kind == k) for k, _ in rows}
print(f"rounds: {len([r for r in rows if r[0] == 'pull'])}; layers: {int(sys.argv[2]) / 1e6:.1f} MB gzip, {int(sys.argv[3]) / 1e6:.1f} MB uncompressed")
for k in ("pull", "download", "decompress", "extract", "uncompressed"):
    print(f"{k:<14} p50 {p50[k]:>7.0f} ms  ({p50[k] / p50['pull']:.2f} of the gzip pull)")
PY
