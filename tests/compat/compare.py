"""Compares the answers differential.py recorded from `runner serve` with the fixture recorded
from a real Phoenix server, operation by operation, and sorts each operation into

- same: the same statuses, and every field Phoenix gave with the same value, in the same order;
- deliberate: a difference runner means to have, listed below with its reason (README.md has the
  same table);
- different: anything else.

    python compare.py FIXTURE ACTUAL [--max-different N]

Ids are placeholders on both sides; they match when one Phoenix id always stands for the same
runner id. An error's body is not compared (its status is): the wording of error messages
differs by design. Exits 1 when more operations are different than --max-different (0 unless
given).
"""

import json
import sys

# Operations whose difference is deliberate, with the reason.
DELIBERATE = {
    "tags.create moves production without force": (
        "runner refuses an unforced move of a protected tag by a token without the deploy role "
        "(403); creating one succeeds"
    ),
    "get by tag production": "follows from the refused move: production stayed where it was",
    "POST /v1/prompts: provider and parameters disagree": (
        "runner refuses invocation parameters of another provider (Phoenix's own versions route "
        "refuses them too); a version must run as stored"
    ),
    "POST /v1/prompts: STR template": (
        "runner accepts STR templates (one user message), which its CLI writes; Phoenix's API "
        "takes CHAT only (422)"
    ),
    "GET version tags, second page": (
        "Phoenix's next_cursor for version tags is the last tag of the page, so its next page "
        "repeats that tag; runner's pages do not overlap"
    ),
    "add_examples_to_dataset with an example already there": (
        "when an append changes nothing, Phoenix answers with the dataset's first version (the "
        "client then reads that old version back); runner answers its latest version"
    ),
    "POST a run for an example outside the version": (
        "Phoenix stores a run for an example its experiment's dataset version does not hold; "
        "runner answers 404 and stores nothing"
    ),
    "POST a run with a repetition beyond the experiment's": (
        "Phoenix stores a repetition the experiment did not plan; runner answers 422 and stores "
        "nothing"
    ),
    "POST a run for an unknown experiment": "Phoenix answers 500; runner 404",
    "POST a run for an unknown example": (
        "Phoenix drops the connection without an answer; runner answers 404"
    ),
    "POST an evaluation for an unknown run": "Phoenix answers 500; runner 404",
    "GET the raw experiment's JSON export": (
        "Phoenix drops the connection (the run it stored for an example outside the version "
        "breaks its export); runner, which refused that run, answers the export"
    ),
    "GET an unknown route": (
        "runner answers 404 for an unknown route; Phoenix serves its web app's page (200)"
    ),
}
# Applies to every operation: runner adds fields of its own to what Phoenix gives.
ADDED_FIELDS = "runner adds fields of its own (sequence numbers, authors, times, content hash)"
# Fields where Phoenix gives a value and runner gives null, by design, with the reason.
NULL_FIELDS = {
    "project_name": "runner opens no tracing project per experiment (project_name is null)",
    "trace_id": "so the client sends no task spans, and runs carry no trace id",
}


class Mismatch(Exception):
    pass


def match(phoenix, runner, ids, extra, where=""):
    """Raises Mismatch unless `runner` answers `phoenix`; records added fields in `extra`."""
    field = where.rsplit(".", 1)[-1]
    if field in NULL_FIELDS and isinstance(phoenix, str) and runner is None:
        extra.add(f"null:{field}")
        return
    if isinstance(phoenix, str) and phoenix.startswith("<id "):
        if not (isinstance(runner, str) and runner.startswith("<id ")):
            raise Mismatch(f"{where}: {phoenix} vs {runner!r}")
        forward, backward = ids
        if forward.setdefault(phoenix, runner) != runner or backward.setdefault(runner, phoenix) != phoenix:
            raise Mismatch(f"{where}: id {phoenix} vs {runner}")
        return
    if isinstance(phoenix, dict):
        if not isinstance(runner, dict):
            raise Mismatch(f"{where}: object vs {type(runner).__name__}")
        missing = [k for k in phoenix if k not in runner]
        if missing:
            raise Mismatch(f"{where}: missing {missing}")
        for k in runner:
            if k not in phoenix:
                extra.add(f"{where}.{k}")
        for k, v in phoenix.items():
            match(v, runner[k], ids, extra, f"{where}.{k}")
        return
    if isinstance(phoenix, list):
        if not isinstance(runner, list) or len(runner) != len(phoenix):
            raise Mismatch(f"{where}: {json.dumps(phoenix)[:200]} vs {json.dumps(runner)[:200]}")
        for i, (p, r) in enumerate(zip(phoenix, runner)):
            match(p, r, ids, extra, f"{where}[{i}]")
        return
    if phoenix != runner or type(phoenix) is not type(runner):
        raise Mismatch(f"{where}: {json.dumps(phoenix)[:200]} vs {json.dumps(runner)[:200]}")


def main():
    fixture = json.load(open(sys.argv[1]))["operations"]
    actual = {o["op"]: o for o in json.load(open(sys.argv[2]))["operations"]}
    ids = ({}, {})
    counts = {"same": 0, "different": 0, "deliberate": 0}
    for expected in fixture:
        label = expected["op"]
        got = actual.get(label)
        extra = set()
        # Id pairings are kept only from operations that match.
        trial = (dict(ids[0]), dict(ids[1]))
        try:
            if got is None:
                raise Mismatch("not run")
            match(expected.get("raised"), got.get("raised"), trial, extra, "raised")
            match(expected.get("result"), got.get("result"), trial, extra, "result")
            match(expected["http"], got["http"], trial, extra, "http")
            ids = trial
            nulls = sorted(NULL_FIELDS[e[5:]] for e in extra if e.startswith("null:"))
            if nulls:
                verdict, why = "deliberate", "; ".join(nulls)
            elif extra:
                verdict, why = "deliberate", ADDED_FIELDS
            else:
                verdict, why = "same", ""
        except Mismatch as e:
            if label in DELIBERATE:
                verdict, why = "deliberate", DELIBERATE[label]
            else:
                verdict, why = "different", str(e)
        counts[verdict] += 1
        print(f"{verdict:<10} {label}" + (f"  [{why}]" if verdict != "same" else ""))
    print(
        f"phoenix differential: {counts['same']} same, {counts['different']} different, "
        f"{counts['deliberate']} deliberate (of {len(fixture)} operations)"
    )
    allowed = int(sys.argv[sys.argv.index("--max-different") + 1]) if "--max-different" in sys.argv else 0
    return 1 if counts["different"] > allowed else 0


if __name__ == "__main__":
    sys.exit(main())
