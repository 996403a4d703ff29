#!/usr/bin/env bash
# Size of the default image (issue 18, item 2): examples/repos/python-default built by kiln now (with
# BuildKit: uv mounted from a stage of its own, not in the image), against BEFORE, an image of the
# same example built by an earlier kiln and still in the engine. Prints both sizes, their ratio,
# what the two hold of uv and of the hub's web assets, and the largest layers of the new image.
# (The classic builder still installs uv into the image; it is not measured here, since on a
# machine whose package registries need a CA bundle only BuildKit builds can download.)
# Usage: bash benches/size.sh BEFORE   (needs the engine and the base image: see README)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
bench_work size
before="${1:?usage: bash benches/size.sh BEFORE-IMAGE}"
export KILN_NETWORK=host
kiln="${KILN_BIN:-${CARGO_TARGET_DIR:-target}/debug/kiln}"
if [ ! -x "$kiln" ]; then
    cargo build --quiet --bin kiln
fi
now=kiln-bench/size:now
trap 'docker rmi -f "$now" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
"$kiln" build examples/repos/python-default --image-name "$now" >"$work/now.log" 2>&1 \
    || { tail -20 "$work/now.log"; exit 1; }
bytes() { docker image inspect -f '{{.Size}}' "$1"; }
mb() { awk '{printf "%.1f MB", $1 / 1e6}' <<<"$1"; }
ratio() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / int(sys.argv[2]):.2f}x")' "$1" "$2"; }
b=$(bytes "$before")
n=$(bytes "$now")
echo "before ($before): $(mb "$b")"
echo "now: $(mb "$n") (before / now: $(ratio "$b" "$n"))"
for image in "$before" "$now"; do
    printf '%s: uv %s (%s); share/jupyterhub/static %s; site-packages %s\n' "$image" \
        "$(docker run --rm --network none --entrypoint sh "$image" -c 'command -v uv || echo absent')" \
        "$(docker run --rm --network none --entrypoint sh "$image" -c 'du -sh /opt/kiln/uv 2>/dev/null | cut -f1 || true')" \
        "$(docker run --rm --network none --entrypoint sh "$image" -c 'du -sh /srv/venv/share/jupyterhub/static | cut -f1')" \
        "$(docker run --rm --network none --entrypoint sh "$image" -c 'du -sh /srv/venv/lib/python3.11/site-packages | cut -f1')"
done
echo "layers of $now (docker history, largest first):"
docker history --format '{{.Size}}\t{{.CreatedBy}}' "$now" | sort -h -r | head -6 | cut -c1-150
