"""A support application as a team would write it, sending its traces to `runner serve`.

It fetches the `production` version of its prompt through the Phoenix client, renders it,
calls an OpenAI-compatible endpoint (`runner mock-server`) with the official `openai` client,
instrumented by OpenInference, and exports the spans over OTLP/HTTP with an ingest token. Each
request runs inside a span of the application's own, and feedback goes back as Phoenix span
annotations: a user's thumbs on the application's span (`add_span_annotation`, waiting for the
answer) and an online helpfulness score on the LLM span (`log_span_annotations`, not waiting).

With --release-after N, a release job (its own client, a deploy token) moves `production` to
the prompt's latest version after N requests; the application sees it at its next fetch.

Two ways to set tracing up: --setup manual (a TracerProvider, a BatchSpanProcessor, the OTLP
HTTP exporter, the OpenAI instrumentor) or --setup register (arize-phoenix-otel's `register`).

Everything the application sent is written to --ledger as JSON, so what the server reports can
be compared with it exactly. traces.sh sets RUNNER_URL, RUNNER_INGEST_TOKEN,
RUNNER_DEPLOY_TOKEN and MOCK_URL (the endpoint's base URL, ending in /v1).
"""

import argparse
import json
import os
import sys
import time

import openai
from openinference.instrumentation import using_prompt_template
from openinference.instrumentation.openai import OpenAIInstrumentor
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import Status, StatusCode
from phoenix.client import Client

URL = os.environ["RUNNER_URL"]
INGEST_TOKEN = os.environ["RUNNER_INGEST_TOKEN"]
MOCK_URL = os.environ["MOCK_URL"]
VARIABLES = ("company", "query")
QUERIES = [
    "Where is my order {n}? It was due on Monday.",
    "Can I change the address on order {n}?",
    "Please escalate ticket {n}, nobody has answered in a week.",
    "How do I reset my password? Attempt {n} failed.",
    "Is there a discount for annual plans? Asking for team {n}.",
    "My invoice {n} shows the wrong amount.",
    "What are your opening hours on holidays? Store {n}.",
]


class LlmSpans(SpanProcessor):
    """Remembers, for each span of the application's own, the LLM span that ended inside it:
    the span a score about the model's answer belongs to."""

    def __init__(self):
        self.by_parent = {}

    def on_end(self, span):
        if span.attributes.get("openinference.span.kind") == "LLM" and span.parent is not None:
            self.by_parent[span.parent.span_id] = span


def hex_id(value, width):
    return format(value, f"0{width}x")


