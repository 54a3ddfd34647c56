#!/usr/bin/env bash
# Running at a hosted API's limit: runner without a limit (the endpoint's x-ratelimit-* headers
# and 429s only), runner with --max-rpm, and promptfoo, each against a fresh `runner mock-server
# --rpm RPM --burst-secs BURST --latency-ms MS` (a hosted API's behaviour: BURST seconds' worth
# of requests at once, then RPM a minute, 429 with Retry-After beyond it, x-ratelimit-* headers
# on every answer), at the same concurrency, over the same rows.
#
#   bash benches/rate_limits.sh                       # 1,200 rpm, 10 s burst, 200 ms, -j 64, 1,600 rows
#   RPM=600 ROWS=400 bash benches/rate_limits.sh
#   PROMPTFOO_DIR=/tmp/pf bash benches/rate_limits.sh # reuse a promptfoo install
#
# For each run it prints: wall time, rows, requests the mock saw, 429s; over the whole run, the
# shortest wall time the limit allows (the burst at once, the rest at RPM, plus one latency) as a
# share of the wall time, and the share of requests answered 429; and over the steady state
# (after the first 10 s, read from the mock's /stats) the answered requests per minute as a share
# of RPM.
set -euo pipefail
cd "$(dirname "$0")/.."

RPM=${RPM:-1200}
BURST=${BURST:-10}
LATENCY=${LATENCY:-200}
CONCURRENCY=${CONCURRENCY:-64}
ROWS=${ROWS:-1600}
WARMUP=${WARMUP:-10}
PROMPTFOO_VERSION=${PROMPTFOO_VERSION:-0.121}

work=$(mktemp -d)
mock_pid=""
cleanup() {
    if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the runner: cargo build --release --bin runner" >&2
cargo build --release --quiet --bin runner
runner=$(pwd)/target/release/runner

pf_dir=${PROMPTFOO_DIR:-$work/promptfoo}
pf="$pf_dir/node_modules/.bin/promptfoo"
if [ ! -x "$pf" ]; then
    echo "installing promptfoo@$PROMPTFOO_VERSION into $pf_dir with npm ..." >&2
    mkdir -p "$pf_dir"
    (cd "$pf_dir" && npm install --no-audit --no-fund --loglevel=error "promptfoo@$PROMPTFOO_VERSION" >/dev/null)
fi
pf_version=$("$pf" --version 2>/dev/null | tail -1)

python3 - "$work/rows.csv" "$ROWS" <<'EOF'
import csv, sys
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "query", "expected"])
    for i in range(int(sys.argv[2])):
        w.writerow([f"r{i}", f"Where is my order {i}?", "order"])
EOF

stats() { curl -s "http://127.0.0.1:$port/stats"; }

start_mock() {
    mock_pid=$("$runner" mock-server --port 0 --rpm "$RPM" --burst-secs "$BURST" --latency-ms "$LATENCY" --detach 2>"$work/mock.err")
    port=$(grep -o 'http://127.0.0.1:[0-9]*' "$work/mock.err" | head -1 | sed 's/.*://')
}

stop_mock() {
    kill "$mock_pid" 2>/dev/null || true
    mock_pid=""
}

# Runs "$@" against a fresh mock; samples /stats after WARMUP seconds and at the end.
measure() {
    local label=$1
    shift
    start_mock
    local begin begin_ms
    begin=$(date +%s.%N)
    begin_ms=$(( $(date +%s%N) / 1000000 ))
    "$@" >"$work/out.txt" 2>"$work/err.txt" &
    local pid=$!
    local warm=""
    while kill -0 "$pid" 2>/dev/null; do
        if [ -z "$warm" ] && [ $(( $(date +%s%N) / 1000000 - begin_ms )) -ge $(( WARMUP * 1000 )) ]; then
            warm="$(date +%s.%N) $(stats)"
        fi
        sleep 0.2
    done
    local status=0
    wait "$pid" || status=$?
    local end
    end="$(date +%s.%N) $(stats)"
    stop_mock
    python3 - "$label" "$begin" "$warm" "$end" "$RPM" "$ROWS" "$status" "$BURST" "$LATENCY" <<'EOF'
import json, sys
label, begin, warm, end, rpm, rows, status, burst, latency = sys.argv[1:10]
def split(sample):
    at, _, body = sample.partition(" ")
    return float(at), json.loads(body)
t_end, s_end = split(end)
wall = t_end - float(begin)
rate = float(rpm) / 60.0
allowed = max(0.0, int(rows) - max(1.0, rate * float(burst))) / rate + float(latency) / 1000.0
line = f"| {label} | {rows} | {wall:.1f} | {allowed:.1f} | {100.0 * allowed / wall:.1f} % | {s_end['requests']} | {s_end['rate_limited']} | {100.0 * s_end['rate_limited'] / max(s_end['requests'], 1):.2f} % |"
if warm:
    t_w, s_w = split(warm)
    reqs = s_end["requests"] - s_w["requests"]
    limited = s_end["rate_limited"] - s_w["rate_limited"]
    answered = reqs - limited
    minutes = (t_end - t_w) / 60.0
    line += f" {answered / minutes:.0f} | {100.0 * answered / minutes / float(rpm):.1f} % | {100.0 * limited / max(reqs, 1):.2f} % |"
else:
    line += " run shorter than the warm-up | | |"
line += f" {status} |"
print(line)
EOF
}

"$runner" --db "$work/runner.db" prompt create support \
    --template "Answer the customer briefly: {{query}}" --model mock-model --param max_tokens=16 >/dev/null

cat >"$work/promptfooconfig.yaml" <<EOF
description: rate limit bench
prompts:
  - "Answer the customer briefly: {{query}}"
providers:
  - id: openai:chat:mock-model
    config:
      apiBaseUrl: http://127.0.0.1:PORT/v1
      apiKey: bench
      max_tokens: 16
tests: file://$work/rows.csv
defaultTest:
  assert:
    - type: icontains
      value: "{{expected}}"
EOF

run_promptfoo() {
    sed "s/PORT/$port/" "$work/promptfooconfig.yaml" >"$work/pf.yaml"
    (cd "$work" && PROMPTFOO_CONFIG_DIR="$work/pf-home" PROMPTFOO_DISABLE_TELEMETRY=1 \
        PROMPTFOO_DISABLE_UPDATE=1 OPENAI_API_KEY=bench NO_COLOR=1 \
        "$pf" eval --config "$work/pf.yaml" --no-cache --no-progress-bar --no-table \
        --max-concurrency "$CONCURRENCY")
}

run_runner() {
    "$runner" --db "$work/runner.db" experiment --prompt support --dataset "$work/rows.csv" \
        --base-url "http://127.0.0.1:$port/v1" --concurrency "$CONCURRENCY" --no-cache "$@"
}

echo
echo "mock: --rpm $RPM --burst-secs $BURST --latency-ms $LATENCY; concurrency $CONCURRENCY; $ROWS rows; steady state after ${WARMUP} s"
echo
echo "| client | rows | wall s | the limit allows s | allowed / wall | requests | 429s | 429 share | answered/min after ${WARMUP} s | of $RPM rpm | 429 share after ${WARMUP} s | exit |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
measure "runner (no limit given)" run_runner
measure "runner --max-rpm $RPM" run_runner --max-rpm "$RPM"
measure "promptfoo $pf_version" run_promptfoo
