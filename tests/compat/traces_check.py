"""Compares what `runner production PROMPT --json` reports with what traced_app.py sent.

Each --run PROMPT,SENDER,LEDGER names a prompt, the sender the application's ingest token is
recorded as (api:NAME) and the ledger the application wrote; --readme PROMPT,SENDER names what
README's snippet sent (one call, one thumbs up). The report is read again until the spans,
annotations and lookups it counts have all been written (the server stores them off the request
path; lookups are rolled up every two seconds), at most --wait seconds, then every figure the
application can know is compared exactly: requests, errors, tokens, latency percentiles, first
and last seen, each annotation's count, mean, passes and labels, the applications, the series,
the tag moves and the lookups.

Prints one line per check and `N passed, M failed`; exits 1 when a check fails.
"""

import argparse
import json
import math
import subprocess
import sys
import time
from collections import Counter, defaultdict

from checks import check, finish


def close(a, b):
    return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def nearest_rank(values, p):
    values = sorted(values)
    n = len(values)
    return float(values[min(max(math.ceil(p * n), 1), n) - 1])


def report(runner, db, prompt):
    out = subprocess.run(
        [runner, "--db", db, "production", prompt, "--since", "1h", "--json"],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"error: runner production {prompt} exited {out.returncode}:\n{out.stderr}")
    return json.loads(out.stdout)


def expected(ledger):
    """Per version id, what the application sent."""
    versions = defaultdict(
        lambda: {
            "requests": 0,
            "errors": 0,
            "input_tokens": 0,
            "output_tokens": 0,
            "latencies": [],
            "starts": [],
            "scores": defaultdict(list),
            "fetches": 0,
        }
    )
    for r in ledger["requests"]:
        v = versions[r["version_id"]]
        v["requests"] += 1
        v["errors"] += 0 if r["ok"] else 1
        v["input_tokens"] += r["input_tokens"]
        v["output_tokens"] += r["output_tokens"]
        v["latencies"].append(r["llm_end_ms"] - r["llm_start_ms"])
        v["starts"].append(r["llm_start_ms"])
        for name, given in r["annotations"].items():
            v["scores"][name].append(given)
    for version_id in ledger["fetches"]:
        versions[version_id]["fetches"] += 1
    return versions


def settled(production, versions, sender):
    """Whether every span, annotation and lookup the application sent is counted."""
    by_id = {v["version_id"]: v for v in production["versions"]}
    for version_id, want in versions.items():
        got = by_id.get(version_id)
        if got is None or got["requests"] != want["requests"]:
            return False
        counts = {s["name"]: s["count"] for s in got["scores"]}
        if any(counts.get(name) != len(given) for name, given in want["scores"].items()):
            return False
        fetched = sum(
            f["count"]
            for f in production["lookups"]
            if f["sender"] == sender and f["version_id"] == version_id
        )
        if fetched != want["fetches"]:
            return False
    return True


