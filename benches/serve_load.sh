#!/usr/bin/env bash
# Load figure for `runner serve`: GET /v1/prompts/NAME/tags/production with a bearer token, on
# loopback, from the serve_load example (and from wrk too when it is installed), first alone and
# then while the CLI keeps appending versions and moving the tag in the same store, then during
# a canary rollout (sticky units, then each lookup drawn between two versions; answered
# private, no-store).
# Not a test: it prints figures. Targets on 2 cores: >= 10,000 requests/s with p99 < 10 ms,
# and during a rollout >= 20,000 requests/s with p99 < 10 ms, beside the figure without one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${SECONDS_PER_RUN:-10}
connections=${CONNECTIONS:-32}

cargo build --release --quiet --bin runner --example serve_load
runner=$PWD/target/release/runner
load=$PWD/target/release/examples/serve_load

work=$(mktemp -d)
pid=
writer=
cleanup() {
    [ -n "$writer" ] && kill "$writer" 2>/dev/null || true
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export RUNNER_DB=$work/runner.db
"$runner" prompt create support_greeting --model gpt-4o-mini --param temperature=0.7 \
    --template 'You are a support agent for {{company_name}}. Customer query: {{query}}' >/dev/null
"$runner" tag set support_greeting production --version 1 --force -m 'load test' >/dev/null
token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
printf 'load:%s\n' "$token" >"$work/tokens.txt"

"$runner" serve --bind 127.0.0.1:0 --token-file "$work/tokens.txt" >"$work/stdout" 2>"$work/stderr" &
pid=$!
url=
for _ in $(seq 1 100); do
    url=$(grep -o 'http://[^ ]*' "$work/stdout" 2>/dev/null | head -n 1 || true)
    [ -n "$url" ] && break
    sleep 0.1
done
[ -n "$url" ] || { cat "$work/stderr" >&2; exit 1; }
target=$url/v1/prompts/support_greeting/tags/production
echo "server: $(head -n 1 "$work/stdout")"
echo

echo "== serve_load, readers only"
"$load" "$target" --token "$token" --connections "$connections" --seconds "$seconds"
echo

if command -v wrk >/dev/null; then
    echo "== wrk, readers only"
    wrk -t2 -c"$connections" -d"${seconds}s" --latency -H "Authorization: Bearer $token" "$target"
    echo
fi

echo "== serve_load while the CLI appends versions and moves production (200 writes, paced)"
(
    start=$(date +%s.%N)
    for n in $(seq 2 101); do
        "$runner" prompt update support_greeting --template "v$n for {{company_name}}: {{query}}" >/dev/null
        "$runner" tag set support_greeting production --version "$n" --force >/dev/null
        sleep 0.1 # spread the writes over the measured window
    done
    echo "$start $(date +%s.%N)" >"$work/writes"
) &
writer=$!
load_start=$(date +%s.%N)
"$load" "$target" --token "$token" --connections "$connections" --seconds "$seconds"
load_end=$(date +%s.%N)
wait "$writer" && writer=
read -r write_start write_end <"$work/writes"
awk -v ws="$write_start" -v we="$write_end" -v ls="$load_start" -v le="$load_end" 'BEGIN {
    printf "CLI writes: 200 in %.1f s, from %.1f s to %.1f s after the load started (load ran %.1f s)\n",
        we - ws, ws - ls, we - ls, le - ls }'
echo "production is now v$("$runner" tag list support_greeting --json |
    grep -o '"version_seq": *[0-9]*' | grep -o '[0-9]*$')"
echo

echo "== serve_load during a canary rollout, one unit per connection (X-Runner-Unit: unit-N, sticky)"
"$runner" canary start support_greeting --tag production --candidate 1 --steps 50,100 \
    --step-after 1h --unit-header X-Runner-Unit -m 'load test' >/dev/null
# The server reads running rollouts at most a second old.
sleep 1.5
"$load" "$target" --token "$token" --connections "$connections" --seconds "$seconds" \
    --unit-header X-Runner-Unit
echo

echo "== serve_load during the same rollout, no unit header (each lookup drawn between the arms)"
"$load" "$target" --token "$token" --connections "$connections" --seconds "$seconds"
"$runner" canary stop support_greeting -m 'load test over' >/dev/null
