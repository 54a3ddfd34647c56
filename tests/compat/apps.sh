# Shared by traces.sh and canary.sh, which run real Python applications against `runner serve`:
# the pinned Python environment, the runner binary, a fresh working folder, children stopped
# on exit, tokens, and starting a child that prints its address. Sourced from the project root;
# sets $python, $runner, $work.

venv=${RUNNER_TRACES_VENV:-target/traces-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/compat/traces-requirements.txt
python=$(cd "$venv/bin" && pwd)/python

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

new_token() { "$python" -c 'import secrets; print(secrets.token_hex(24))'; }

# Starts a child whose first stdout line names its http:// address, and sets $url to it.
start() {
    local out=$1
    shift
    "$@" >"$out" 2>"$out.err" &
    local pid=$!
    pids+=("$pid")
    url=
    for _ in $(seq 1 100); do
        url=$(grep -o 'http://[^ ]*' "$out" 2>/dev/null | head -n 1 || true)
        [ -n "$url" ] && return
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    echo "error: $* did not start:" >&2
    cat "$out.err" >&2
    exit 1
}
