#!/bin/sh
# Makes the Python venv whose CycloneDX library (cyclonedx-python-lib, with the official CycloneDX
# JSON schemas and its validator) tests/cyclonedx_schema.rs runs. Does nothing when it is there.
# The venv is $KILN_CYCLONEDX_VENV, by default /var/cache/kiln-cyclonedx/venv. Needs python3 and PyPI.
set -eu
venv=${KILN_CYCLONEDX_VENV:-/var/cache/kiln-cyclonedx/venv}
if "$venv/bin/python" -c 'import cyclonedx.validation.json' 2>/dev/null; then
  exit 0
fi
if ! python3 -m venv --help >/dev/null 2>&1; then
  echo "python3 with venv is needed: apt-get install -y python3-venv" >&2
  exit 1
fi
mkdir -p "$(dirname "$venv")"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  'cyclonedx-python-lib[json-validation]==11.12.0'
"$venv/bin/python" -c 'import cyclonedx.validation.json'
echo "CycloneDX validator ready in $venv"
