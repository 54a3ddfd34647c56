#!/usr/bin/env bash
# runner against a third-party OpenAI-compatible server: LiteLLM's proxy (pinned, from PyPI)
# with `mock_response` models, on a free loopback port. Checks that an experiment, its own
# threshold, the fail-fast stop on a misspelled model, `runner try` (streamed) and a gated
# promotion behave against it as they do against runner's own mock. Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

LITELLM_VERSION=1.80.0
venv=${RUNNER_LITELLM_VENV:-target/litellm-venv}

# A venv moved from where it was made (a copied target folder) keeps scripts whose first line
# names the old interpreter: made again.
interpreter=$(head -n 1 "$venv/bin/litellm" 2>/dev/null | sed 's/^#!//') || interpreter=
if [ ! -x "$venv/bin/litellm" ] || [ ! -x "$interpreter" ]; then
    python3 -m venv --clear "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner

work=$(mktemp -d)
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/config.yaml" <<'EOF'
model_list:
  - model_name: answers-billing
    litellm_params:
      model: openai/answers-billing
      mock_response: "billing"
  - model_name: answers-other
    litellm_params:
      model: openai/answers-other
      mock_response: "I could not say."
EOF

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# No proxy database, no telemetry: the proxy answers from its config alone.
LITELLM_TELEMETRY=False DISABLE_SCHEMA_UPDATE=true \
    "$venv/bin/litellm" --config "$work/config.yaml" --host 127.0.0.1 --port "$port" \
    >"$work/proxy.log" 2>&1 &
pid=$!
base="http://127.0.0.1:$port/v1"
ready=
for _ in $(seq 1 120); do
    if python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/health/liveliness', timeout=1)" 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
done
if [ -z "$ready" ]; then
    echo "LiteLLM's proxy did not start:" >&2
    cat "$work/proxy.log" >&2
    exit 1
fi
echo "LiteLLM $LITELLM_VERSION proxy at $base"

passed=0
failed=0
check() { # description, then a command that must succeed
    local what=$1
    shift
    if "$@"; then
        passed=$((passed + 1))
        echo "ok   $what"
    else
        failed=$((failed + 1))
        echo "FAIL $what"
    fi
}

r() { "$runner" --db "$work/runner.db" "$@"; }
cd "$work"
printf 'id,ticket,expected\n1,I was charged twice,billing\n2,Refund my order,billing\n3,Invoice missing,billing\n4,Card declined,billing\n5,Double charge,billing\n' >tickets.csv

r prompt create triage --model answers-other --param temperature=0 --param max_tokens=16 \
    --template 'Classify: {{ticket}}' --tag production >/dev/null
r prompt update triage --model answers-billing -m "a model that knows billing" --tag staging >/dev/null

# An experiment through the proxy: every row answered, tokens recorded.
r experiment --prompt triage --tag staging --dataset tickets.csv --base-url "$base" --json >exp.json
check "an experiment through LiteLLM answers every row" \
    python3 -c 'import json,sys; s=json.load(open("exp.json"))["summary"]; sys.exit(0 if s["ok"] == 5 and s["errored"] == 0 else 1)'
check "LiteLLM's token usage is recorded" \
    python3 -c 'import json,sys; s=json.load(open("exp.json"))["summary"]; sys.exit(0 if s["prompt_tokens"] > 0 and s["completion_tokens"] > 0 else 1)'
r experiment show last --rows --json >rows.json
check "every stored answer is LiteLLM's mock_response" \
    python3 -c 'import json,sys; rows=json.load(open("rows.json"))["rows"]; sys.exit(0 if len(rows) == 5 and all(r["output"] == "billing" for r in rows) else 1)'

# The experiment's own threshold: a model that answers wrong exits 1.
set +e
r experiment --prompt triage --tag production --dataset tickets.csv --base-url "$base" \
    --min-pass-rate 0.9 >/dev/null 2>threshold.err
code=$?
set -e
check "below --min-pass-rate the experiment exits 1 (got $code)" test "$code" -eq 1
check "the failed criterion is named" grep -q "check failed: min pass rate" threshold.err

# A misspelled model: LiteLLM answers 400 to each call; runner stops early with its words.
before=$(r experiment list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
set +e
r experiment --prompt triage --tag staging --dataset tickets.csv --base-url "$base" \
    --model answers-biling >/dev/null 2>misspelled.err
code=$?
set -e
after=$(r experiment list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "a misspelled model stops the run with exit 3 (got $code)" test "$code" -eq 3
check "the error carries LiteLLM's own message" grep -q "Invalid model name" misspelled.err
check "the error has a hint" grep -q "^hint: " misspelled.err
check "the stopped run leaves no experiment behind ($before before, $after after)" test "$before" -eq "$after"

# runner try through LiteLLM: a streamed answer (LiteLLM streams a mock_response as chunks),
# then the two versions side by side; nothing is recorded.
experiments_before=$(r experiment list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
r try triage --tag production --var 'ticket=Card declined' --base-url "$base" --json >try.json
check "runner try through LiteLLM gets the streamed answer" \
    python3 -c 'import json,sys; t=json.load(open("try.json")); sys.exit(0 if t["output"] == "I could not say." and t["ttft_ms"] is not None and t["finish_reason"] == "stop" else 1)'
r try triage --tags production,staging --var 'ticket=Card declined' --base-url "$base" --json >sides.json
check "runner try --tags through LiteLLM answers both sides" \
    python3 -c 'import json,sys; t=json.load(open("sides.json")); sys.exit(0 if [s["output"] for s in t["sides"]] == ["I could not say.", "billing"] else 1)'
set +e
r try triage --tag staging --var 'ticket=x' --model answers-biling --base-url "$base" >/dev/null 2>try.err
code=$?
set -e
check "runner try with a misspelled model exits 3 with LiteLLM's words (got $code)" \
    sh -c "test $code -eq 3 && grep -q 'Invalid model name' try.err"
experiments_after=$(r experiment list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "runner try records no experiment" test "$experiments_before" -eq "$experiments_after"

# The gate through LiteLLM: staging (right) against production (wrong) passes and moves.
set +e
r promote --prompt triage --from staging --to production --dataset tickets.csv \
    --base-url "$base" --eval icontains --min-pass-rate 0.9 >promote.out 2>&1
code=$?
set -e
check "promote through LiteLLM passes and exits 0 (got $code)" test "$code" -eq 0
check "production moved to v2" grep -q "gate PASSED, tag moved: triage staging v2" promote.out

echo "$passed passed, $failed failed"
test "$failed" -eq 0
