"""The runner CLI on the store run.sh set up (RUNNER_BIN, RUNNER_DB), for the compatibility
scripts that check what the CLI sees of what a client wrote."""

import os
import subprocess


def runner(*args, ok=True):
    """Runs `runner --db $RUNNER_DB ARGS…`; with `ok`, a failure raises with its stderr."""
    out = subprocess.run(
        [os.environ["RUNNER_BIN"], "--db", os.environ["RUNNER_DB"], *args],
        capture_output=True,
        text=True,
    )
    if ok and out.returncode != 0:
        raise AssertionError(f"runner {' '.join(args)}: exit {out.returncode}\n{out.stderr}")
    return out
