#!/usr/bin/env bash
# Installs a JupyterHub for kiln's hub launcher on one machine, when missing:
#   - JupyterHub, DockerSpawner and the idle culler from PyPI, in a virtual environment;
#   - configurable-http-proxy (the hub's proxy) from npm, beside it.
# Everything lands in KILN_HUB_HOME (default /var/cache/kiln-hub/<version>, or ~/.cache/kiln-hub/<version>
# when that is not writable); re-running is quick. KILN_JUPYTERHUB_VERSION chooses JupyterHub (default
# 6.1.1, the version kiln's images get; the hub's major version must match theirs).
# Prints the directory whose bin/ holds jupyterhub and the proxy.
# Usage: bash examples/hub/install.sh    then: PATH="$(bash examples/hub/install.sh)/bin:$PATH" jupyterhub ...
set -euo pipefail
JUPYTERHUB_VERSION="${KILN_JUPYTERHUB_VERSION:-6.1.1}"
DOCKERSPAWNER_VERSION=14.0.0
CULLER_VERSION=2.0.0
PROXY_VERSION=5.3.0
home="${KILN_HUB_HOME:-/var/cache/kiln-hub/$JUPYTERHUB_VERSION}"
if ! mkdir -p "$home" 2>/dev/null || [ ! -w "$home" ]; then
    home="$HOME/.cache/kiln-hub/$JUPYTERHUB_VERSION"
    mkdir -p "$home"
fi
stamp="$home/.installed-$JUPYTERHUB_VERSION-$DOCKERSPAWNER_VERSION-$CULLER_VERSION-$PROXY_VERSION"
if [ ! -e "$stamp" ]; then
    command -v npm >/dev/null || {
        echo "hub: installing npm" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends npm >&2
    }
    python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || {
        echo "hub: installing python3-venv" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >&2
    }
    echo "hub: installing JupyterHub $JUPYTERHUB_VERSION, DockerSpawner and the proxy into $home" >&2
    python3 -m venv "$home"
    "$home/bin/pip" install --quiet --disable-pip-version-check \
        "jupyterhub==$JUPYTERHUB_VERSION" "dockerspawner==$DOCKERSPAWNER_VERSION" \
        "jupyterhub-idle-culler==$CULLER_VERSION" >&2
    npm install --silent --no-audit --no-fund --prefix "$home/node" \
        "configurable-http-proxy@$PROXY_VERSION" >&2
    ln -sf ../node/node_modules/.bin/configurable-http-proxy "$home/bin/configurable-http-proxy"
    rm -f "$home"/.installed-*
    touch "$stamp"
fi
echo "$home"
