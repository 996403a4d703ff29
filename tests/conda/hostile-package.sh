#!/usr/bin/env bash
# Makes a hostile conda package for the tests: a .tar.bz2 in CHANNEL/linux-64/ whose info/paths.json
# names PATH (such as ../../../tmp/x or /etc/x: a path out of the environment), with one payload file.
# Prints the file's name and its sha256, separated by a space.
# Usage: bash tests/conda/hostile-package.sh CHANNEL NAME PATH
set -euo pipefail
channel="$1" name="$2" path="$3"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/info" "$channel/linux-64"
printf 'payload\n' > "$work/payload.txt"
sha=$(sha256sum "$work/payload.txt" | cut -d' ' -f1)
printf '{"name": "%s", "version": "1.0", "build": "0", "build_number": 0, "subdir": "linux-64", "depends": []}\n' \
    "$name" > "$work/info/index.json"
printf '{"paths_version": 1, "paths": [{"_path": "%s", "path_type": "hardlink", "sha256": "%s", "size_in_bytes": 8}]}\n' \
    "$path" "$sha" > "$work/info/paths.json"
file="$name-1.0-0.tar.bz2"
tar -cjf "$channel/linux-64/$file" -C "$work" info payload.txt
echo "$file $(sha256sum "$channel/linux-64/$file" | cut -d' ' -f1)"
