#!/usr/bin/env bash
# PostgreSQL beside SQLite, in one run on one machine (issue 14, item 5): a 10,000-row experiment
# against `runner mock-server` at latency 0 and at 50 ms / concurrency 64, `runner prompt show
# NAME --tag production`, and `runner serve` under load on the tag lookup. Each measurement runs
# RUNS times on both backends, interleaved; the table shows the medians, the ratio and whether
# each target of the issue is met (exit 1 when one is not).
#
# Needs nothing set up by hand: it builds the release binaries, starts a throwaway PostgreSQL
# cluster (initdb into a temporary folder, a free loopback port, its Unix socket in that folder,
# trust authentication on loopback only, the server's default durability settings) and stops it
# and removes every file on exit. Run as root, the server runs as the `postgres` account.
#
#   benches/postgres.sh                                  # RUNS=3 SHOW_RUNS=50 SERVE_SECONDS=5
#   PG_BIN=/usr/lib/postgresql/16/bin RUNS=5 benches/postgres.sh
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${RUNS:-3}
rows=${ROWS:-10000}
concurrency=${CONCURRENCY:-64}
show_runs=${SHOW_RUNS:-50}
serve_seconds=${SERVE_SECONDS:-5}
connections=${CONNECTIONS:-32}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

[ -x "$pg_bin/initdb" ] || {
    echo "error: no initdb in $pg_bin" >&2
    echo "hint: apt-get install postgresql-15, or PG_BIN=/path/to/postgresql/bin $0" >&2
    exit 2
}

echo "building: cargo build --release --bin runner --example serve_load --example bench" >&2
cargo build --release --quiet --bin runner --example serve_load --example bench
runner=$PWD/target/release/runner
load=$PWD/target/release/examples/serve_load
bench=$PWD/target/release/examples/bench

