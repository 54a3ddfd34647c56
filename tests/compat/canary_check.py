"""Checks a canary scenario run by canary_app.py against what runner recorded.

--run PROMPT,EXPECT,LEDGER: EXPECT is `rolled_back` (the candidate is worse: production must
never move) or `completed` (an equal candidate: production must move to it as a promotion).
For each run it checks:

- the outcome: `runner canary status PROMPT --json` says EXPECT, and the tag history says the
  same (no move of production, or one promotion to the candidate with the rollout's evidence);
- the split: while the rollout ran both arms were served, and each user kept an arm
  (baseline first, candidate from some step on, never back), with the first step's share of
  users on the candidate plausible for its share; after the end every request got the version
  the outcome leaves in production;
- the credit: `runner production PROMPT --json` counts, per version, exactly the requests and
  errors the application made with the version it was served (so a split that served one arm,
  or traces credited to the wrong arm, fails), and the decision's evidence counts no more
  candidate spans than the candidate served.

Prints one line per check, the scenario's figures, and `N passed, M failed`; exits 1 on failure.
"""

import argparse
import json
import subprocess
import sys
import time
from collections import defaultdict

from checks import check, finish


def runner_json(runner, db, *args):
    out = subprocess.run([runner, "--db", db, *args, "--json"], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"error: runner {' '.join(args)} exited {out.returncode}:\n{out.stderr}")
    return json.loads(out.stdout)


def check_run(runner, db, prompt, expect, ledger, wait):
    label = f"{prompt} ({expect.replace('_', ' ')})"
    baseline, candidate = ledger["baseline_id"], ledger["candidate_id"]
    ended = ledger["ended_at_request"]
    # The last poll that still said running bounds the requests known to be under the rollout.
    running_polls = [p["request"] for p in ledger["polls"] if p["status"] == "running"]
    check(running_polls, f"{label}: the application saw the rollout running")
    running_until = max(running_polls, default=0)
    during = ledger["requests"][:running_until]
    after = ledger["requests"][ended:]

    # The outcome, as the CLI and the tag history tell it.
    status = runner_json(runner, db, "canary", "status", prompt)
    check(
        status["rollout"]["id"] == ledger["rollout"] and status["rollout"]["status"] == expect,
        f"{label}: the rollout {ledger['rollout']} ended {expect}",
        f"status {status['rollout']['status']}",
    )
    history = runner_json(runner, db, "tag", "history", prompt)
    production = [e for e in history if e["tag"] == "production"]
    moves = [e for e in production if e["from_version_id"] is not None]
    canary_end = [e for e in history if e["tag"] == "canary" and e["action"] == "delete"]
    check(len(canary_end) == 1, f"{label}: the canary tag was withdrawn once", f"{canary_end}")
    if expect == "rolled_back":
        check(not moves, f"{label}: production never moved", f"moves {moves}")
        evidence = canary_end[0]["evidence"] if canary_end else {}
        check(
            evidence.get("decision") == "roll_back",
            f"{label}: the withdrawal records the rollback's evidence",
            f"{evidence}",
        )
    else:
        check(
            len(moves) == 1
            and moves[0]["action"] == "promote"
            and moves[0]["from_version_id"] == baseline
            and moves[0]["to_version_id"] == candidate
            and moves[0]["actor"] == "runner serve",
            f"{label}: production moved once, baseline to candidate, as the server's promotion",
            f"moves {moves}",
        )
        evidence = moves[0]["evidence"] if moves else {}
        check(
            evidence.get("decision") == "complete",
            f"{label}: the promotion records the completion's evidence",
            f"{evidence}",
        )
    metrics = evidence.get("metrics") or [{}]
    served_candidate = sum(1 for r in ledger["requests"] if r["version_id"] == candidate)
    counted = metrics[0].get("candidate_spans", -1)
    check(
        0 < counted <= served_candidate,
        f"{label}: the decision counted {counted} candidate spans, of {served_candidate} served",
    )

    # The split while the rollout ran.
    arms = defaultdict(list)
    for r in during:
        arms[r["user"]].append(r["version_id"])
    served = {v: sum(1 for r in during if r["version_id"] == v) for v in (baseline, candidate)}
    check(
        served[baseline] > 0 and served[candidate] > 0,
        f"{label}: both arms were served while the rollout ran",
        f"{served}",
    )
    check(
        all(set(ids) <= {baseline, candidate} for ids in arms.values()),
        f"{label}: every lookup got the baseline or the candidate",
    )
    went_back = [
        user
        for user, ids in arms.items()
        if any(a == candidate and b == baseline for a, b in zip(ids, ids[1:]))
    ]
    check(
        not went_back,
        f"{label}: each of {len(arms)} users kept its arm (never back from the candidate)",
        f"went back: {went_back[:5]}",
    )
    first_step = [p for p in ledger["polls"] if p["status"] == "running" and p["step"] == 0]
    first_until = max(p["request"] for p in first_step) if first_step else 0
    share = first_step[0]["share"] if first_step else 0
    early_users = {r["user"] for r in ledger["requests"][:first_until]}
    on_candidate = {
        r["user"] for r in ledger["requests"][:first_until] if r["version_id"] == candidate
    }
    check(
        first_until > 0 and 0 < len(on_candidate) <= 3 * share / 100 * len(early_users) + 5,
        f"{label}: at the first step ({share}%) {len(on_candidate)} of {len(early_users)} users "
        f"got the candidate",
    )
    stays = baseline if expect == "rolled_back" else candidate
    check(
        after and all(r["version_id"] == stays for r in after),
        f"{label}: after the end all {len(after)} requests got the "
        f"{'baseline' if stays == baseline else 'candidate'}",
        f"{sum(1 for r in after if r['version_id'] != stays)} did not",
    )

    # The credit: each version's requests and errors, as the application made them.
    want = defaultdict(lambda: [0, 0])
    for r in ledger["requests"]:
        want[r["version_id"]][0] += 1
        want[r["version_id"]][1] += 0 if r["ok"] else 1
    deadline = time.monotonic() + wait
    while True:
        report = runner_json(runner, db, "production", prompt, "--since", "1h")
        got = {v["version_id"]: [v["requests"], v["errors"]] for v in report["versions"]}
        if got == dict(want) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    for version_id, (requests, errors) in sorted(want.items()):
        arm = "candidate" if version_id == candidate else "baseline"
        check(
            got.get(version_id) == [requests, errors],
            f"{label}: the {arm}'s traces count its {requests} requests and {errors} errors",
            f"reported {got.get(version_id)}",
        )
    check(set(got) == set(want), f"{label}: no traffic credited to another version", f"{got}")

    rate = {v: (e / n if n else 0) for v, (n, e) in want.items()}
    print(
        f"figures {label}: {len(ledger['requests'])} requests in {ledger['seconds']} s, "
        f"{want[baseline][0]} on the baseline (error rate {rate.get(baseline, 0):.3f}), "
        f"{want[candidate][0]} on the candidate (error rate {rate.get(candidate, 0):.3f}); "
        f"{ledger['ended_status']} seen at request {ended}, {ledger['ended_after_seconds']} s in; "
        f"the decision counted {counted} candidate spans"
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--wait", type=float, default=30)
    parser.add_argument("--run", action="append", required=True, help="PROMPT,EXPECT,LEDGER")
    args = parser.parse_args()
    for run in args.run:
        prompt, expect, path = run.split(",", 2)
        with open(path) as f:
            ledger = json.load(f)
        check_run(args.runner, args.db, prompt, expect, ledger, args.wait)
    finish()


if __name__ == "__main__":
    main()
