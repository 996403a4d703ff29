#!/usr/bin/env bash
# Installs BinderHub's JavaScript client (@jupyterhub/binderhub-client, the one BinderHub's pages and
# jupyterhub-fancy-profiles use) from npm into /var/cache/kiln-npm/binderhub-client-<version> when
# missing, with an ES-module copy of its client (the package ships ES modules under .js names, which
# Node reads as CommonJS). Prints the folder; tests/services/binderhub-client.mjs drives it.
set -euo pipefail
VERSION=0.5.0
home="${KILN_NPM_HOME:-/var/cache/kiln-npm}/binderhub-client-$VERSION"
if [ ! -e "$home/esm/client.mjs" ]; then
    mkdir -p "$home"
    echo "tests: installing @jupyterhub/binderhub-client $VERSION into $home" >&2
    npm install --silent --no-audit --no-fund --prefix "$home" "@jupyterhub/binderhub-client@$VERSION" >&2
    mkdir -p "$home/esm"
    cp "$home/node_modules/@jupyterhub/binderhub-client/lib/client.js" "$home/esm/client.mjs"
fi
echo "$home"
