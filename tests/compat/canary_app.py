"""A support application under a canary rollout, as a team would run one against `runner serve`.

A release job (its own HTTP client, a deploy token) starts the rollout of `production` through
`POST /v1/prompts/{name}/rollouts`. The application then serves its users: each request comes
from one of --users users, fetches `production` through the Phoenix client with the user's
unit header (one client per user, as a per-user session would hold), renders it, calls the
model (`runner mock-server`) with the official `openai` client instrumented by OpenInference,
and exports its spans over OTLP/HTTP with an ingest token. Every --poll requests it asks the
server how the rollout stands; once the rollout has ended (rolled back or completed) it serves
--after more requests and stops. It never decides anything itself: the server does.

Everything it did is written to --ledger as JSON: each request's user, the version it was
served, whether the call failed, the LLM span's id and times; each poll's answer; the rollout's
id. canary_check.py compares that with what the server recorded. The environment is
traced_app.py's: RUNNER_URL, RUNNER_INGEST_TOKEN, RUNNER_DEPLOY_TOKEN and MOCK_URL.
"""

import argparse
import json
import os
import sys
import time

import httpx
import openai
from phoenix.client import Client
from traced_app import (
    INGEST_TOKEN,
    URL,
    LlmSpans,
    handle_ticket,
    hex_id,
    setup_manual,
    ticket,
)

MOCK_URL = os.environ["MOCK_URL"]
UNIT_HEADER = "X-Runner-Unit"


def start_rollout(prompt, plan):
    """The release job: starts the rollout with a deploy token, as a CI step would."""
    deployer = httpx.Client(
        base_url=URL,
        headers={"authorization": f"Bearer {os.environ['RUNNER_DEPLOY_TOKEN']}"},
    )
    reply = deployer.post(f"/v1/prompts/{prompt}/rollouts", json=plan)
    if reply.status_code != 201:
        sys.exit(f"error: starting the rollout answered {reply.status_code}: {reply.text}")
    return reply.json()["data"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--plan", required=True, help="the rollout's plan, as JSON")
    parser.add_argument("--service", required=True)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--max-requests", type=int, required=True)
    parser.add_argument("--poll", type=int, default=50)
    parser.add_argument("--after", type=int, default=100)
    parser.add_argument("--ledger", required=True)
    args = parser.parse_args()

    llm_spans = LlmSpans()
    provider = setup_manual(args.service, "production-" + args.service, llm_spans)
    tracer = provider.get_tracer(args.service)
    llm = openai.OpenAI(base_url=MOCK_URL, api_key="not-used", max_retries=0)
    watcher = httpx.Client(base_url=URL, headers={"authorization": f"Bearer {INGEST_TOKEN}"})
    sessions = {}

    started = start_rollout(args.prompt, json.loads(args.plan))
    rollout = started["rollout"]
    ledger = {
        "service": args.service,
        "rollout": rollout["id"],
        "baseline_id": rollout["baseline_id"],
        "candidate_id": rollout["candidate_id"],
        "started_at": time.time(),
        "requests": [],
        "polls": [],
        "ended_at_request": None,
        "ended_status": None,
    }
    began = time.monotonic()

    for index in range(args.max_requests):
        if index % args.poll == 0:
            reply = watcher.get(f"/v1/prompts/{args.prompt}/rollouts/production")
            if reply.status_code != 200:
                sys.exit(f"error: the rollout's status answered {reply.status_code}: {reply.text}")
            view = reply.json()["data"]
            status = view["rollout"]["status"]
            ledger["polls"].append(
                {
                    "request": index,
                    "seconds": round(time.monotonic() - began, 2),
                    "status": status,
                    "step": view["rollout"]["step"],
                    "share": view["share"],
                }
            )
            if status != "running" and ledger["ended_at_request"] is None:
                ledger["ended_at_request"] = index
                ledger["ended_status"] = status
                ledger["ended_after_seconds"] = round(time.monotonic() - began, 2)
        ended = ledger["ended_at_request"]
        if ended is not None and index >= ended + args.after:
            break
        user = f"user-{index % args.users}"
        if user not in sessions:
            sessions[user] = Client(
                base_url=URL, api_key=INGEST_TOKEN, headers={UNIT_HEADER: user}
            )
        prompt = sessions[user].prompts.get(prompt_identifier=args.prompt, tag="production")
        variables = ticket(index)
        answer, _, llm_span = handle_ticket(tracer, llm, llm_spans, prompt, variables, index)
        entry = {"user": user, "version_id": prompt.id, "ok": answer is not None}
        entry["llm_span"] = hex_id(llm_span.context.span_id, 16)
        entry["llm_start_ms"] = llm_span.start_time // 1_000_000
        entry["llm_end_ms"] = llm_span.end_time // 1_000_000
        ledger["requests"].append(entry)
    provider.shutdown()
    ledger["seconds"] = round(time.monotonic() - began, 2)

    with open(args.ledger, "w") as out:
        json.dump(ledger, out, indent=1)
    served = {}
    for r in ledger["requests"]:
        arm = "candidate" if r["version_id"] == ledger["candidate_id"] else "baseline"
        served[arm] = served.get(arm, 0) + 1
    print(
        f"{args.service}: {len(ledger['requests'])} requests in {ledger['seconds']} s "
        f"({served.get('baseline', 0)} baseline, {served.get('candidate', 0)} candidate); "
        f"rollout {ledger['ended_status'] or 'still running'}"
        + (
            f" at request {ledger['ended_at_request']}, {ledger['ended_after_seconds']} s in"
            if ledger["ended_at_request"] is not None
            else ""
        )
    )
    if ledger["ended_at_request"] is None:
        sys.exit(f"error: the rollout had not ended after {args.max_requests} requests")


if __name__ == "__main__":
    main()
