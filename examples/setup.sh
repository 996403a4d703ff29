# Sourced by examples/run.sh and examples/serve.sh (from the repository root): installs and starts
# what kiln needs on this machine, builds kiln, and sets $kiln to its path.
#   - debootstrap and git from Debian when missing;
#   - the Docker engine (tests/services/engine.sh: docker.io, started without a bridge network);
#   - the base image (kiln base bootstrap);
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
