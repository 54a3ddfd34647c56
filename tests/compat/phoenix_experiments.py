"""The Phoenix workflow's own experiment code against `runner serve`: the dataset comes from the
server, `run_experiment` runs a task that fetches the tagged prompt through the Phoenix client,
renders it and calls the OpenAI client (against `runner mock-server`), for `production` and for
`staging`, with two evaluators; then `runner promote --candidate-experiment …
--baseline-experiment …` moves the tag only when the gate passes. run.sh sets RUNNER_URL,
RUNNER_TOKEN, RUNNER_BIN, RUNNER_DB and RUNNER_MOCK_URL.
"""

import asyncio
import json
import os

import httpx
from openai import OpenAI
from phoenix.client import AsyncClient, Client
from phoenix.client.types.prompts import PromptVersion

from checks import check, finish
from cli import runner

URL = os.environ["RUNNER_URL"]
TOKEN = os.environ["RUNNER_TOKEN"]
MOCK = os.environ["RUNNER_MOCK_URL"]
PROMPT = "support_reply"




client = Client(base_url=URL, api_key=TOKEN)
openai_client = OpenAI(base_url=MOCK, api_key="not-needed")

# The prompt: production reads the question, staging does not (the mock endpoint echoes the
# last user message, so only answers that repeat the question name its topic).
versions = {}
for text, tag in [
    ("Customer asks: {{question}}", "production"),
    ("Thank you for your message, we will get back to you.", "staging"),
]:
    versions[tag] = client.prompts.create(
        name=PROMPT,
        version=PromptVersion([{"role": "user", "content": text}], model_name="mock"),
    )
    client.prompts.tags.create(prompt_version_id=versions[tag].id, name=tag)

dataset = client.datasets.create_dataset(
    name="support_questions",
    inputs=[
        {"question": "Where is my order 1042?"},
        {"question": "I want a refund for my last order"},
        {"question": "How do I reset my password?"},
        {"question": "Can I change my delivery address?"},
    ],
    outputs=[{"topic": "order"}, {"topic": "refund"}, {"topic": "password"}, {"topic": "address"}],
)
dataset = client.datasets.get_dataset(dataset="support_questions")
check(len(dataset) == 4, "the dataset comes from the server")


def task_with_prompt(input, tag):
    prompt = client.prompts.get(prompt_identifier=PROMPT, tag=tag)
    request = prompt.format(variables={"question": input["question"]})
    reply = openai_client.chat.completions.create(**request)
    return reply.choices[0].message.content


def names_topic(output, expected):
    return expected["topic"] in output.lower()


def short(output):
    return 1.0 if len(output) < 200 else 0.0




def run(tag, name):
    ran = client.experiments.run_experiment(
        dataset=dataset,
        task=lambda input: task_with_prompt(input, tag),
        evaluators=[names_topic, short],
        experiment_name=name,
        experiment_metadata={"prompt": PROMPT, "tag": tag},
        print_summary=False,
    )
    check(len(ran["task_runs"]) == 4, f"{name}: run_experiment stored a run per example")
    check(
        len(ran["evaluation_runs"]) == 8,
        f"{name}: two evaluations per run ({len(ran['evaluation_runs'])})",
    )
    return ran


experiments = {"production": run("production", "support-production"),
               "staging": run("staging", "support-staging")}
cand_id = experiments["staging"]["experiment_id"]
fetched = client.experiments.get_experiment(experiment_id=cand_id)
check(len(fetched["task_runs"]) == 4, "get_experiment reads the runs back")
check(
    sorted({e.name for e in fetched["evaluation_runs"]}) == ["names_topic", "short"],
    "get_experiment reads the evaluations back from the JSON export",
)

# A third evaluator afterwards, as evaluate_experiment does for a finished experiment.
client.experiments.evaluate_experiment(
    experiment=fetched, evaluators=[lambda output: len(output) > 0], print_summary=False
)
listed = httpx.get(
    f"{URL}/v1/datasets/{dataset.id}/experiments", headers={"Authorization": f"Bearer {TOKEN}"}
).json()["data"]
check(
    [e["name"] for e in listed] == ["support-staging", "support-production"],
    "the dataset lists its experiments, newest first",
)
check(
    all(e["successful_run_count"] == 4 and e["missing_run_count"] == 0 for e in listed),
    "each experiment counts 4 successful runs, none missing",
)


