"""The checks the compatibility scripts count: one line per check (`ok` or `FAIL`), then
`N passed, M failed` (the line .ci/run adds up) and the exit status."""

import sys

passed = 0
failed = 0


def check(condition, what, detail=""):
    global passed, failed
    if condition:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}" + (f": {detail}" if detail else ""))


def finish():
    """Prints the count and exits 1 when a check failed."""
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)
