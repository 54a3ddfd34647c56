#!/usr/bin/env bash
# Span ingest, side by side in one run on one machine: the same OTLP/HTTP protobuf batches of
# LLM spans (OpenInference's attributes, about 1 KB of messages plus the request and response
# bodies the instrumentation records) sent by SENDERS concurrent senders to
#   runner serve (release build) on SQLite,
#   runner serve on PostgreSQL (a throwaway cluster),
#   a real Phoenix server (PyPI arize-phoenix, pinned; its default SQLite store),
# each timed from the first request until every span is stored and queryable (the store's own
# row count, read through one connection kept open, equals what was sent). On runner serve it also times
# `GET /v1/prompts/NAME/tags/production` every 10 ms, idle and while the spans go in.
# Prints a Markdown table and each target, and exits 1 when a target is missed.
#
# Needs curl, PostgreSQL's programs (PG_BIN, default /usr/lib/postgresql/15/bin), python3
# with venv and PyPI (Phoenix goes into target/phoenix-venv, as tests/compat/record.sh does).
# Everything listens on 127.0.0.1; a trap stops every process it started and removes its files.
#
#   benches/traces.sh                # SPANS=102400 PHOENIX_SPANS=10240 SENDERS=4 BATCH=512 RUNS=1
#   RUNS=3 benches/traces.sh
set -euo pipefail
cd "$(dirname "$0")/.."

spans=${SPANS:-102400}
# Phoenix stores about a hundred spans a second on this kind of machine: a smaller batch count
# keeps its part of the run to minutes (its rate is flat once its queue has taken them).
phoenix_spans=${PHOENIX_SPANS:-10240}
senders=${SENDERS:-4}
batch=${BATCH:-512}
runs=${RUNS:-1}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

for tool in curl "$pg_bin/initdb" "$pg_bin/psql"; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing" >&2
        echo "hint: apt-get install postgresql-15, or PG_BIN=/path/to/postgresql/bin $0" >&2
        exit 2
    }
done

echo "building: cargo build --release --bin runner --example otlp_load" >&2
cargo build --release --quiet --bin runner --example otlp_load
runner=$PWD/target/release/runner
load=$PWD/target/release/examples/otlp_load