load_before=$(uptime | sed 's/.*load average: //')
bench=pgbench
# shellcheck source=benches/pg_cluster.sh
. benches/pg_cluster.sh
pg_url() { echo "postgres://runner@127.0.0.1:$port/$1"; }
psql_do() { "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U runner -d postgres -c "$1"; }
createdb() { psql_do "CREATE DATABASE $1" && pg_url "$1"; }
dropdb() { psql_do "DROP DATABASE $1" >/dev/null; }
pg_version=$("$pg_bin/postgres" --version)

# --- helpers ----------------------------------------------------------------------------------

# Starts a child whose first stdout line names its http:// address, and sets $url to it.
start_child() {
    local out=$1
    shift
    "$@" >"$out" 2>"$out.err" &
    children+=($!)
    url=
    for _ in $(seq 1 100); do
        url=$(grep -o 'http://[^ ]*' "$out" 2>/dev/null | head -n 1 || true)
        [ -n "$url" ] && return
        sleep 0.1
    done
    cat "$out.err" >&2
    exit 3
}

stop_last_child() {
    local last=${children[-1]}
    kill "$last" 2>/dev/null || true
    wait "$last" 2>/dev/null || true
    unset 'children[-1]'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# --- the experiment ---------------------------------------------------------------------------

awk -v rows="$rows" 'BEGIN {
    split("order parcel invoice refund ticket", items, " ")
    print "id,query,expected"
    for (i = 0; i < rows; i++) {
        item = items[i % 5 + 1]
        printf "q%d,Hello! Where is my %s %d? I asked last week and have heard nothing since.,%s %d\n", i, item, i, item, i
    }
}' >"$work/dataset.csv"
start_child "$work/mock0.out" "$runner" mock-server --port 0 --latency-ms 0
mock0=$url
start_child "$work/mock50.out" "$runner" mock-server --port 0 --latency-ms 50
mock50=$url

# One experiment on a fresh store; prints its wall time in seconds (the process, spawn to exit).
experiment() {
    local db=$1 mock=$2
    "$runner" --db "$db" prompt create bench --model mock-model \
        --template $'You are a support agent. Answer briefly.\nCustomer query: {{query}}' >/dev/null
    local start=$EPOCHREALTIME
    OPENAI_API_KEY='' NO_COLOR=1 "$runner" --db "$db" experiment --prompt bench \
        --dataset "$work/dataset.csv" --base-url "$mock" --concurrency "$concurrency" \
        --eval icontains --no-cache --json >"$work/experiment.json" 2>"$work/experiment.err" || {
        cat "$work/experiment.err" >&2
        exit 3
    }
    local end=$EPOCHREALTIME
    # Every result must be in the store: ok + errored (computed from the store) = rows.
    local ok errored
    ok=$(tr -d ' \n' <"$work/experiment.json" | grep -o '"ok":[0-9]*' | head -n 1 | cut -d: -f2)
    errored=$(tr -d ' \n' <"$work/experiment.json" | grep -o '"errored":[0-9]*' | head -n 1 | cut -d: -f2)
    if [ "$((ok + errored))" != "$rows" ]; then
        echo "error: $db stored $ok ok + $errored errored results, not $rows" >&2
        exit 3
    fi
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", e - s }'
}

for latency in 0 50; do
    mock=$mock0
    [ "$latency" = 50 ] && mock=$mock50
    for run in $(seq 1 "$runs"); do
        echo "experiment: $rows rows, latency $latency ms, concurrency $concurrency, run $run/$runs" >&2
        experiment "$work/exp.db" "$mock" >>"$work/exp$latency.sqlite"
        rm -f "$work"/exp.db*
        db_url=$(createdb "exp_${latency}_$run")
        experiment "$db_url" "$mock" >>"$work/exp$latency.postgres"
        dropdb "exp_${latency}_$run"
    done
done

# --- prompt show ------------------------------------------------------------------------------

# The store of the README's start-up figure (1,000 prompts, 10,000 versions, written by the
# bench harness), and the same copied into PostgreSQL.
echo "prompt show: building a store of 1,000 prompts and 10,000 versions" >&2
mkdir "$work/startup"
TMPDIR=$work/startup "$bench" --startup --startup-runs 1 --keep --runner "$runner" >/dev/null 2>"$work/startup.err"
show_db=$(ls "$work"/startup/runner-bench-*/startup.db)
show_url=$(createdb show)
"$runner" store copy --from "$show_db" --to "$show_url" >/dev/null

# Prints the median wall time in ms of SHOW_RUNS runs of the command (hyperfine when installed).
show_median_ms() {
    if command -v hyperfine >/dev/null; then
        hyperfine -N --warmup 3 --runs "$show_runs" --style none \
            --export-csv "$work/show.csv" "$*" >/dev/null 2>&1
        awk -F, 'NR == 2 { printf "%.2f\n", $4 * 1000 }' "$work/show.csv"
    else
        "$@" >/dev/null && "$@" >/dev/null && "$@" >/dev/null
        for _ in $(seq 1 "$show_runs"); do
            local start=$EPOCHREALTIME
            "$@" >/dev/null
            local end=$EPOCHREALTIME
            awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f\n", (e - s) * 1000 }'
        done | median
    fi
}
for run in $(seq 1 "$runs"); do
    echo "prompt show: $show_runs runs each, run $run/$runs" >&2
    show_median_ms "$runner" --db "$show_db" prompt show prompt-0500 --tag production >>"$work/show.sqlite"
    show_median_ms "$runner" --db "$show_url" prompt show prompt-0500 --tag production >>"$work/show.postgres"
done

# --- runner serve -----------------------------------------------------------------------------

token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'load:%s\n' "$token" >"$work/tokens.txt"
serve_url=$(createdb serve)
"$runner" --db "$work/serve.db" prompt create support_greeting --model gpt-4o-mini \
    --template 'You are a support agent for {{company_name}}. Customer query: {{query}}' >/dev/null
"$runner" --db "$work/serve.db" tag set support_greeting production --version 1 --force -m 'load test' >/dev/null
"$runner" store copy --from "$work/serve.db" --to "$serve_url" >/dev/null

# Prints requests/s and p99 ms of SERVE_SECONDS of load on the tag lookup.
serve_load() {
    start_child "$work/serve.out" "$runner" --db "$1" serve --bind 127.0.0.1:0 --token-file "$work/tokens.txt"
    "$load" "$url/v1/prompts/support_greeting/tags/production" --token "$token" \
        --connections "$connections" --seconds "$serve_seconds" >"$work/load.out"
    stop_last_child
    grep -q 'non-200 0,' "$work/load.out" || {
        cat "$work/load.out" >&2
        exit 3
    }
    local rps p99
    rps=$(grep -o '[0-9]* requests/s' "$work/load.out" | cut -d' ' -f1)
    p99=$(grep -o 'p99 [0-9.]*' "$work/load.out" | cut -d' ' -f2)
    echo "$rps $p99"
}
for run in $(seq 1 "$runs"); do
    echo "serve: $connections connections, $serve_seconds s, run $run/$runs" >&2
    serve_load "$work/serve.db" >>"$work/serve.sqlite"
    serve_load "$serve_url" >>"$work/serve.postgres"
done

# --- the report -------------------------------------------------------------------------------

per_run() { tr '\n' ' ' <"$1" | sed 's/ $//; s/ /, /g'; }
m() { cut -d' ' -f1 "$1" | median; }

exp0_sqlite=$(awk -v r="$rows" '{ print r / $1 }' "$work/exp0.sqlite" | median)
exp0_pg=$(awk -v r="$rows" '{ print r / $1 }' "$work/exp0.postgres" | median)
exp50_sqlite=$(m "$work/exp50.sqlite")
exp50_pg=$(m "$work/exp50.postgres")
show_sqlite=$(m "$work/show.sqlite")
show_pg=$(m "$work/show.postgres")
serve_sqlite=$(m "$work/serve.sqlite")
serve_pg=$(m "$work/serve.postgres")
serve_p99_sqlite=$(cut -d' ' -f2 "$work/serve.sqlite" | median)
serve_p99_pg=$(cut -d' ' -f2 "$work/serve.postgres" | median)
pool=$(grep -o 'DEFAULT_POOL_SIZE: usize = [0-9]*' src/store/postgres/conninfo.rs | grep -o '[0-9]*$')

verdict() { # verdict CONDITION(awk): yes, or **no**
    if awk "BEGIN { exit !($1) }"; then echo "yes"; else echo "**no**"; fi
}
v1=$(verdict "$exp0_pg >= 0.5 * $exp0_sqlite")
v2=$(verdict "$exp50_pg <= 1.02 * $exp50_sqlite")
v3=$(verdict "$show_pg < 15")
v4=$(verdict "$serve_pg >= 5000")
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }

