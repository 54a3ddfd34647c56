#!/usr/bin/env bash
# The tag lookup applications make, `GET /v1/prompts/NAME/tags/production`, at CONNECTIONS
# connections (32), side by side in one run on one machine against
#   runner serve (release build) on SQLite,
#   runner serve on PostgreSQL (a throwaway cluster),
#   a real Phoenix server (PyPI arize-phoenix, pinned; its default SQLite store),
# each serving the same prompt (one chat version, tagged production), loaded by the same client
# (examples/serve_load.rs: keep-alive connections sending the GET back to back) for SECONDS after
# a second of warm-up. Prints each server's requests/s and latency, the answer's size, and
# runner's rate as a multiple of Phoenix's.
#
# Needs curl, PostgreSQL's programs (PG_BIN, default /usr/lib/postgresql/15/bin), python3 with
# venv and PyPI (Phoenix goes into target/phoenix-venv, as tests/compat/record.sh does).
# Everything listens on 127.0.0.1; a trap stops every process it started and removes its files.
#
#   benches/serve_vs_phoenix.sh                     # CONNECTIONS=32 SECONDS_PER_RUN=10
set -euo pipefail
cd "$(dirname "$0")/.."

connections=${CONNECTIONS:-32}
seconds=${SECONDS_PER_RUN:-10}
pg_bin=${PG_BIN:-/usr/lib/postgresql/15/bin}

for tool in curl "$pg_bin/initdb" "$pg_bin/psql"; do
    command -v "$tool" >/dev/null || {
        echo "error: $tool is missing" >&2
        echo "hint: apt-get install curl postgresql-15, or PG_BIN=/path/to/postgresql/bin $0" >&2
        exit 2
    }
done

echo "building: cargo build --release --bin runner --example serve_load" >&2
cargo build --release --quiet --bin runner --example serve_load
runner=$PWD/target/release/runner
load=$PWD/target/release/examples/serve_load

load_before=$(uptime | sed 's/.*load average: //')
bench=servebench
# shellcheck source=benches/pg_cluster.sh
. benches/pg_cluster.sh
# shellcheck source=benches/servers.sh
. benches/servers.sh
install_phoenix
psql_in() { "$pg_bin/psql" -X -q -t -A -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U runner -d "$1" -c "$2"; }

# The one prompt every server serves: a system and a user message, mustache, gpt-4o-mini.
cat >"$work/messages.json" <<'EOF'
[
  {"role": "system", "content": "You are a support agent for {{company_name}}. Be professional, friendly, and concise."},
  {"role": "user", "content": "Customer query: {{query}}"}
]
EOF
cat >"$work/phoenix-prompt.json" <<'EOF'
{
  "prompt": {"name": "support_greeting", "description": "load test"},
  "version": {
    "model_provider": "OPENAI",
    "model_name": "gpt-4o-mini",
    "template": {"type": "chat", "messages": [
      {"role": "system", "content": "You are a support agent for {{company_name}}. Be professional, friendly, and concise."},
      {"role": "user", "content": "Customer query: {{query}}"}
    ]},
    "template_type": "CHAT",
    "template_format": "MUSTACHE",
    "invocation_parameters": {"type": "openai", "openai": {"temperature": 0.7}}
  }
}
EOF


# Loads $2 (a lookup URL) and keeps the report as $work/$1.txt, with the answer's size.
measure() {
    local name=$1 target=$2
    local status
    status=$(curl -s -o "$work/$name.body" -w '%{http_code}' "$target")
    [ "$status" = 200 ] || {
        echo "error: $name answered $status to $target" >&2
        cat "$work/$name.body" >&2
        exit 3
    }
    "$load" "$target" --connections "$connections" --seconds "$seconds" >"$work/$name.txt"
    wc -c <"$work/$name.body" >"$work/$name.bytes"
}

runner_run() {
    local name=$1 db=$2
    "$runner" --db "$db" prompt create support_greeting --messages-file "$work/messages.json" \
        --model gpt-4o-mini --param temperature=0.7 --tag production >/dev/null 2>&1
    start_child "$work/$name.serve" "$runner" --db "$db" serve --bind 127.0.0.1:0
    measure "$name" "$url/v1/prompts/support_greeting/tags/production"
    stop_last_child
}

echo "runner serve on SQLite" >&2
runner_run sqlite "$work/runner.db"

echo "runner serve on PostgreSQL" >&2
psql_in postgres "CREATE DATABASE lookups" >/dev/null
runner_run postgres "postgres://runner@127.0.0.1:$port/lookups"

echo "Phoenix $PHOENIX_VERSION" >&2
start_phoenix "$work/phoenix" "$work/phoenix.log"
phoenix=http://127.0.0.1:$phoenix_port
version_id=$(curl -sf -X POST -H 'Content-Type: application/json' \
    --data @"$work/phoenix-prompt.json" "$phoenix/v1/prompts" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["data"]["id"])')
curl -sf -X POST -H 'Content-Type: application/json' --data '{"name": "production"}' \
    "$phoenix/v1/prompt_versions/$version_id/tags" >/dev/null
measure phoenix "$phoenix/v1/prompts/support_greeting/tags/production"
stop_last_child
load_after=$(uptime | sed 's/.*load average: //')

# --- the table --------------------------------------------------------------------------------

rate() { sed -n 's/.* \([0-9]*\) requests\/s$/\1/p' "$work/$1.txt"; }
p() { sed -n "s/.* $2 \([0-9.]*\).*/\1/p" "$work/$1.txt" | head -n 1; }
non_200() { sed -n 's/.*non-200 \([0-9]*\),.*/\1/p' "$work/$1.txt"; }
phoenix_rate=$(rate phoenix)

echo
echo "GET /v1/prompts/support_greeting/tags/production, $connections connections, ${seconds} s after 1 s of warm-up, one run"
echo "runner $("$runner" --version | awk '{print $2}') (release), Phoenix $PHOENIX_VERSION, $("$pg_bin/postgres" --version); $(nproc) cores"
echo "load average before: $load_before; after: $load_after"
echo
echo "| server | requests/s | p50 ms | p99 ms | non-200 | answer bytes | × Phoenix |"
echo "|---|---|---|---|---|---|---|"
for name in sqlite postgres phoenix; do
    case $name in
        sqlite) label="runner serve, SQLite" ;;
        postgres) label="runner serve, PostgreSQL" ;;
        phoenix) label="Phoenix $PHOENIX_VERSION, SQLite" ;;
    esac
    ratio=$(awk -v a="$(rate "$name")" -v b="$phoenix_rate" 'BEGIN { printf "%.1f", a / b }')
    echo "| $label | $(rate "$name") | $(p "$name" p50) | $(p "$name" p99) | $(non_200 "$name") | $(cat "$work/$name.bytes") | $ratio |"
done
