#!/usr/bin/env bash
# Writes recipes/pypi-X.Y/lock.txt: ipykernel and everything it needs at run time on python X.Y, and pip
# (for requirements.txt), as pip's resolver picks them when it runs on that interpreter (the channel's: the
# .debs of recipes/python-X.Y).
# A maintainer's tool, not run by make-channel.sh; it needs PyPI and the Debian and Ubuntu archives.
#
# Usage: bash tests/conda/lock-pypi.sh 2.7|3.6
#
# It downloads the interpreter's .debs (and those of the libraries it needs) into a scratch dir, runs the
# last pip for that python (20.3.4 for 2.7, 21.3.1 for 3.6; setuptools and wheel beside it, to build the
# sdists) to download and install ipykernel and pip into a scratch target, and reads the installed metadata
# with that interpreter, so that environment markers are evaluated for it. Each lock line is
#     NAME VERSION URL SHA256 [DEP ...] [modules=TOP,...]
# NAME is the normalized PyPI name (the conda package's name), URL the file pip picked (a wheel, or an
# sdist when there is no wheel: then modules= lists the top-level modules or packages that its built wheel
# installs), DEP a conda match spec such as `traitlets>=4.1.0` (name and version constraint, no spaces).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
py=${1:-}
case "$py" in
    2.7) pip_url=https://files.pythonhosted.org/packages/27/79/8a850fe3496446ff0d584327ae44e7500daf6764ca1a382d2d02789accf7/pip-20.3.4-py2.py3-none-any.whl
         pip_sha=217ae5161a0e08c0fb873858806e3478c9775caffce5168b50ec885e358c199d
         setuptools=setuptools==44.1.1 ;;
    3.6) pip_url=https://files.pythonhosted.org/packages/a4/6d/6463d49a933f547439d6b5b98b46af8742cc03ae83543e4d7688c2420f8b/pip-21.3.1-py3-none-any.whl
         pip_sha=deaf32dcd9ab821e359cd8330786bcd077604b5c5730c0b096eda46f95c24a2d
         setuptools=setuptools==59.6.0 ;;
    *) echo "usage: bash tests/conda/lock-pypi.sh 2.7|3.6" >&2; exit 2 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/debs" "$work/root" "$work/libs"

# The interpreter and the libraries it needs that a Debian 12 host may lack (all old .debs: distinct sonames).
grep -hv '^#' "$here"/recipes/*/debs.txt | while read -r url sha; do
    curl -fsSL -o "$work/debs/${url##*/}" "$url"
    echo "$sha  $work/debs/${url##*/}" | sha256sum -c --quiet
done
for deb in "$work"/debs/*.deb; do
    if grep -q "/${deb##*/} " "$here/recipes/python-$py/debs.txt"; then
        dpkg-deb -x "$deb" "$work/root"
    elif ! grep -q "/${deb##*/} " "$here"/recipes/python-*/debs.txt; then
        dpkg-deb -x "$deb" "$work/libs"
    fi
done
libs=$(find "$work/libs" -name '*.so*' -printf '%h\n' | sort -u | paste -sd:)
curl -fsSL -o "$work/${pip_url##*/}" "$pip_url"
echo "$pip_sha  $work/${pip_url##*/}" | sha256sum -c --quiet
target() { env -u PIP_FIND_LINKS LD_LIBRARY_PATH="$libs" PYTHONHOME="$work/root/usr" PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 "$work/root/usr/bin/python$py" "$@"; }
pip=("$work/${pip_url##*/}/pip")

# setuptools and wheel beside pip: pip builds the sdists (legacy setup.py ones) with them.
target "${pip[@]}" install -q --no-compile --target "$work/build-tools" "$setuptools" wheel==0.37.1 2>&1 |
    grep -v DEPRECATION || true
export PYTHONPATH=$work/build-tools TORNADO_EXTENSION=0  # tornado: no C speedups (pure python)
target "${pip[@]}" download -q -d "$work/dl" ipykernel pip 2>&1 | grep -v DEPRECATION || true
target "${pip[@]}" install -q --no-compile --no-index --find-links "$work/dl" --target "$work/site" ipykernel pip 2>&1 |
    grep -v DEPRECATION || true
unset PYTHONPATH

# The installed distributions, read by the target interpreter (py2 and py3 alike) with pip's packaging.
cat > "$work/meta.py" <<'EOF'
import json, os, re, sys
from email.parser import Parser
from pip._vendor.packaging.requirements import Requirement
site = sys.argv[1]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
out = []
for d in sorted(os.listdir(site)):
    if not d.endswith(".dist-info"):
        continue
    with open(os.path.join(site, d, "METADATA")) as f:
        meta = Parser().parse(f)
    deps = []
    for line in meta.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            deps.append(norm(req.name) + str(req.specifier).replace(" ", ""))
    tops = set()
    with open(os.path.join(site, d, "RECORD")) as f:
        for row in f:
            top = row.split(",")[0].split("/")[0]
            if top and not top.endswith((".dist-info", "..", ".so")) and top not in ("bin", "share"):
                tops.add(top[:-3] if top.endswith(".py") else top)
    out.append({"name": norm(meta["Name"]), "version": meta["Version"], "deps": sorted(set(deps)),
                "modules": sorted(tops)})
print(json.dumps(out))
EOF
PYTHONPATH="$work/${pip_url##*/}" target "$work/meta.py" "$work/site" > "$work/meta.json"
# shellcheck disable=SC2016
python3 - "$work" "$py" "$here/recipes/pypi-$py/lock.txt" <<'EOF'
import hashlib, json, os, re, sys, urllib.request
work, py, lock = sys.argv[1:]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
files = {}
for f in os.listdir(os.path.join(work, "dl")):
    stem = f[:-4] if f.endswith((".whl", ".zip")) else f[:-7]  # .tar.gz
    name, version = stem.split("-")[:2] if f.endswith(".whl") else stem.rsplit("-", 1)
    files[norm(name), version] = f
lines = []
for dist in json.load(open(os.path.join(work, "meta.json"))):
    f = files.pop((dist["name"], dist["version"]))
    path = os.path.join(work, "dl", f)
    sha = hashlib.sha256(open(path, "rb").read()).hexdigest()
    request = urllib.request.Request("https://pypi.org/simple/%s/" % dist["name"],
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    listing = json.load(urllib.request.urlopen(request))
    [url] = [x["url"] for x in listing["files"] if x["filename"] == f and x["hashes"]["sha256"] == sha]
    fields = [dist["name"], dist["version"], url, sha] + dist["deps"]
    if not f.endswith(".whl"):
        fields.append("modules=" + ",".join(dist["modules"]))
    lines.append(" ".join(fields))
if files:
    sys.exit("lock-pypi: downloaded but not installed: %s" % sorted(files.values()))
os.makedirs(os.path.dirname(lock), exist_ok=True)
with open(lock, "w") as out:
    out.write("# ipykernel's run-time closure and pip on python %s, from pip's resolver on that interpreter.\n" % py)
    out.write("# Written by tests/conda/lock-pypi.sh %s (see there for the format); do not edit by hand.\n" % py)
    out.write("\n".join(sorted(lines)) + "\n")
print("lock-pypi: wrote %s (%d packages)" % (lock, len(lines)))
EOF
