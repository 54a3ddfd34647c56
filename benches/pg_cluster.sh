# Shared by the benchmarks that need PostgreSQL: a working folder and the children a benchmark
# starts (stopped, and both folders removed, on exit), and a throwaway cluster on a free loopback
# port (server defaults; as the postgres account when run as root). Sourced with $pg_bin set and
# $bench naming the benchmark; sets $work, $pgdir, $port and the children array.

work=$(mktemp -d -t "runner-$bench-XXXXXX")
pgdir=$(mktemp -d -t runner-pgdata-XXXXXX)
children=()
pg_started=

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cleanup() {
    for child in "${children[@]}"; do
        kill "$child" 2>/dev/null || true
        wait "$child" 2>/dev/null || true
    done
    if [ -n "$pg_started" ]; then
        as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work" "$pgdir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# PostgreSQL refuses to run as root; its folder then belongs to the postgres account.
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pgdir"
as_pg "$pg_bin/initdb" -D "$pgdir/data" -U runner -E UTF8 --locale=C.UTF-8 --auth=trust \
    >"$pgdir/initdb.log" 2>&1 || {
    cat "$pgdir/initdb.log" >&2
    exit 3
}
port=
for _ in 1 2 3 4 5; do
    candidate=$((20000 + RANDOM % 40000))
    if as_pg "$pg_bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w -t 60 \
        -o "-p $candidate -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null 2>&1; then
        port=$candidate
        pg_started=1
        break
    fi
done
[ -n "$port" ] || {
    echo "error: PostgreSQL did not start" >&2
    cat "$pgdir/server.log" >&2
    exit 3
}
