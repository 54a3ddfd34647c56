#!/usr/bin/env bash
# One experiment over workers, beside a plain `runner experiment` on the same kind of store, in
# one run, on PostgreSQL and on SQLite: a plain experiment at concurrency C, one worker at C, a
# plain experiment at N x C and N workers at C each, the same rows, the same
# `runner mock-server --latency-ms MS`. Prints rows/s of each and the ratios (the targets: one
# worker >= 90 % of the plain experiment at C, N workers >= 90 % of the plain one at N x C).
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
for db in one many plain_one plain_many; do
    "$bin/psql" -h 127.0.0.1 -p "$port" -U runner -d postgres -qc "CREATE DATABASE $db" >/dev/null
done

# The store named $2 on backend $1.
store() {
    case $1 in
        postgres) echo "postgres://runner@127.0.0.1:$port/$2" ;;
        sqlite) echo "$work/$2.db" ;;
    esac
}

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

# Plans the experiment on store $1 and prints its id.
plan() {
    local db=$1
    "$runner" --db "$db" prompt create support --template "Answer briefly: {{query}}" \
        --model mock-model >/dev/null 2>&1
    "$runner" --db "$db" experiment --prompt support --version 1 --dataset "$work/rows.csv" \
        --base-url "$url" --no-cache --detach --json |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])'
}

# Runs $2 workers on store $1's experiment $3; prints the wall seconds until all are done.
run_workers() {
    local db=$1 n=$2 id=$3
    local start end pids=()
    start=$(date +%s.%N)
    for _ in $(seq "$n"); do
        "$runner" --db "$db" worker "$id" --concurrency "$CONCURRENCY" >/dev/null 2>"$work/worker.err" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    end=$(date +%s.%N)
    "$runner" --db "$db" experiment wait "$id" --timeout 60 --json >"$work/result.json" 2>/dev/null
    python3 -c "print(f'{$end - $start:.2f}')"
}

# Runs a plain experiment at concurrency $2 on store $1; prints the wall seconds.
run_plain() {
    local db=$1 concurrency=$2
    local start end
    "$runner" --db "$db" prompt create support --template "Answer briefly: {{query}}" \
        --model mock-model >/dev/null 2>&1
    start=$(date +%s.%N)
    "$runner" --db "$db" experiment --prompt support --version 1 --dataset "$work/rows.csv" \
        --base-url "$url" --no-cache --concurrency "$concurrency" --json >"$work/result.json" 2>/dev/null
    end=$(date +%s.%N)
    python3 -c "print(f'{$end - $start:.2f}')"
}

# Checks the last result (every row ok) and appends "BACKEND KIND SECONDS" to the figures.
record() {
    python3 - "$work/result.json" "$ROWS" "$1 $2" <<'EOF'
import json, sys
result = json.load(open(sys.argv[1]))
s = result["summary"]
assert s["ok"] == int(sys.argv[2]) and s["errored"] == 0, f"{sys.argv[3]}: {s['ok']} ok, {s['errored']} errored"
EOF
    echo "$1 $2 $3" >>"$work/figures.txt"
}

for backend in postgres sqlite; do
    echo "$backend: plain experiment at $CONCURRENCY" >&2
    record "$backend" plain_one "$(run_plain "$(store "$backend" plain_one)" "$CONCURRENCY")"
    echo "$backend: one worker at $CONCURRENCY" >&2
    id=$(plan "$(store "$backend" one)")
    record "$backend" one "$(run_workers "$(store "$backend" one)" 1 "$id")"
    echo "$backend: plain experiment at $((WORKERS * CONCURRENCY))" >&2
    record "$backend" plain_many "$(run_plain "$(store "$backend" plain_many)" "$((WORKERS * CONCURRENCY))")"
    echo "$backend: $WORKERS workers at $CONCURRENCY each" >&2
    id=$(plan "$(store "$backend" many)")
    record "$backend" many "$(run_workers "$(store "$backend" many)" "$WORKERS" "$id")"
done

python3 - "$work/figures.txt" "$ROWS" "$WORKERS" "$CONCURRENCY" "$LATENCY" <<'EOF'
import sys
rows, workers, conc, latency = (int(v) for v in sys.argv[2:6])
secs = {}
for line in open(sys.argv[1]):
    backend, kind, s = line.split()
    secs[(backend, kind)] = float(s)
rate = lambda b, k: rows / secs[(b, k)]
print(f"mock latency {latency} ms; {rows} rows; concurrency {conc} per worker, {workers} workers; "
      "every row has exactly one ok result in every run")
print()
print("| store | run | wall s | rows/s | of concurrency / latency | beside the plain experiment | target | met |")
print("|---|---|---|---|---|---|---|---|")
for b in ("postgres", "sqlite"):
    name = {"postgres": "PostgreSQL", "sqlite": "SQLite"}[b]
    for kind, label, c in (
        ("plain_one", f"plain experiment, concurrency {conc}", conc),
        ("one", f"1 worker, concurrency {conc}", conc),
        ("plain_many", f"plain experiment, concurrency {workers * conc}", workers * conc),
        ("many", f"{workers} workers, concurrency {conc} each", workers * conc),
    ):
        ideal = c / (latency / 1000.0)
        cells = [name, label, f"{secs[(b, kind)]:.2f}", f"{rate(b, kind):.0f}",
                 f"{100 * rate(b, kind) / ideal:.1f} %"]
        if kind in ("one", "many"):
            plain = "plain_one" if kind == "one" else "plain_many"
            share = rate(b, kind) / rate(b, plain)
            cells += [f"{100 * share:.1f} %", ">= 90 %", "yes" if share >= 0.9 else "no"]
        else:
            cells += ["", "", ""]
        print("| " + " | ".join(cells) + " |")
print()
for b in ("postgres", "sqlite"):
    print(f"{b}: {workers} workers = {rate(b, 'many') / rate(b, 'one'):.2f}x one worker")
EOF
