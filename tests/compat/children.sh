# Shared by the compatibility scripts: a fresh working folder, the children they start
# (stopped, and the folder removed, on exit), and starting a child that prints its address.
# Sourced; sets $work.

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
