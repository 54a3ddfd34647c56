#!/usr/bin/env bash
# Production traces from real clients: an application written with the official `openai`
# client, instrumented by OpenInference and exported with OpenTelemetry's OTLP/HTTP exporter
# (every package pinned in traces-requirements.txt), fetches its prompt through the Phoenix
# client from `runner serve` and calls `runner mock-server`, a share of its calls failing;
# it sends Phoenix span annotations, and a release job moves `production` from v1 to v2 half
# way. `runner production PROMPT --json` must then count exactly what the application sent.
# A second, smaller application sets tracing up with arize-phoenix-otel's `register` instead.
#
# Fresh store, free loopback ports, tokens of each kind (write, deploy, ingest); the
# application holds only its ingest token. Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

venv=${RUNNER_TRACES_VENV:-target/traces-venv}
requirements=tests/compat/traces-requirements.txt
# The mock's delay before each answer, so spans have a latency to measure.
latency_ms=3

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
python=$(cd "$venv/bin" && pwd)/python

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner
app=$PWD/tests/compat/traced_app.py
checker=$PWD/tests/compat/traces_check.py

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
cd "$work"

new_token() { "$python" -c 'import secrets; print(secrets.token_hex(24))'; }
support_token=$(new_token)
welcome_token=$(new_token)
deploy_token=$(new_token)
printf 'ci:%s\ndeploy:release:%s\ningest:support-bot:%s\ningest:welcome-bot:%s\n' \
    "$(new_token)" "$deploy_token" "$support_token" "$welcome_token" >tokens.txt

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

r() { RUNNER_AUTHOR=setup "$runner" --db "$work/runner.db" "$@"; }

cat >v1.json <<'EOF'
[{"role": "system", "content": "You are a support agent for {{company}}."},
 {"role": "user", "content": "{{query}}"}]
EOF
cat >v2.json <<'EOF'
[{"role": "system", "content": "You are a support agent for {{company}}. Answer in two sentences, friendly and concrete."},
 {"role": "user", "content": "Customer message: {{query}}"}]
EOF
r prompt create greet --messages-file v1.json --model mock-model --tag production >/dev/null
r prompt update greet --messages-file v2.json -m "shorter, friendlier answers" >/dev/null
r prompt create welcome --messages-file v1.json --model mock-model --tag production >/dev/null

# A request that asks to escalate makes the endpoint fail: one call in seven.
echo '[{"pattern": "(?i)escalate", "reply": "upstream overloaded", "status": 500}]' >rules.json
start mock.out "$runner" mock-server --port 0 --latency-ms "$latency_ms" --responses rules.json
mock_url=$url
start serve.out "$runner" --db "$work/runner.db" serve --bind 127.0.0.1:0 --token-file tokens.txt
serve_url=$url
echo "runner serve at $serve_url, runner mock-server at $mock_url"

export RUNNER_URL=$serve_url MOCK_URL=$mock_url
RUNNER_INGEST_TOKEN=$support_token RUNNER_DEPLOY_TOKEN=$deploy_token \
    "$python" "$app" --setup manual --prompt greet --service support-bot --project support \
    --requests 300 --fetch-every 25 --release-after 150 --ledger "$work/greet.json"
RUNNER_INGEST_TOKEN=$welcome_token \
    "$python" "$app" --setup register --prompt welcome --service welcome-bot --project welcome \
    --requests 40 --fetch-every 20 --ledger "$work/welcome.json"

"$python" "$checker" --runner "$runner" --db "$work/runner.db" \
    --run "greet,api:support-bot,$work/greet.json" --run "welcome,api:welcome-bot,$work/welcome.json"
