#!/usr/bin/env bash
# runner's statistics against scipy and statsmodels: installs the pinned versions into
# target/stats-venv, recomputes the reference numbers on the fixed data of reference.py, checks
# that the committed fixture (reference.json, which `cargo test` checks on its own) still says
# the same, then runs runner's test against the fresh numbers. Needs python3 (with venv) and PyPI.
set -euo pipefail
cd "$(dirname "$0")/../.."

SCIPY_VERSION=1.17.1
STATSMODELS_VERSION=0.15.0
NUMPY_VERSION=2.4.6
venv=${RUNNER_STATS_VENV:-target/stats-venv}

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "numpy==$NUMPY_VERSION" "scipy==$SCIPY_VERSION" "statsmodels==$STATSMODELS_VERSION"

fresh=${CARGO_TARGET_DIR:-target}/stats-reference.json
"$venv/bin/python" tests/stats/reference.py "$fresh"

# The committed fixture must hold the numbers the pinned libraries compute today.
"$venv/bin/python" - "$fresh" tests/stats/reference.json <<'PY'
import json, math, sys

def walk(a, b, path):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ"
        for k in a:
            walk(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            walk(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15), f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"

fresh, committed = (json.load(open(p)) for p in sys.argv[1:3])
walk(fresh, committed, "reference")
print("the committed fixture matches scipy and statsmodels")
PY

RUNNER_STATS_REFERENCE=$(cd "$(dirname "$fresh")" && pwd)/$(basename "$fresh") \
    cargo test --quiet --lib stats::tests::runner_agrees_with_scipy_and_statsmodels