def check_run(runner, db, prompt, ledger, sender, wait):
    versions = expected(ledger)
    deadline = time.monotonic() + wait
    while True:
        production = report(runner, db, prompt)
        if settled(production, versions, sender) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    label = f"{prompt} ({ledger['service']})"
    by_id = {v["version_id"]: v for v in production["versions"]}
    check(
        set(by_id) == set(versions),
        f"{label}: the versions with traffic are the ones the application used",
        f"report {sorted(by_id)}, sent {sorted(versions)}",
    )
    check(
        production["unlinked_spans"] == 0,
        f"{label}: every LLM span is linked to a version",
        f"{production['unlinked_spans']} unlinked",
    )
    numbers = {}
    for version_id, want in versions.items():
        got = by_id.get(version_id)
        if got is None:
            continue
        numbers[version_id] = got["version"]
        name = f"{label} v{got['version']}"
        check(
            got["requests"] == want["requests"],
            f"{name}: {want['requests']} requests",
            f"reported {got['requests']}",
        )
        check(
            got["errors"] == want["errors"],
            f"{name}: {want['errors']} errors",
            f"reported {got['errors']}",
        )
        rate = want["errors"] / want["requests"]
        lo, hi = got["error_rate_interval"]
        check(
            close(got["error_rate"], rate) and lo <= rate <= hi,
            f"{name}: error rate {rate:.4f} inside its interval",
            f"reported {got['error_rate']} in [{lo}, {hi}]",
        )
        check(
            (got["input_tokens"], got["output_tokens"])
            == (want["input_tokens"], want["output_tokens"]),
            f"{name}: {want['input_tokens']} input and {want['output_tokens']} output tokens",
            f"reported {got['input_tokens']} and {got['output_tokens']}",
        )
        p50 = nearest_rank(want["latencies"], 0.5)
        p95 = nearest_rank(want["latencies"], 0.95)
        check(
            close(got["latency_p50_ms"], p50) and close(got["latency_p95_ms"], p95),
            f"{name}: latency p50 {p50} ms, p95 {p95} ms",
            f"reported {got['latency_p50_ms']} and {got['latency_p95_ms']}",
        )
        check(
            (got["first_seen_ms"], got["last_seen_ms"])
            == (min(want["starts"]), max(want["starts"])),
            f"{name}: first and last seen are the first and last span's start",
            f"reported {got['first_seen_ms']}..{got['last_seen_ms']}, "
            f"sent {min(want['starts'])}..{max(want['starts'])}",
        )
        check(
            [(a["service"], a["sender"], a["requests"]) for a in got["applications"]]
            == [(ledger["service"], sender, want["requests"])],
            f"{name}: every request from {ledger['service']} with the token {sender}",
            f"reported {got['applications']}",
        )
        scores = {s["name"]: s for s in got["scores"]}
        check(
            set(scores) == set(want["scores"]),
            f"{name}: annotations {sorted(want['scores'])}",
            f"reported {sorted(scores)}",
        )
        for score_name, given in sorted(want["scores"].items()):
            s = scores.get(score_name)
            if s is None:
                continue
            values = [g["score"] for g in given]
            mean = sum(values) / len(values)
            passes = sum(1 for v in values if v >= 0.5)
            labels = dict(Counter(g["label"] for g in given))
            check(
                s["count"] == len(given) and close(s["mean"], mean),
                f"{name}: {score_name} count {len(given)}, mean {mean:.4f}",
                f"reported count {s['count']}, mean {s['mean']}",
            )
            lo, hi = s["mean_interval"] or (math.nan, math.nan)
            check(
                s["mean"] is not None and lo <= s["mean"] <= hi,
                f"{name}: {score_name} mean inside its interval",
                f"{s['mean']} not in [{lo}, {hi}]",
            )
            check(
                s["passed"] == passes and close(s["pass_rate"], passes / len(given)),
                f"{name}: {score_name} {passes} of {len(given)} pass",
                f"reported {s['passed']}, rate {s['pass_rate']}",
            )
            check(
                s["labels"] == labels,
                f"{name}: {score_name} labels {labels}",
                f"reported {s['labels']}",
            )
        fetched = sum(
            f["count"]
            for f in production["lookups"]
            if f["sender"] == sender and f["version_id"] == version_id and f["tag"] == "production"
        )
        check(
            fetched == want["fetches"],
            f"{name}: the application's {want['fetches']} fetches of production",
            f"the lookups count {fetched}",
        )

    # The series: every span in the bucket its start falls in, per version.
    bucket = production["series"]["bucket_ms"]
    points = {(p["start_ms"], p["version"]): p for p in production["series"]["points"]}
    want_points = defaultdict(lambda: {"requests": 0, "errors": 0, "scores": defaultdict(list)})
    for r in ledger["requests"]:
        number = numbers.get(r["version_id"])
        point = want_points[(r["llm_start_ms"] // bucket * bucket, number)]
        point["requests"] += 1
        point["errors"] += 0 if r["ok"] else 1
        for score_name, given in r["annotations"].items():
            point["scores"][score_name].append(given["score"])
    check(
        set(points) == set(want_points),
        f"{label}: the series has a point for each minute and version with traffic",
        f"reported {sorted(points)}, sent {sorted(want_points)}",
    )
    mismatched = []
    for key, want in want_points.items():
        got = points.get(key)
        means = {n: sum(v) / len(v) for n, v in want["scores"].items()}
        if (
            got is None
            or (got["requests"], got["errors"]) != (want["requests"], want["errors"])
            or set(got["scores"]) != set(means)
            or not all(close(got["scores"][n], m) for n, m in means.items())
        ):
            mismatched.append(
                f"{key}: reported {got and (got['requests'], got['errors'], got['scores'])}, "
                f"sent {(want['requests'], want['errors'], means)}"
            )
    check(
        not mismatched,
        f"{label}: each point's requests, errors and score means",
        "; ".join(mismatched[:3]),
    )

    # The tag's history in the window: created on v1 when the prompt was made, then moved by
    # the release job (when the run had one).
    production_events = [m for m in production["tag_moves"] if m["tag"] == "production"]
    created = [m for m in production_events if m["from_version"] is None]
    moves = [m for m in production_events if m["from_version"] is not None]
    check(
        [m["to_version"] for m in created] == [1],
        f"{label}: production was created on v1",
        f"reported {created}",
    )
    release = ledger["release"]
    if release is None:
        check(not moves, f"{label}: production never moved", f"reported {moves}")
        return
    to_number = numbers.get(release["version_id"])
    check(
        len(moves) == 1
        and moves[0]["to_version"] == to_number
        and moves[0]["from_version"] == to_number - 1
        and moves[0]["actor"] == "api:release",
        f"{label}: production moved from v{to_number - 1} to v{to_number} by api:release",
        f"reported {moves}",
    )
    if len(moves) != 1:
        return
    at_ms = moves[0]["at_ms"]
    check(
        release["before"] * 1000 - 1 <= at_ms <= release["after"] * 1000 + 1,
        f"{label}: the move is dated when the release job made it",
        f"at_ms {at_ms}, release between {release['before'] * 1000:.0f} and "
        f"{release['after'] * 1000:.0f}",
    )
    # The series shows no traffic of the new version in a bucket that ended before the move,
    # and none of the old one in a bucket that began after it.
    early = [k for k in points if k[1] == to_number and k[0] + bucket <= at_ms]
    late = [k for k in points if k[1] == to_number - 1 and k[0] > at_ms]
    check(
        not early and not late,
        f"{label}: in the series v{to_number} starts at the move and v{to_number - 1} ends there",
        f"v{to_number} before: {early}, v{to_number - 1} after: {late}",
    )
    new_spans = [r["llm_start_ms"] for r in ledger["requests"] if r["version_id"] == release["version_id"]]
    old_spans = [r["llm_start_ms"] for r in ledger["requests"] if r["version_id"] != release["version_id"]]
    by_number = {v["version"]: v for v in production["versions"]}
    check(
        by_number.get(to_number, {}).get("first_seen_ms", -1) >= at_ms
        and by_number.get(to_number - 1, {}).get("last_seen_ms", at_ms + 1) <= at_ms
        and min(new_spans) >= at_ms >= max(old_spans),
        f"{label}: v{to_number} is first seen after the move, v{to_number - 1} last seen before it",
    )


def check_readme(runner, db, prompt, sender, wait):
    """README's snippet: one call of the production version, and a thumbs up on its own span."""
    deadline = time.monotonic() + wait
    while True:
        production = report(runner, db, prompt)
        versions = production["versions"]
        scores = versions[0]["scores"] if len(versions) == 1 else []
        if (len(versions) == 1 and versions[0]["requests"] == 1 and scores) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.25)
    label = f"{prompt} (README's snippet)"
    got = [(v["version"], v["requests"], v["errors"]) for v in versions]
    check(got == [(1, 1, 0)], f"{label}: one call of v1, no error", f"reported {got}")
    check(
        [(a["sender"], a["requests"]) for a in versions[0]["applications"]] == [(sender, 1)]
        if versions
        else False,
        f"{label}: sent with the token {sender}",
        f"reported {versions[0]['applications'] if versions else None}",
    )
    got = [(s["name"], s["count"], s["mean"], s["labels"]) for s in scores]
    check(
        got == [("thumbs", 1, 1.0, {"up": 1})],
        f"{label}: the thumbs up on the application's span scores the call",
        f"reported {got}",
    )
    check(
        production["unlinked_spans"] == 0,
        f"{label}: the call is linked to its version",
        f"{production['unlinked_spans']} unlinked",
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runner", required=True)
    parser.add_argument("--db", required=True)
    parser.add_argument("--wait", type=float, default=30)
    parser.add_argument("--run", action="append", required=True, help="PROMPT,SENDER,LEDGER")
    parser.add_argument("--readme", help="PROMPT,SENDER of README's snippet, run once")
    args = parser.parse_args()
    for run in args.run:
        prompt, sender, path = run.split(",", 2)
        with open(path) as f:
            ledger = json.load(f)
        check_run(args.runner, args.db, prompt, ledger, sender, args.wait)
    if args.readme:
        prompt, sender = args.readme.split(",", 1)
        check_readme(args.runner, args.db, prompt, sender, args.wait)
    finish()


if __name__ == "__main__":
    main()
