#!/usr/bin/env bash
# The CLI against a team server (`--db http://…` with a token) beside the same CLI on the
# server's store directly, in one run: an experiment of ROWS rows at the mock's LATENCY ms and
# CONCURRENCY (results uploaded through the server's store route), and the tag lookup
# `prompt show --tag production` over loopback (median and worst of LOOKUPS runs, each a whole
# process: start, connect, ask, print).
#
#   bash benches/remote.sh                      # 10,000 rows, 50 ms, concurrency 64, SQLite
#   STORE=postgres bash benches/remote.sh       # the server on a throwaway PostgreSQL
#   RUNNER=target/release/runner bash benches/remote.sh
#
# Targets (issue: the CLI against the team server): the remote experiment at >= 90 % of the
# local one's rows/s, and the lookup <= 20 ms.
set -euo pipefail
cd "$(dirname "$0")/.."

ROWS=${ROWS:-10000}
LATENCY=${LATENCY:-50}
CONCURRENCY=${CONCURRENCY:-64}
LOOKUPS=${LOOKUPS:-25}
STORE=${STORE:-sqlite}

if [ -n "${RUNNER:-}" ]; then
    runner=$RUNNER
else
    echo "building the runner: cargo build --release --bin runner" >&2
    cargo build --release --quiet --bin runner
    runner=$(pwd)/target/release/runner
fi

work=$(mktemp -d)
chmod 755 "$work"
pids=()
pg_stop=""
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    if [ -n "$pg_stop" ]; then eval "$pg_stop" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

# Two stores of the same kind: one the CLI opens itself, one behind the server.
if [ "$STORE" = postgres ]; then
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
    mkdir -p "$work/pg"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$work/pg"
    as_pg "$bin/initdb" -D "$work/pg/data" -U runner -E UTF8 --locale=C.UTF-8 --no-sync \
        --auth-local=trust --auth-host=trust >/dev/null
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_pg "$bin/pg_ctl" -D "$work/pg/data" -l "$work/pg/server.log" -w -t 60 \
        -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    pg_stop="as_pg $bin/pg_ctl -D $work/pg/data -m immediate stop"
    for db in direct served; do
        "$bin/psql" -h 127.0.0.1 -p "$port" -U runner -d postgres -qc "CREATE DATABASE $db" >/dev/null
    done
    direct="postgres://runner@127.0.0.1:$port/direct"
    served="postgres://runner@127.0.0.1:$port/served"
else
    direct="$work/direct.db"
    served="$work/served.db"
fi

python3 - "$work/rows.csv" "$ROWS" <<'EOF'
import csv, sys
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "query", "expected"])
    for i in range(int(sys.argv[2])):
        w.writerow([f"r{i}", f"Where is my order {i}?", "order"])
EOF

mock_pid=$("$runner" mock-server --port 0 --latency-ms "$LATENCY" --detach 2>"$work/mock.err")
pids+=("$mock_pid")
mock=$(grep -o 'http://127.0.0.1:[0-9]*/v1' "$work/mock.err" | head -1)

token=$("$runner" --db "$served" token create bench --role write --quiet)
"$runner" --db "$served" serve --bind 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.err" &
pids+=($!)
for _ in $(seq 100); do
    grep -q 'http://' "$work/serve.out" 2>/dev/null && break
    sleep 0.05
done
server=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/serve.out" | head -1)
export RUNNER_TOKEN=$token

# Runs the experiment on store $1; prints the wall seconds.
experiment() {
    local db=$1 start end
    "$runner" --db "$db" prompt create support --template "Answer briefly: {{query}}" \
        --model mock-model --tag production >/dev/null
    start=$(date +%s.%N)
    "$runner" --db "$db" experiment --prompt support --tag production --dataset "$work/rows.csv" \
        --base-url "$mock" --no-cache --concurrency "$CONCURRENCY" --json >"$work/run.json"
    end=$(date +%s.%N)
    python3 - "$work/run.json" "$ROWS" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))["summary"]
assert s["ok"] == int(sys.argv[2]) and s["errored"] == 0, s
EOF
    python3 -c "print(f'{$end - $start:.2f}')"
}

local_s=$(experiment "$direct")
remote_s=$(experiment "$server")

# Prints the median and the worst of $LOOKUPS lookups on store $1, in ms.
lookups() {
    local db=$1
    for _ in $(seq "$LOOKUPS"); do
        local start end
        start=$(date +%s%N)
        "$runner" --db "$db" prompt show support --tag production --json >/dev/null
        end=$(date +%s%N)
        echo $(( (end - start) / 1000 ))
    done | python3 -c '
import statistics, sys
us = sorted(int(line) for line in sys.stdin)
print(f"{statistics.median(us) / 1000:.1f} {us[-1] / 1000:.1f}")'
}
read -r local_med local_max < <(lookups "$direct")
read -r remote_med remote_max < <(lookups "$server")

python3 - "$ROWS" "$LATENCY" "$CONCURRENCY" "$STORE" "$local_s" "$remote_s" \
    "$local_med" "$local_max" "$remote_med" "$remote_max" "$LOOKUPS" <<'EOF'
import sys
rows, latency, conc, store = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
local_s, remote_s = float(sys.argv[5]), float(sys.argv[6])
lm, lx, rm, rx = (float(x) for x in sys.argv[7:11])
n = sys.argv[11]
local_rate, remote_rate = rows / local_s, rows / remote_s
print(f"{rows} rows, mock latency {latency} ms, concurrency {conc}; the server's store: {store}")
print()
print("| store | experiment wall s | rows/s | prompt show --tag production, median of " + n + " (worst) |")
print("|---|---|---|---|")
print(f"| opened by the CLI | {local_s:.2f} | {local_rate:.0f} | {lm:.1f} ms ({lx:.1f} ms) |")
print(f"| behind runner serve (--db http://…) | {remote_s:.2f} | {remote_rate:.0f} | {rm:.1f} ms ({rx:.1f} ms) |")
print()
ratio = remote_rate / local_rate
print(f"remote experiment: {100 * ratio:.1f} % of the local one's rows/s (target >= 90 %): {'met' if ratio >= 0.9 else 'missed'}")
print(f"remote lookup: median {rm:.1f} ms (target <= 20 ms): {'met' if rm <= 20 else 'missed'}")
EOF
