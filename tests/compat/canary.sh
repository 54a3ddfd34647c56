#!/usr/bin/env bash
# Canary rollouts decided by a real application's traffic: canary_app.py (the Phoenix client
# fetching `production` with a unit header per user, the official `openai` client against
# `runner mock-server`, OpenInference traces over OTLP with an ingest token) runs while a
# release job started the rollout over HTTP with a deploy token. Two scenarios, each on its
# own prompt:
#
# - a worse candidate (the mock fails its calls about orders, three in seven against the
#   baseline's one in seven): the server rolls it back by itself and production never moves;
# - an equal candidate (one call in seven fails on either arm): it is stepped up 10 → 50 →
#   100 % and completes, and production moves to it as the server's promotion.
#
# canary_check.py then checks each outcome, that users kept their arm, and that the traces
# credit every request and error to the version actually served. Needs python3 and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

app=$PWD/tests/compat/canary_app.py
checker=$PWD/tests/compat/canary_check.py
# shellcheck source=tests/compat/apps.sh
. tests/compat/apps.sh
cd "$work"

ingest_token=$(new_token)
deploy_token=$(new_token)
printf 'ci:%s\ndeploy:release:%s\ningest:support-bot:%s\n' \
    "$(new_token)" "$deploy_token" "$ingest_token" >tokens.txt

r() { RUNNER_AUTHOR=setup "$runner" --db "$work/runner.db" "$@"; }

message() {
    printf '[{"role": "system", "content": "You are a support agent for {{company}}."},
 {"role": "user", "content": "%s{{query}}"}]\n' "$1"
}
message '' >v1.json
message 'Ticket (priority): ' >worse.json
message 'Customer says: ' >equal.json
for scenario in worse equal; do
    r prompt create "support_$scenario" --messages-file v1.json --model mock-model \
        --tag production >/dev/null
    r prompt update "support_$scenario" --messages-file "$scenario.json" \
        -m "the $scenario candidate" >/dev/null
done

# Every request asking to escalate fails, on any version: one in seven. The worse candidate's
# framing also fails every question about an order: two in seven more.
cat >rules.json <<'RULES'
[{"pattern": "(?i)escalate", "reply": "upstream overloaded", "status": 500},
 {"pattern": "^Ticket \\(priority\\): .*order", "reply": "context too long", "status": 500}]
RULES
start mock.out "$runner" mock-server --port 0 --latency-ms 2 --responses rules.json
mock_url=$url
start serve.out "$runner" --db "$work/runner.db" serve --bind 127.0.0.1:0 --token-file tokens.txt
serve_url=$url
echo "runner serve at $serve_url, runner mock-server at $mock_url"

plan='{"candidate": "2", "steps": [10, 50, 100], "step_after": "200 requests",
       "unit_header": "X-Runner-Unit", "metrics": ["error_rate"], "non_inferior": 0.1,
       "message": "release 42"}'
export RUNNER_URL=$serve_url MOCK_URL=$mock_url RUNNER_INGEST_TOKEN=$ingest_token \
    RUNNER_DEPLOY_TOKEN=$deploy_token PYTHONPATH
PYTHONPATH=$(dirname "$app")
for scenario in worse equal; do
    "$python" "$app" --prompt "support_$scenario" --plan "$plan" --service support-bot \
        --users 100 --max-requests 12000 --ledger "$work/$scenario.json"
done

"$python" "$checker" --runner "$runner" --db "$work/runner.db" \
    --run "support_worse,rolled_back,$work/worse.json" \
    --run "support_equal,completed,$work/equal.json"
