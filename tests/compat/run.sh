#!/usr/bin/env bash
# Compatibility test with the real Phoenix client: builds runner, installs the pinned
# arize-phoenix-client into a virtualenv, starts `runner serve` on a free loopback port with a
# token, and runs phoenix_client.py against it. Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

PHOENIX_CLIENT_VERSION=3.5.0
venv=${RUNNER_COMPAT_VENV:-target/compat-venv}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    "arize-phoenix-client==$PHOENIX_CLIENT_VERSION"

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner

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

token=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
printf 'compat:%s\n' "$token" >"$work/tokens.txt"

"$runner" --db "$work/runner.db" serve --bind 127.0.0.1:0 --token-file "$work/tokens.txt" \
    >"$work/stdout" 2>"$work/stderr" &
pid=$!

# The first stdout line names the address; wait for it, bounded.
url=
for _ in $(seq 1 100); do
    url=$(grep -o 'http://[^ ]*' "$work/stdout" 2>/dev/null | head -n 1 || true)
    [ -n "$url" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then break; fi
    sleep 0.1
done
if [ -z "$url" ]; then
    echo "runner serve did not start:" >&2
    cat "$work/stderr" >&2
    exit 1
fi
echo "runner serve at $url, arize-phoenix-client $PHOENIX_CLIENT_VERSION"

RUNNER_URL=$url RUNNER_TOKEN=$token RUNNER_BIN=$runner RUNNER_DB=$work/runner.db \
    "$venv/bin/python" tests/compat/phoenix_client.py
