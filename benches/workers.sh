#!/usr/bin/env bash
# One experiment over many workers on one PostgreSQL store: one worker of concurrency C against
# N workers of concurrency C, the same plan, the same `runner mock-server --latency-ms MS`.
# Prints rows/s of each and the ratio (the target: 4 workers at >= 3.6x one worker).
#
#   bash benches/workers.sh                  # 20,000 rows, 50 ms, concurrency 64, 4 workers
#   ROWS=5000 WORKERS=2 bash benches/workers.sh
#   RUNNER=target/release/runner bash benches/workers.sh   # an already built binary
#
# Starts a throwaway PostgreSQL cluster of its own (the distribution's server programs, run as the
# postgres account when this runs as root) on a free loopback port, and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-20000}
LATENCY=${LATENCY:-50}
CONCURRENCY=${CONCURRENCY:-64}
WORKERS=${WORKERS:-4}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
    echo "error: PostgreSQL's server programs are not installed" >&2
    echo "hint: apt-get install postgresql" >&2
    exit 2
fi

# RUNNER=PATH measures that binary instead of a fresh release build of this checkout.
if [ -n "${RUNNER:-}" ]; then
    runner=$RUNNER
else
    echo "building the runner: cargo build --release --bin runner" >&2
    cargo build --release --quiet --bin runner
    runner=$(pwd)/target/release/runner
fi

work=$(mktemp -d)
chmod 755 "$work"
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
mock_pid=""
cleanup() {
    [ -n "$mock_pid" ] && kill "$mock_pid" 2>/dev/null || true
    as_pg "$bin/pg_ctl" -D "$work/pg/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
as_pg "$bin/initdb" -D "$work/pg/data" -U runner -E UTF8 --locale=C.UTF-8 --no-sync \
    --auth-local=trust --auth-host=trust >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_pg "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
    -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
for db in one many; do
    "$bin/psql" -h 127.0.0.1 -p "$port" -U runner -d postgres -qc "CREATE DATABASE $db" >/dev/null
done

python3 - "$work/rows.csv" "$ROWS" <<'EOF'
import csv, sys
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "query", "expected"])
    for i in range(int(sys.argv[2])):
        w.writerow([f"r{i}", f"Where is my order {i}?", "order"])
EOF

mock_pid=$("$runner" mock-server --port 0 --latency-ms "$LATENCY" --detach 2>"$work/mock.err")
url=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$work/mock.err" | head -1)

# Plans the experiment on database $1 and prints its id.
plan() {
    local db="postgres://runner@127.0.0.1:$port/$1"
    "$runner" --db "$db" prompt create support --template "Answer briefly: {{query}}" \
        --model mock-model >/dev/null
    "$runner" --db "$db" experiment --prompt support --version 1 --dataset "$work/rows.csv" \
        --base-url "$url" --no-cache --detach --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}

# Runs $2 workers on database $1's experiment $3; prints the wall seconds until all are done.
run_workers() {
    local db="postgres://runner@127.0.0.1:$port/$1" n=$2 id=$3
    local start end pids=()
    start=$(date +%s.%N)
    for _ in $(seq "$n"); do
        "$runner" --db "$db" worker "$id" --concurrency "$CONCURRENCY" >/dev/null 2>"$work/worker.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    end=$(date +%s.%N)
    "$runner" --db "$db" experiment wait "$id" --timeout 60 --json >"$work/wait-$1.json" 2>/dev/null
    python3 -c "print(f'{$end - $start:.2f}')"
}

one_id=$(plan one)
many_id=$(plan many)
one_secs=$(run_workers one 1 "$one_id")
many_secs=$(run_workers many "$WORKERS" "$many_id")

python3 - "$work/wait-one.json" "$work/wait-many.json" "$ROWS" "$one_secs" "$many_secs" \
    "$WORKERS" "$CONCURRENCY" "$LATENCY" <<'EOF'
import json, sys
one, many = (json.load(open(p)) for p in sys.argv[1:3])
rows, one_s, many_s, workers, conc, latency = sys.argv[3:9]
rows = int(rows)
for name, result in (("one", one), ("many", many)):
    s = result["summary"]
    assert s["ok"] == rows and s["errored"] == 0, f"{name}: {s['ok']} ok, {s['errored']} errored"
one_rate, many_rate = rows / float(one_s), rows / float(many_s)
ideal = int(conc) / (int(latency) / 1000.0)
print(f"mock latency {latency} ms; {rows} rows; concurrency {conc} per worker; PostgreSQL store on loopback")
print()
print("| workers | wall s | rows/s | of one worker's ideal (C / latency) |")
print("|---|---|---|---|")
print(f"| 1 | {float(one_s):.2f} | {one_rate:.0f} | {100 * one_rate / ideal:.0f} % |")
print(f"| {workers} | {float(many_s):.2f} | {many_rate:.0f} | {100 * many_rate / ideal:.0f} % |")
print()
ratio = many_rate / one_rate
print(f"{workers} workers: {ratio:.2f}x one worker's rows/s (target >= 3.6x for 4): {'met' if ratio >= 3.6 else 'missed'}")
print("every row has exactly one ok result on both stores")
EOF
