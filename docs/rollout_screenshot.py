#!/usr/bin/env python3
"""The screenshot of the Rollout section in README.md (docs/rollout.png), reproducible:

    cargo build && python3 docs/rollout_screenshot.py [RUNNER] [OUT.png]

In a temporary folder: `support_reply` v1 on production and v2 on staging, made by the CLI; a
real `runner serve`; `runner canary start` of v2 on production with the error rate and the p95
latency watched; then a few minutes of traffic on each arm over OTLP/HTTP JSON (v2 errs a
little more often, and answers faster); then headless Chromium on the prompt's page. Standard
library only (and production_screenshot.py beside it), plus `chromium`.
"""

import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import production_screenshot as ps  # noqa: E402

PROMPT = ps.PROMPT


def main():
    runner = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/runner")
    out = os.path.abspath(sys.argv[2] if len(sys.argv) > 2 else "docs/rollout.png")
    work = tempfile.mkdtemp()
    server = None
    try:
        db = os.path.join(work, "store.db")
        ps.run(runner, db, "prompt", "create", PROMPT, "--template", "Answer: {{question}}",
               "--model", "gpt-4o-mini", "--tag", "production", "-m", "first version")
        ps.run(runner, db, "prompt", "update", PROMPT, "--template", "Answer in two sentences: {{question}}",
               "--tag", "staging", "-m", "shorter answers")
        env = dict(os.environ, RUNNER_DB=db, RUNNER_AUTHOR="ada")
        server = subprocess.Popen([runner, "serve", "--bind", "127.0.0.1:0"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        first = server.stdout.readline()
        base = first[first.index("http://"):].split()[0]
        ps.run(runner, db, "canary", "start", PROMPT, "--tag", "production", "--candidate", "staging",
               "--steps", "5,25,50,100", "--step-after", "30m", "--metric", "error_rate",
               "--metric", "latency_p95:+20%", "-m", "shorter answers, step by step")
        rng = random.Random(7)
        now = int(time.time() * 1000)
        spans = []
        for n in range(1, 1601):
            seq = 2 if rng.random() < 0.25 else 1
            error = rng.random() < (0.03 if seq == 2 else 0.02)
            latency = int(rng.lognormvariate(6.6 if seq == 1 else 6.45, 0.3))
            spans.append({
                "service": "support-bot",
                "trace_id": f"{n:032x}",
                "span_id": f"{n:016x}",
                "start": now + n % 500,
                "end": now + n % 500 + latency,
                "error": error,
                "attributes": {
                    "openinference.span.kind": "LLM",
                    "llm.model_name": "gpt-4o-mini",
                    "llm.token_count.prompt": 180,
                    "llm.token_count.completion": 0 if error else 50,
                    "llm.prompt_template.version": f"{PROMPT}@v{seq}",
                },
            })
        for batch in range(0, len(spans), 500):
            ps.post(base, "/v1/traces", ps.otlp(spans[batch:batch + 500]))
        time.sleep(2)
        url = f"{base}/prompts/{PROMPT}"
        subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             f"--screenshot={out}", "--window-size=1400,1110", url],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        print(f"screenshot of {url} saved as {out}")
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
