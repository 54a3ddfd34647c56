#!/usr/bin/env bash
# Production traces from real clients: an application written with the official `openai`
# client, instrumented by OpenInference and exported with OpenTelemetry's OTLP/HTTP exporter
# (every package pinned in traces-requirements.txt), fetches its prompt through the Phoenix
# client from `runner serve` and calls `runner mock-server`, a share of its calls failing;
# it sends Phoenix span annotations, and a release job moves `production` from v1 to v2 half
# way. `runner production PROMPT --json` must then count exactly what the application sent.
# A second, smaller application sets tracing up with arize-phoenix-otel's `register` instead,
# and README's Python snippet runs as written (its addresses and token filled in).
#
# Fresh store, free loopback ports, tokens of each kind (write, deploy, ingest); the
# application holds only its ingest token. Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

app=$PWD/tests/compat/traced_app.py
checker=$PWD/tests/compat/traces_check.py
readme=$PWD/docs/production.md
# The mock's delay before each answer, so spans have a latency to measure.
latency_ms=3
# shellcheck source=tests/compat/apps.sh
. tests/compat/apps.sh
cd "$work"

support_token=$(new_token)
welcome_token=$(new_token)
deploy_token=$(new_token)
printf 'ci:%s\ndeploy:release:%s\ningest:support-bot:%s\ningest:welcome-bot:%s\n' \
    "$(new_token)" "$deploy_token" "$support_token" "$welcome_token" >tokens.txt

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
r prompt create customer_support_greeting --model mock-model --tag production \
    --template 'You are a support agent for {{company_name}}. Customer: {{query}}' >/dev/null

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

# README's snippet, as written but for its two addresses and its token.
awk '/^### Sending traces from your application$/ { section = 1 }
     section && /^```python$/ { block = 1; next }
     block && /^```$/ { exit }
     block { print }' "$readme" >readme_app.py
sed -i -e "s|\"http://127.0.0.1:6006\"|\"$serve_url\"|" -e "s|\"http://127.0.0.1:8089/v1\"|\"$mock_url\"|" \
    -e "s|\"INGEST_TOKEN\"|\"$support_token\"|" readme_app.py
for placed in "$serve_url" "$mock_url" "$support_token"; do
    grep -q "\"$placed\"" readme_app.py || {
        echo "error: README's Python snippet under 'Sending traces from your application' no longer" >&2
        echo "names http://127.0.0.1:6006, http://127.0.0.1:8089/v1 and INGEST_TOKEN as this test expects" >&2
        exit 1
    }
done
echo "README's snippet answers: $(OPENAI_API_KEY=unused "$python" readme_app.py)"

# What a person reads after the run (README's transcript under "Sending traces from your
# application" comes from here); the checker below waits for the writer, so wait here too.
sleep 3
echo "\$ runner production greet --since 1h"
"$runner" --db "$work/runner.db" production greet --since 1h

"$python" "$checker" --runner "$runner" --db "$work/runner.db" \
    --run "greet,api:support-bot,$work/greet.json" --run "welcome,api:welcome-bot,$work/welcome.json" \
    --readme customer_support_greeting,api:support-bot