load_before=$(uptime | sed 's/.*load average: //')
bench=tracebench
# shellcheck source=benches/pg_cluster.sh
. benches/pg_cluster.sh
# shellcheck source=benches/servers.sh
. benches/servers.sh
install_phoenix
psql_in() { "$pg_bin/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U runner -d "$1" -c "$2"; }
pg_version=$("$pg_bin/postgres" --version)

# --- helpers ----------------------------------------------------------------------------------

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# A value of a JSON file: field FILE KEY [KEY...]
field() {
    python3 -c 'import json, sys
value = json.load(open(sys.argv[1]))
for key in sys.argv[2:]:
    value = value[key]
print(value)' "$@"
}

ingest_token=$(python3 -c 'import secrets; print(secrets.token_hex(24))')
printf 'ingest:bench:%s\n' "$ingest_token" >"$work/tokens.txt"

# One run of runner serve on the store $2 (named $1): the prompt, the server, the load.
runner_run() {
    local name=$1 db=$2 count=$3 out=$4
    "$runner" --db "$db" prompt create bench --model gpt-4o-mini --tag production \
        --template 'You are a support agent for {{company}}. Customer: {{query}}' >/dev/null
    start_child "$work/$name.serve" "$runner" --db "$db" serve --bind 127.0.0.1:0 \
        --token-file "$work/tokens.txt"
    "$load" "$url" --token "$ingest_token" --spans "$spans" --batch "$batch" \
        --senders "$senders" --version bench@v1 --count "$count" \
        --lookup /v1/prompts/bench/tags/production >"$out" 2>"$out.err" || {
        cat "$out.err" >&2
        exit 3
    }
    stop_last_child
}

for run in $(seq 1 "$runs"); do
    echo "runner serve on SQLite: $spans spans, run $run/$runs" >&2
    db=$work/sqlite-$run.db
    runner_run sqlite "$db" "sqlite:$db" "$work/sqlite-$run.json"
    rm -f "$db" "$db-wal" "$db-shm"

    echo "runner serve on PostgreSQL: $spans spans, run $run/$runs" >&2
    psql_in postgres "CREATE DATABASE traces_$run" >/dev/null
    runner_run postgres "postgres://runner@127.0.0.1:$port/traces_$run" \
        "postgres://runner@127.0.0.1:$port/traces_$run" \
        "$work/postgres-$run.json"
    psql_in postgres "DROP DATABASE traces_$run" >/dev/null

    echo "Phoenix $PHOENIX_VERSION: $phoenix_spans spans, run $run/$runs" >&2
    phoenix_dir=$work/phoenix-$run
    start_phoenix "$phoenix_dir" "$work/phoenix-$run.log"
    "$load" "http://127.0.0.1:$phoenix_port" --spans "$phoenix_spans" --batch "$batch" \
        --senders "$senders" --version bench@v1 --wait 1800 \
        --count "sqlite:$phoenix_dir/phoenix.db" \
        >"$work/phoenix-$run.json" 2>"$work/phoenix-$run.json.err" || {
        cat "$work/phoenix-$run.json.err" >&2
        exit 3
    }
    stop_last_child
    rm -rf "$phoenix_dir"
done
load_after=$(uptime | sed 's/.*load average: //')

# --- the table --------------------------------------------------------------------------------

per_second() { for run in $(seq 1 "$runs"); do field "$work/$1-$run.json" spans_per_second; done | median; }
lookup() { for run in $(seq 1 "$runs"); do field "$work/$1-$run.json" "$2" "$3"; done | median; }
retries() { for run in $(seq 1 "$runs"); do field "$work/$1-$run.json" retries_503; done | median; }
sqlite_rate=$(per_second sqlite)
postgres_rate=$(per_second postgres)
phoenix_rate=$(per_second phoenix)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
ms() { awk -v v="$1" 'BEGIN { printf "%.2f", v }'; }

echo
echo "$(nproc) cores, $pg_version, Phoenix $PHOENIX_VERSION; $spans spans to runner and $phoenix_spans to Phoenix in batches of $batch, $senders senders; median of $runs run(s)"
echo "load average before: $load_before; after: $load_after"
echo
echo "| target | spans/s | × Phoenix | 503s (median) | lookup p50 / p99 idle | lookup p50 / p99 ingesting |"
echo "|---|---:|---:|---:|---:|---:|"
for target in sqlite postgres; do
    rate=$(per_second $target)
    printf '| runner serve, %s | %.0f | %s | %s | %s / %s ms | %s / %s ms |\n' \
        "$([ $target = sqlite ] && echo SQLite || echo PostgreSQL)" "$rate" \
        "$(ratio "$rate" "$phoenix_rate")" "$(retries $target)" \
        "$(ms "$(lookup $target lookup_idle p50_ms)")" "$(ms "$(lookup $target lookup_idle p99_ms)")" \
        "$(ms "$(lookup $target lookup_ingesting p50_ms)")" \
        "$(ms "$(lookup $target lookup_ingesting p99_ms)")"
done
printf '| Phoenix %s (SQLite) | %.0f | 1.0 | %s | | |\n' "$PHOENIX_VERSION" "$phoenix_rate" "$(retries phoenix)"
echo
echo "every run (spans/s, seconds until stored):"
for target in sqlite postgres phoenix; do
    for run in $(seq 1 "$runs"); do
        printf '  %-8s run %d: %.0f spans/s, %.2f s (all sent after %.2f s), %s 503s\n' "$target" "$run" \
            "$(field "$work/$target-$run.json" spans_per_second)" \
            "$(field "$work/$target-$run.json" stored_seconds)" \
            "$(field "$work/$target-$run.json" send_seconds)" \
            "$(field "$work/$target-$run.json" retries_503)"
    done
done

echo
missed=0
target_line() { # description, met (1/0)
    if [ "$2" = 1 ]; then echo "target met:    $1"; else echo "target missed: $1"; missed=1; fi
}
sqlite_p99=$(lookup sqlite lookup_ingesting p99_ms)
postgres_p99=$(lookup postgres lookup_ingesting p99_ms)
target_line "runner serve on SQLite takes >= 20,000 spans/s ($(printf %.0f "$sqlite_rate"))" \
    "$(awk -v r="$sqlite_rate" 'BEGIN { print (r >= 20000) ? 1 : 0 }')"
target_line "runner serve on SQLite takes >= 10x Phoenix's rate ($(ratio "$sqlite_rate" "$phoenix_rate")x)" \
    "$(awk -v a="$sqlite_rate" -v b="$phoenix_rate" 'BEGIN { print (a >= 10 * b) ? 1 : 0 }')"
target_line "lookup p99 < 10 ms while ingesting, SQLite ($(ms "$sqlite_p99") ms)" \
    "$(awk -v p="$sqlite_p99" 'BEGIN { print (p < 10) ? 1 : 0 }')"
target_line "lookup p99 < 10 ms while ingesting, PostgreSQL ($(ms "$postgres_p99") ms)" \
    "$(awk -v p="$postgres_p99" 'BEGIN { print (p < 10) ? 1 : 0 }')"
exit "$missed"
