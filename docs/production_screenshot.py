#!/usr/bin/env python3
"""Reproduces docs/production.png: the web UI's Production section over a day of traffic.

    cargo build && python3 docs/production_screenshot.py [RUNNER] [OUT.png] [--scale N]

RUNNER defaults to target/debug/runner, OUT to docs/production.png. `--scale N` sends N times
as much traffic (to time the page on a busier prompt); `--no-screenshot` only times it.
Standard library only, plus `chromium` for the screenshot. What it does, in a temporary folder:

1. Makes prompt `support_reply` with the real CLI: v1 (production) and v2 (staging); moves
   production to v2, then rolls it back to v1.
2. Exports it and imports it into a fresh store with the tag history set back in time (v1 in
   production since yesterday, staging -> v2 8.5 h ago, production -> v2 6 h ago, rolled back
   1.5 h ago), recomputing the export's hash chain: the store writes tag moves at the time they
   are made, and the chart needs moves inside its window.
3. Starts `runner serve` on a free loopback port and sends about 750 LLM spans over the last
   24 hours as OTLP/HTTP JSON to /v1/traces, each naming its version by OpenInference's
   `llm.prompt_template.version`: v1 errs on about 2 % of calls, v2 on about 12 %; a few spans
   name no version. Then annotations through Phoenix's /v1/span_annotations: an LLM judge's
   `correctness` score on most spans, a user's `thumbs` up or down on some.
4. Times the page (five GETs: the fastest and the median), takes the screenshot with headless
   Chromium at 1400x1260 and stops the server.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

PROMPT = "support_reply"
HOUR = 3_600_000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runner", nargs="?", default="target/debug/runner")
    parser.add_argument("out", nargs="?", default="docs/production.png")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--no-screenshot", action="store_true")
    args = parser.parse_args()
    runner = os.path.abspath(args.runner)
    out = os.path.abspath(args.out)
    work = tempfile.mkdtemp(prefix="runner-production-")
    server = None
    try:
        now = int(time.time() * 1000)
        store = seed_store(runner, work, now)
        server, base = serve(runner, store, work)
        versions = version_ids(base)
        spans, annotations = traffic(versions, now, args.scale)
        for batch in range(0, len(spans), 500):
            post(base, "/v1/traces", otlp(spans[batch : batch + 500]))
        # Annotations sent with ?sync wait behind the spans sent before them.
        for batch in range(0, len(annotations), 500):
            post(base, "/v1/span_annotations?sync=true", {"data": annotations[batch : batch + 500]})
        print(f"{len(spans)} spans, {len(annotations)} annotations sent to {base}")
        url = f"{base}/prompts/{PROMPT}?window=24h&score=correctness"
        times = []
        for _ in range(5):
            started = time.perf_counter()
            with urllib.request.urlopen(url) as reply:
                reply.read()
            times.append((time.perf_counter() - started) * 1000)
        times.sort()
        print(f"GET {url}: {times[0]:.0f} ms fastest, {times[2]:.0f} ms median of 5")
        if args.no_screenshot:
            return
        subprocess.run(
            [
                "chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                f"--screenshot={out}",
                # Tall enough for the deployments, the chart and the table.
                "--window-size=1400,1260",
                url,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        print(f"screenshot of {url} saved as {out}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


def run(runner, db, *args):
    env = dict(os.environ, RUNNER_DB=db, RUNNER_AUTHOR="ada")
    subprocess.run([runner, *args], check=True, env=env, stdout=subprocess.DEVNULL)


def seed_store(runner, work, now):
    """The prompt, its versions and tag moves, with the moves set back in time."""
    seed = os.path.join(work, "seed.db")
    v1 = os.path.join(work, "v1.json")
    v2 = os.path.join(work, "v2.json")
    with open(v1, "w") as f:
        json.dump(
            [
                {"role": "system", "content": "You are {{company}}'s support agent. Answer the customer's question."},
                {"role": "user", "content": "{{question}}"},
            ],
            f,
        )
    with open(v2, "w") as f:
        json.dump(
            [
                {"role": "system", "content": "You are {{company}}'s support agent. Answer in two sentences at most."},
                {"role": "user", "content": "{{question}}"},
            ],
            f,
        )
    run(runner, seed, "prompt", "create", PROMPT, "--messages-file", v1, "--model", "gpt-4o-mini",
        "--tag", "production", "-m", "first version")
    run(runner, seed, "prompt", "update", PROMPT, "--messages-file", v2, "--tag", "staging",
        "-m", "shorter answers")
    run(runner, seed, "tag", "set", PROMPT, "production", "--version", "2", "--force",
        "-m", "shorter answers read better in the chat widget")
    run(runner, seed, "rollback", PROMPT, "production", "--force",
        "-m", "error rate up since v2: answers cut off")
    export = os.path.join(work, "export")
    run(runner, seed, "export", export)

    def stamp(ms):
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}Z"

    folder = os.path.join(export, PROMPT)
    rewrite_json(os.path.join(folder, "prompt.json"), lambda p: p.update(created_at=stamp(now - 30 * HOUR)))
    created = {1: now - 30 * HOUR, 2: now - 9 * HOUR}
    for seq, at in created.items():
        rewrite_json(
            os.path.join(folder, "versions", f"{seq:04d}", "version.json"),
            lambda v, at=at: v.update(created_at=stamp(at)),
        )
    # production set, staging set, production moved, production rolled back.
    moved = [now - 30 * HOUR + 60_000, now - 8.5 * HOUR, now - 6 * HOUR, now - 1.5 * HOUR]
    history = os.path.join(folder, "history.jsonl")
    with open(history) as f:
        events = [json.loads(line) for line in f if line.strip()]
    assert len(events) == len(moved), events
    previous = ""
    lines = []
    for event, at in zip(events, moved):
        event.pop("hash", None)
        event["at"] = stamp(int(at))
        # The chain: sha256(previous hash, "\n", the event as compact JSON without its hash).
        bare = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        previous = hashlib.sha256((previous + "\n" + bare).encode()).hexdigest()
        event["hash"] = previous
        lines.append(json.dumps(event, separators=(",", ":"), ensure_ascii=False))
    with open(history, "w") as f:
        f.write("\n".join(lines) + "\n")
    last = {}
    for event in events:
        last[event["tag"]] = event["at"]
    rewrite_json(
        os.path.join(folder, "tags.json"),
        lambda tags: [tags[t].update(updated_at=last[t]) for t in tags],
    )
    store = os.path.join(work, "store.db")
    run(runner, store, "import", export)
    return store


def rewrite_json(path, change):
    with open(path) as f:
        value = json.load(f)
    change(value)
    with open(path, "w") as f:
        json.dump(value, f, indent=2, ensure_ascii=False)
        f.write("\n")


def serve(runner, store, work):
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen(
        [runner, "--db", store, "serve", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    first = server.stdout.readline()
    base = next(word for word in first.split() if word.startswith("http://"))
    return server, base


def version_ids(base):
    ids = {}
    with urllib.request.urlopen(f"{base}/v1/prompts/{PROMPT}/versions") as reply:
        for v in json.load(reply)["data"]:
            ids[v["sequence_number"]] = v["id"]
    return ids


def traffic(versions, now, scale):
    """About 750 spans (times `scale`) over the last 24 hours, each sent to the version its tag
    pointed at then."""
    rng = random.Random(7)
    staging_from, moved, rolled_back = now - 8.5 * HOUR, now - 6 * HOUR, now - 1.5 * HOUR
    questions = [
        ("Where is my order #4411?", "Your order left our warehouse yesterday and should arrive on Friday."),
        ("How do I reset my password?", "Open Settings, choose Security, then Reset password; we email you a link."),
        ("Can I get a refund for a late delivery?", "Yes: late deliveries are refunded in full within 5 days."),
        ("Do you ship to Norway?", "We ship to Norway; delivery takes 4 to 6 working days."),
        ("My invoice shows the wrong address.", "I have corrected the address; a new invoice is on its way."),
    ]
    spans, annotations = [], []
    at = now - 24 * HOUR
    n = 0
    while at < now - 60_000:
        # Busier by day: 20 to 45 calls an hour.
        hour = time.gmtime(at / 1000).tm_hour
        rate = scale * (20 + 25 * max(0.0, 1 - abs(hour - 14) / 10))
        at += int(rng.expovariate(rate / HOUR))
        if at >= now - 60_000:
            break
        n += 1
        service, seq = "support-bot", 1
        if moved <= at < rolled_back:
            seq = 2
        if at >= staging_from and rng.random() < 0.08:
            service, seq = "support-bot-staging", 2
        error = rng.random() < (0.12 if seq == 2 else 0.02)
        latency = int(rng.lognormvariate(6.6 if seq == 1 else 6.3, 0.35))
        question, answer = rng.choice(questions)
        span_id = f"{n:016x}"
        linked = rng.random() > 0.01
        attributes = {
            "openinference.span.kind": "LLM",
            "llm.model_name": "gpt-4o-mini",
            "llm.token_count.prompt": 180 + rng.randrange(60),
            "llm.token_count.completion": 0 if error else (60 if seq == 1 else 35) + rng.randrange(30),
            "llm.prompt_template.variables": json.dumps({"company": "Acme", "question": question}),
            "llm.input_messages.0.message.role": "system",
            "llm.input_messages.0.message.content": "You are Acme's support agent.",
            "llm.input_messages.1.message.role": "user",
            "llm.input_messages.1.message.content": question,
        }
        if linked:
            attributes["llm.prompt_template.version"] = versions[seq]
        if not error:
            attributes["llm.output_messages.0.message.role"] = "assistant"
            attributes["llm.output_messages.0.message.content"] = answer
        spans.append(
            {
                "service": service,
                "trace_id": f"{n:032x}",
                "span_id": span_id,
                "start": at,
                "end": at + latency,
                "error": error,
                "attributes": attributes,
            }
        )
        if linked and not error and rng.random() < 0.7:
            score = min(1.0, max(0.0, rng.gauss(0.88 if seq == 1 else 0.72, 0.15)))
            annotations.append(
                {
                    "span_id": span_id,
                    "name": "correctness",
                    "annotator_kind": "LLM",
                    "result": {
                        "score": round(score, 2),
                        "label": "correct" if score >= 0.5 else "incorrect",
                        "explanation": "judged against the help centre article",
                    },
                }
            )
        if linked and rng.random() < 0.15:
            up = rng.random() < (0.85 if seq == 1 and not error else 0.55)
            annotations.append(
                {
                    "span_id": span_id,
                    "name": "thumbs",
                    "annotator_kind": "HUMAN",
                    "result": {"label": "up" if up else "down"},
                }
            )
    return spans, annotations


def value(v):
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}
    return {"stringValue": str(v)}


def otlp(spans):
    """OTLP/HTTP JSON: one resource per service."""
    by_service = {}
    for s in spans:
        by_service.setdefault(s["service"], []).append(
            {
                "traceId": s["trace_id"],
                "spanId": s["span_id"],
                "name": "ChatCompletion",
                "kind": 3,
                "startTimeUnixNano": str(s["start"] * 1_000_000),
                "endTimeUnixNano": str(s["end"] * 1_000_000),
                "attributes": [{"key": k, "value": value(v)} for k, v in s["attributes"].items()],
                "status": {"code": 2, "message": "upstream timeout"} if s["error"] else {"code": 1},
            }
        )
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"spans": spans}],
            }
            for service, spans in by_service.items()
        ]
    }


def post(base, path, body):
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request) as reply:
        reply.read()


if __name__ == "__main__":
    main()
