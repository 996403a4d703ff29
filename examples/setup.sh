# Sourced by examples/run.sh and examples/serve.sh (from the repository root): installs and starts
# what kiln needs on this machine, builds kiln, and sets $kiln to its path.
#   - debootstrap and git from Debian when missing;
#   - the Docker engine (tests/services/engine.sh: docker.io, started without a bridge network);
#   - the base image (kiln base bootstrap);
#   - conda without conda-forge (unreachable here): unless KILN_CONDA_MIRRORS is set, the fixture conda
#     channel (tests/conda/make-channel.sh) served on loopback, with conda-forge mapped to it, so the
#     conda-fixture example builds; $conda_channel_pid is the server to stop;
#   - KILN_NETWORK=host (this machine has no bridge network; see README, Security) and the host's CA
#     bundle as build-time trust when SSL_CERT_FILE is unset.
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v git >/dev/null || need+=(git)
if [ "${#need[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
bash tests/services/engine.sh >&2
cargo build --release --quiet --bin kiln
kiln="${CARGO_TARGET_DIR:-$PWD/target}/release/kiln"
export KILN_NETWORK="${KILN_NETWORK:-host}"
[ -n "${SSL_CERT_FILE:-}" ] || [ ! -f /etc/ssl/certs/ca-certificates.crt ] || export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
"$kiln" base bootstrap
conda_channel_pid=""
if [ -z "${KILN_CONDA_MIRRORS:-}" ]; then
    command -v python3 >/dev/null || {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3 python3-venv >/dev/null
    }
    channel=/var/cache/kiln-conda-fixture/channel
    bash tests/conda/make-channel.sh "$channel" >&2
    conda_port="${KILN_EXAMPLES_CONDA_PORT:-8765}"
    python3 tests/services/conda-channel.py "$conda_port" "$channel" &
    conda_channel_pid=$!
    export KILN_CONDA_MIRRORS="conda-forge=http://127.0.0.1:$conda_port/"
    echo "kiln: conda-forge is mapped to the fixture channel on http://127.0.0.1:$conda_port/" >&2
fi
