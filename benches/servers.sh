# Shared by the benchmarks that start servers beside a PostgreSQL cluster (sourced after
# pg_cluster.sh, whose children array and working folder it uses): starting and stopping a
# child that prints its address, a free loopback port, and the pinned Phoenix server.

PHOENIX_VERSION=20.26.1
PHOENIX_CLIENT_VERSION=3.5.0
venv=${RUNNER_PHOENIX_VENV:-target/phoenix-venv}

# Starts a child whose first stdout line names its http:// address; sets $url.
start_child() {
    local out=$1
    shift
    "$@" >"$out" 2>"$out.err" &
    children+=($!)
    url=
    for _ in $(seq 1 100); do
        url=$(grep -o 'http://[0-9.:]*' "$out" 2>/dev/null | head -n 1 || true)
        [ -n "$url" ] && return
        kill -0 "${children[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: $* did not start" >&2
    tail -n 20 "$out.err" >&2
    exit 3
}

stop_last_child() {
    local last=${children[-1]}
    kill "$last" 2>/dev/null || true
    wait "$last" 2>/dev/null || true
    unset 'children[-1]'
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Installs the pinned Phoenix server and client into $venv (once; pip keeps what is there).
install_phoenix() {
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
    fi
    echo "installing arize-phoenix==$PHOENIX_VERSION into $venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "arize-phoenix==$PHOENIX_VERSION" "arize-phoenix-client==$PHOENIX_CLIENT_VERSION"
}

# Starts Phoenix with its working folder $1 and log $2 (telemetry off, loopback, free ports)
# and waits until it answers; sets $phoenix_port.
start_phoenix() {
    local dir=$1 log=$2
    mkdir -p "$dir"
    phoenix_port=$(free_port)
    PHOENIX_PORT=$phoenix_port PHOENIX_GRPC_PORT=$(free_port) PHOENIX_HOST=127.0.0.1 \
        PHOENIX_WORKING_DIR=$dir PHOENIX_TELEMETRY_ENABLED=false \
        "$venv/bin/phoenix" serve >"$log" 2>&1 &
    children+=($!)
    for _ in $(seq 1 600); do
        if curl -sf "http://127.0.0.1:$phoenix_port/arize_phoenix_version" >/dev/null 2>&1; then
            return
        fi
        kill -0 "${children[-1]}" 2>/dev/null || break
        sleep 0.2
    done
    echo "error: Phoenix did not start" >&2
    tail -n 20 "$log" >&2
    exit 3
}
