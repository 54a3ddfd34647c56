# Shared by traces.sh and canary.sh, which run real Python applications against `runner serve`:
# the pinned Python environment, the runner binary, tokens, and children.sh (a fresh working
# folder, children stopped on exit, starting a child that prints its address). Sourced from the
# project root; sets $python, $runner, $work.

venv=${RUNNER_TRACES_VENV:-target/traces-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/compat/traces-requirements.txt
python=$(cd "$venv/bin" && pwd)/python

cargo build --quiet
runner=$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug/runner

# shellcheck source=tests/compat/children.sh
. tests/compat/children.sh

new_token() { "$python" -c 'import secrets; print(secrets.token_hex(24))'; }

