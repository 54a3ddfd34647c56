#!/usr/bin/env bash
# Compatibility tests with the real Phoenix client: builds runner, installs the pinned
# arize-phoenix-client into a virtualenv, then against `runner serve` (a free loopback port, a
# token, a fresh store each):
#   1. phoenix_client.py: the client's calls with runner's own checks (tag history, the CLI),
#      phoenix_datasets.py: its datasets resource (uploads, reads, versions); and
#      phoenix_experiments.py: run_experiment and evaluate_experiment with the gate after;
#   2. differential.py, whose answers compare.py checks against the answers a real Phoenix server
#      gave to the same script (tests/compat/phoenix-fixture.json, re-recorded by record.sh).
# Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

PHOENIX_CLIENT_VERSION=3.5.0
venv=${RUNNER_COMPAT_VENV:-target/compat-venv}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "arize-phoenix-client==$PHOENIX_CLIENT_VERSION" "pandas==2.3.3" "openai==3.63.0"

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner

# shellcheck source=tests/compat/children.sh
. tests/compat/children.sh

token=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
deploy_token=$("$venv/bin/python" -c 'import secrets; print(secrets.token_hex(24))')
printf 'compat:%s\ndeploy:release:%s\n' "$token" "$deploy_token" >"$work/tokens.txt"

# Starts `runner serve` on store $1 and sets $url.
start_runner() {
    start "$1.stdout" "$runner" --db "$1" serve --bind 127.0.0.1:0 --token-file "$work/tokens.txt"
}

start_runner "$work/runner.db"
echo "runner serve at $url, arize-phoenix-client $PHOENIX_CLIENT_VERSION"
RUNNER_URL=$url RUNNER_TOKEN=$token RUNNER_DEPLOY_TOKEN=$deploy_token RUNNER_BIN=$runner RUNNER_DB=$work/runner.db \
    "$venv/bin/python" tests/compat/phoenix_client.py
echo "== the client's datasets against runner serve at $url"
RUNNER_URL=$url RUNNER_TOKEN=$token RUNNER_BIN=$runner RUNNER_DB=$work/runner.db \
    "$venv/bin/python" tests/compat/phoenix_datasets.py

# The workflow's own experiment code: run_experiment with a task that calls the OpenAI client
# (against runner's mock endpoint), then the gate on the experiments it made.
mock_pid=$("$runner" mock-server --port 0 --detach 2>"$work/mock.err")
pids+=("$mock_pid")
mock_url=$(grep -o 'http://[^ ,]*' "$work/mock.err" | head -1)
echo "== the workflow's experiments against runner serve at $url, the model at $mock_url"
RUNNER_URL=$url RUNNER_TOKEN=$token RUNNER_BIN=$runner RUNNER_DB=$work/runner.db RUNNER_MOCK_URL=$mock_url \
    "$venv/bin/python" tests/compat/phoenix_experiments.py

start_runner "$work/differential.db"
echo "== the differential script against runner serve at $url"
"$venv/bin/python" tests/compat/differential.py --url "$url" --token "$token" \
    --out "$work/runner-answers.json"
"$venv/bin/python" tests/compat/compare.py tests/compat/phoenix-fixture.json \
    "$work/runner-answers.json" --max-different "${RUNNER_COMPAT_MAX_DIFFERENT:-0}"
