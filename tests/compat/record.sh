#!/usr/bin/env bash
# Re-records tests/compat/phoenix-fixture.json: installs the pinned Phoenix server and client into
# a virtualenv, starts a real Phoenix server (SQLite in a temporary working directory, a free
# loopback port, telemetry off), runs differential.py against it and keeps its normalised answers.
# CI does not run this; it compares `runner serve` against the committed fixture (run.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."

PHOENIX_VERSION=20.26.1
PHOENIX_CLIENT_VERSION=3.5.0
venv=${RUNNER_PHOENIX_VENV:-target/phoenix-venv}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "arize-phoenix==$PHOENIX_VERSION" "arize-phoenix-client==$PHOENIX_CLIENT_VERSION" "pandas==2.3.3"

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() {
    "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
grpc_port=$(free_port)

PHOENIX_PORT=$port PHOENIX_GRPC_PORT=$grpc_port PHOENIX_HOST=127.0.0.1 \
    PHOENIX_WORKING_DIR=$work PHOENIX_TELEMETRY_ENABLED=false \
    "$venv/bin/phoenix" serve >"$work/server.log" 2>&1 &
pid=$!

url=http://127.0.0.1:$port
for _ in $(seq 1 300); do
    if curl -sf "$url/arize_phoenix_version" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$pid" 2>/dev/null; then
        cat "$work/server.log" >&2
        exit 1
    fi
    sleep 0.2
done
echo "Phoenix $(curl -sf "$url/arize_phoenix_version") at $url"

"$venv/bin/python" tests/compat/differential.py --url "$url" --out tests/compat/phoenix-fixture.json