echo
echo "$(uname -sr), $(nproc) cores, $pg_version on 127.0.0.1 (defaults: fsync on, synchronous_commit on),"
echo "SQLite in WAL mode, synchronous=NORMAL; runner $(git rev-parse --short HEAD 2>/dev/null || echo '?'); median of $runs runs"
echo "load average (1, 5, 15 min): $load_before before, $(uptime | sed 's/.*load average: //') after"
echo
echo "| measurement | SQLite | PostgreSQL | PostgreSQL ÷ SQLite | target | met |"
echo "|---|---:|---:|---:|---|---|"
printf '| experiment, %s rows, latency 0, concurrency %s: rows/s | %.0f | %.0f | %s | PostgreSQL ≥ ½ SQLite | %s |\n' \
    "$rows" "$concurrency" "$exp0_sqlite" "$exp0_pg" "$(ratio "$exp0_sqlite" "$exp0_pg")" "$v1"
printf '| experiment, %s rows, latency 50 ms, concurrency %s: wall s | %.2f | %.2f | %s | PostgreSQL within 2 %% of SQLite | %s |\n' \
    "$rows" "$concurrency" "$exp50_sqlite" "$exp50_pg" "$(ratio "$exp50_sqlite" "$exp50_pg")" "$v2"
printf '| `prompt show NAME --tag production` (1,000 prompts, 10,000 versions): median ms of %s | %.2f | %.2f | %s | PostgreSQL < 15 ms | %s |\n' \
    "$show_runs" "$show_sqlite" "$show_pg" "$(ratio "$show_sqlite" "$show_pg")" "$v3"
printf '| `runner serve`, GET …/tags/production, %s connections: requests/s (p99 ms) | %.0f (%.2f) | %.0f (%.2f) | %s | PostgreSQL ≥ 5,000 | %s |\n' \
    "$connections" "$serve_sqlite" "$serve_p99_sqlite" "$serve_pg" "$serve_p99_pg" "$(ratio "$serve_sqlite" "$serve_pg")" "$v4"
echo
echo "per run (SQLite; PostgreSQL):"
echo "- latency 0, wall s: $(per_run "$work/exp0.sqlite"); $(per_run "$work/exp0.postgres")"
echo "- latency 50 ms, wall s: $(per_run "$work/exp50.sqlite"); $(per_run "$work/exp50.postgres")"
echo "- prompt show, median ms: $(per_run "$work/show.sqlite"); $(per_run "$work/show.postgres")"
echo "- serve, requests/s and p99 ms: $(per_run "$work/serve.sqlite"); $(per_run "$work/serve.postgres")"
echo
echo "results are written in batches of up to 512: one INSERT … SELECT FROM unnest(array parameters)"
echo "per batch for the results, one for their scores, one for the cache entries, in one transaction"
echo "connection pool: at most $pool connections per runner process (pool_size= in the URL)"
case "$v1 $v2 $v3 $v4" in *no*) exit 1 ;; esac
