# Sourced by the benchmark scripts: a scratch folder and the processes to stop, both cleaned up on exit,
# a free loopback port, and a registry (CNCF Distribution) on loopback.
#   bench_work NAME     sets $work (a new folder) and the clean-up
#   port                prints a free loopback port
#   start_registry      starts a registry in $work, sets $reg_port
#   pids+=($!)          stops a process started by the script on exit
#   fresh_engine        starts a second dockerd with its own data root (trusting $reg over plain
#                       HTTP), sets $dh (its DOCKER_HOST), $droot and $dpid; stop_engine removes it
#   jupyter_start_ms IMAGE [DOCKER_HOST]
#                       milliseconds from `docker run` of IMAGE to JupyterLab answering /api/status
#                       with its token (the container is removed after)
bench_work() {
    work="$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench-$1.XXXXXX")"
    pids=()
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_registry() {
    reg_port=$(port)
    printf 'version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s/registry\nhttp:\n  addr: 127.0.0.1:%s\n' "$work" "$reg_port" > "$work/registry.yml"
    docker-registry serve "$work/registry.yml" > /dev/null 2>&1 &
    pids+=($!)
}
jupyter_start_ms() {
    local docker=(docker) p token t0 t1 id
    [ -z "${2:-}" ] || docker=(docker -H "$2")
    p=$(port)
    token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    t0=$(date +%s%N)
    id=$("${docker[@]}" run -d --network host "$1" jupyter lab --ip=127.0.0.1 --port="$p" \
        --no-browser --IdentityProvider.token="$token")
    until curl -sf -o /dev/null -H "Authorization: token $token" "http://127.0.0.1:$p/api/status"; do
        sleep 0.02
    done
    t1=$(date +%s%N)
    "${docker[@]}" rm -f "$id" >/dev/null
    echo $(((t1 - t0) / 1000000))
}
fresh_engine() { # -> sets $dh (DOCKER_HOST) and $droot
    droot="$work/engine-$RANDOM$RANDOM"
    mkdir -p "$droot"
    dh="unix://$droot/docker.sock"
    dockerd --host "$dh" --data-root "$droot/data" --exec-root "$droot/exec" --pidfile "$droot/pid" \
        --bridge=none --iptables=false --ip-forward=false --ip-masq=false --insecure-registry "$reg" \
        >"$droot/log" 2>&1 &
    dpid=$!
    pids+=($dpid)
    for _ in $(seq 100); do docker -H "$dh" version >/dev/null 2>&1 && return; sleep 0.2; done
    echo "the fresh engine did not start"; exit 1
}
stop_engine() {
    kill "$dpid"; wait "$dpid" 2>/dev/null || true
    umount "$droot/exec/netns/default" 2>/dev/null || true # the engine leaves its netns mounted
    rm -rf "$droot"
}