def setup_manual(service, project, llm_spans):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create(
        {"service.name": service, "openinference.project.name": project}
    )
    provider = TracerProvider(resource=resource)
    exporter = OTLPSpanExporter(
        endpoint=f"{URL}/v1/traces",
        headers={"authorization": f"Bearer {INGEST_TOKEN}"},
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    provider.add_span_processor(llm_spans)
    OpenAIInstrumentor().instrument(tracer_provider=provider)
    return provider


def setup_register(service, project, llm_spans):
    from phoenix.otel import register

    # `register` takes the service name from the standard variable.
    os.environ["OTEL_SERVICE_NAME"] = service
    provider = register(
        endpoint=f"{URL}/v1/traces",
        project_name=project,
        headers={"authorization": f"Bearer {INGEST_TOKEN}"},
        batch=True,
        auto_instrument=True,
        verbose=False,
    )
    # Phoenix's provider drops its exporting processor when another is added, unless asked not to.
    provider.add_span_processor(llm_spans, replace_default_processor=False)
    return provider


def template_text(prompt):
    """The template as the application fetched it: each message with its placeholders. The
    client exposes a version only rendered, so it is rendered with each variable standing for
    its own placeholder."""
    rendered = prompt.format(variables={name: "{{" + name + "}}" for name in VARIABLES})
    return json.dumps(list(rendered.messages))


def ticket(index):
    """The variables of request `index`: one of QUERIES, numbered."""
    return {"company": "Acme", "query": QUERIES[index % len(QUERIES)].format(n=1000 + index)}


def handle_ticket(tracer, llm, llm_spans, prompt, variables, index):
    """One request as the application serves it: a span of its own around the model call, the
    prompt template's attributes set, a failed call marked on the span. Returns the answer (None
    when the call failed), the application's span id and the LLM span that ended inside it."""
    answer = None
    with tracer.start_as_current_span(
        "handle_ticket", attributes={"openinference.span.kind": "CHAIN"}
    ) as span:
        app_span = span.get_span_context().span_id
        with using_prompt_template(
            template=template_text(prompt), variables=variables, version=prompt.id
        ):
            try:
                answer = llm.chat.completions.create(**prompt.format(variables=variables))
            except openai.APIStatusError as e:
                span.set_status(Status(StatusCode.ERROR, f"the model answered {e.status_code}"))
    llm_span = llm_spans.by_parent.pop(app_span, None)
    if llm_span is None:
        sys.exit(f"error: request {index} made no LLM span (is the instrumentor on?)")
    return answer, app_span, llm_span


def release(prompt_name):
    """The release job: moves `production` to the latest version with a deploy token."""
    deployer = Client(base_url=URL, api_key=os.environ["RUNNER_DEPLOY_TOKEN"])
    latest = deployer.prompts.get(prompt_identifier=prompt_name)
    before = time.time()
    deployer.prompts.tags.create(prompt_version_id=latest.id, name="production")
    return {"version_id": latest.id, "before": before, "after": time.time()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--setup", choices=["manual", "register"], required=True)
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--requests", type=int, required=True)
    parser.add_argument("--fetch-every", type=int, default=25)
    parser.add_argument("--release-after", type=int)
    parser.add_argument("--ledger", required=True)
    args = parser.parse_args()

    setup = setup_manual if args.setup == "manual" else setup_register
    llm_spans = LlmSpans()
    provider = setup(args.service, args.project, llm_spans)
    tracer = provider.get_tracer("support-bot")

    phoenix = Client(base_url=URL, api_key=INGEST_TOKEN)
    # No retries: a failed call is one span with an error, as the ledger counts it.
    llm = openai.OpenAI(base_url=MOCK_URL, api_key="not-used", max_retries=0)

    ledger = {"service": args.service, "requests": [], "fetches": [], "release": None}
    prompt = None
    pending = []  # (request index, the application's span id) awaiting feedback

    def send_feedback():
        """Feedback for the requests since the last call, once their spans are exported (a
        user's thumbs arrive after the answer was shown)."""
        if not pending:
            return
        if not provider.force_flush(30_000):
            sys.exit("error: the span exporter did not flush within 30 s")
        scores = []
        for index, app_span in pending:
            entry = ledger["requests"][index]
            if index % 3 == 0:
                # A user's thumbs on the application's span: runner scores the LLM span of
                # that trace with it. A failed answer always gets a thumbs down.
                up = entry["ok"] and index % 4 != 0
                inserted = phoenix.spans.add_span_annotation(
                    span_id=app_span,
                    annotation_name="thumbs",
                    annotator_kind="HUMAN",
                    label="up" if up else "down",
                    score=1.0 if up else 0.0,
                    sync=True,
                )
                if not inserted or not inserted.get("id"):
                    sys.exit(f"error: the thumbs annotation on span {app_span} got no id")
                entry["annotations"]["thumbs"] = {
                    "score": 1.0 if up else 0.0,
                    "label": "up" if up else "down",
                }
            if index % 2 == 1:
                # The judge's score depends on the answer, so each version gets its own mean.
                score = (entry["output_tokens"] % 5) / 4 if entry["ok"] else 0.0
                label = "good" if score >= 0.5 else "poor"
                scores.append(
                    {
                        "name": "helpfulness",
                        "span_id": entry["llm_span"],
                        "annotator_kind": "LLM",
                        "result": {"score": score, "label": label},
                        "metadata": {"judge": "support-judge-v3"},
                    }
                )
                entry["annotations"]["helpfulness"] = {"score": score, "label": label}
        if scores:
            phoenix.spans.log_span_annotations(span_annotations=scores)
        pending.clear()

    for index in range(args.requests):
        if args.release_after is not None and index == args.release_after:
            send_feedback()
            ledger["release"] = release(args.prompt)
        if index % args.fetch_every == 0:
            send_feedback()
            prompt = phoenix.prompts.get(prompt_identifier=args.prompt, tag="production")
            ledger["fetches"].append(prompt.id)
        variables = ticket(index)
        answer, app_span, llm_span = handle_ticket(tracer, llm, llm_spans, prompt, variables, index)
        entry = {
            "version_id": prompt.id,
            "ok": answer is not None,
            "input_tokens": answer.usage.prompt_tokens if answer else 0,
            "output_tokens": answer.usage.completion_tokens if answer else 0,
            "llm_span": None,
            "annotations": {},
        }
        entry["llm_span"] = hex_id(llm_span.context.span_id, 16)
        # The span's own times, in the milliseconds OTLP's nanoseconds come to.
        entry["llm_start_ms"] = llm_span.start_time // 1_000_000
        entry["llm_end_ms"] = llm_span.end_time // 1_000_000
        entry["app_span"] = hex_id(app_span, 16)
        ledger["requests"].append(entry)
        pending.append((index, entry["app_span"]))
    send_feedback()
    provider.shutdown()

    with open(args.ledger, "w") as out:
        json.dump(ledger, out, indent=1)
    failed = sum(1 for r in ledger["requests"] if not r["ok"])
    print(
        f"{args.service}: {len(ledger['requests'])} requests ({failed} failed), "
        f"{len(ledger['fetches'])} fetches of production, "
        f"release {'done' if ledger['release'] else 'not asked'}"
    )


if __name__ == "__main__":
    main()