# The async client with concurrency, on an experiment that names no prompt: stored and
# readable like Phoenix's, not evidence for a gate.
async def async_run():
    aclient = AsyncClient(base_url=URL, api_key=TOKEN)
    ds = await aclient.datasets.get_dataset(dataset="support_questions")

    async def task(input):
        return input["question"].upper()

    return await aclient.experiments.run_experiment(
        dataset=ds, task=task, evaluators=[names_topic], experiment_name="unlinked",
        concurrency=4, print_summary=False,
    )


unlinked = asyncio.run(async_run())
check(len(unlinked["task_runs"]) == 4, "AsyncClient.run_experiment with concurrency=4")

# runner keeps it as its own experiment with no prompt: shown and compared, never evidence.
shown = json.loads(runner("experiment", "show", "unlinked", "--json").stdout)
check(
    shown["experiment"]["prompt"] is None and shown["summary"]["results"] == 4,
    f"the experiment that names no prompt is runner's, with no prompt: {shown['experiment']['prompt']}",
)
compared = runner(
    "compare", "--baseline-experiment", "support-production", "--candidate-experiment", "unlinked",
    "--json",
)
rates = {e["evaluator"]: e["candidate_pass_rate"] for e in json.loads(compared.stdout)["evaluators"]}
check("names_topic" in rates, f"runner compare takes it beside a linked one: {rates}")

# runner sees the linked experiments as its own, by name.
shown = json.loads(runner("experiment", "show", "support-staging", "--json").stdout)
check(shown["experiment"]["prompt"] == PROMPT, "runner experiment show finds it by name")
check(shown["experiment"]["tag"] == "staging", "linked to the staging version, by its tag")
check(shown["experiment"]["dataset"]["path"] == "store:support_questions@1", "on the stored dataset version")
passes = {e["evaluator"]: e["pass_rate"] for e in shown["summary"]["evaluators"]}
check(passes.get("names_topic") == 0.0, f"staging names no topic: {passes}")


def promote(candidate, baseline):
    return runner(
        "promote", "--prompt", PROMPT, "--from", "staging", "--to", "production",
        "--candidate-experiment", candidate, "--baseline-experiment", baseline, ok=False,
    )


def history():
    return json.loads(runner("tag", "history", PROMPT, "--json").stdout)


# An experiment that names no prompt version is no evidence for the gate.
before = history()
refused = promote("unlinked", "support-production")
check(
    refused.returncode == 2 and "names no prompt version" in refused.stderr,
    f"promote refuses an experiment of no version (exit {refused.returncode}): {refused.stderr[-300:]}",
)
check(history() == before, "so nothing moves")

# The gate refuses staging: it names no topic where production names every one.
refused = promote("support-staging", "support-production")
check(refused.returncode == 1, f"a worse candidate is refused (exit {refused.returncode}): {refused.stdout[-300:]}")
check(history() == before, "a refused promotion moves nothing")

# A better staging version, run again through the same code: the gate passes and moves the tag.
better = client.prompts.create(
    name=PROMPT,
    version=PromptVersion([{"role": "user", "content": "Question: {{question}} Answer briefly."}],
                          model_name="mock"),
)
client.prompts.tags.create(prompt_version_id=better.id, name="staging")
run("staging", "support-staging-2")
passed = promote("support-staging-2", "support-production")
check(passed.returncode == 0, f"promote passes the gate (exit {passed.returncode}): {passed.stderr[-300:]}")
last = history()[-1]
check(
    (last["tag"], last["action"], last["to_seq"]) == ("production", "promote", 3),
    f"production moved to the better version as a promotion: {last}",
)
check(
    last.get("evidence", {}).get("candidate_experiment", "").startswith("exp_"),
    "the tag history records the experiments as the evidence",
)

finish()
