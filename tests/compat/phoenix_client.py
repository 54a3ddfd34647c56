"""The real Phoenix Python client against `runner serve`: every call the compatibility test
makes, with the results checked. run.sh sets RUNNER_URL, RUNNER_TOKEN (a write token),
RUNNER_DEPLOY_TOKEN (a deploy token named `release`), RUNNER_BIN and RUNNER_DB.
"""

import json
import os

import httpx
from phoenix.client import Client
from phoenix.client.types.prompts import PromptVersion

from cli import runner

URL = os.environ["RUNNER_URL"]
TOKEN = os.environ["RUNNER_TOKEN"]
DEPLOY_TOKEN = os.environ["RUNNER_DEPLOY_TOKEN"]
NAME = "support-greeting"
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1
    print(f"ok   {what}")


def status_of(call):
    try:
        call()
    except httpx.HTTPStatusError as e:
        return e.response.status_code
    return None




client = Client(base_url=URL, api_key=TOKEN)

# 1. prompts.create: a new prompt (chat, mustache), then a second version built from an OpenAI
#    request with parameters, tools and a JSON-schema response format.
v1_local = PromptVersion(
    [
        {"role": "system", "content": "You are a support agent for {{company}}."},
        {"role": "user", "content": "Customer query: {{query}}"},
    ],
    model_name="gpt-4o-mini",
    description="first cut",
)
v1 = client.prompts.create(
    name=NAME,
    version=v1_local,
    prompt_description="Greets customers",
    prompt_metadata={"owner": "support-team"},
)
check(isinstance(v1.id, str) and v1.id, "prompts.create returns a version with an id")
check(v1._dumps() == v1_local._dumps(), "the created version reads back exactly as sent")

v2_local = PromptVersion.from_openai(
    {
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "Be {{tone}}. Answer for {{company}}."},
            {"role": "user", "content": "{{query}}"},
        ],
        "temperature": 0.2,
        "max_tokens": 300,
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup_order",
                    "description": "Find an order by id",
                    "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "auto",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "reply", "schema": {"type": "object"}},
        },
    },
    description="tools and a response schema",
)
v2 = client.prompts.create(name=NAME, version=v2_local)
check(v2.id != v1.id, "a second create on the same name appends a version")
check(
    v2._dumps() == v2_local._dumps(),
    "invocation parameters, tools and response_format round-trip",
)

# An Anthropic version: another provider's invocation parameters.
v3_local = PromptVersion.from_anthropic(
    {
        "model": "claude-sonnet-4-5",
        "max_tokens": 500,
        "temperature": 0.1,
        "system": "You are terse.",
        "messages": [{"role": "user", "content": "{{query}}"}],
    }
)
v3 = client.prompts.create(name=NAME, version=v3_local)


check(
    v3._dumps() == {**v3_local._dumps(), "description": ""},
    "an ANTHROPIC version round-trips, its part lists unchanged (no description reads as '')",
)
check(
    v3._dumps()["invocation_parameters"]
    == {"type": "anthropic", "anthropic": {"max_tokens": 500, "temperature": 0.1}},
    "ANTHROPIC invocation parameters are kept as sent",
)

# An f-string version.
v4_local = PromptVersion(
    [{"role": "user", "content": "Hello {name}, about {topic}"}],
    model_name="gpt-4o-mini",
    template_format="F_STRING",
)
v4 = client.prompts.create(name=NAME, version=v4_local)
latest = client.prompts.get(prompt_identifier=NAME)
check(latest.id == v4.id, "prompts.get without a tag returns the latest version")
check(
    latest.format(variables={"name": "Ada", "topic": "billing"}).messages
    == [{"role": "user", "content": "Hello Ada, about billing"}],
    "an F_STRING version formats",
)

# 2. prompts.tags.create / list.
client.prompts.tags.create(prompt_version_id=v2.id, name="staging", description="ready for review")
tags = client.prompts.tags.list(prompt_version_id=v2.id)
check([t["name"] for t in tags] == ["staging"], "tags.list shows the new tag")
check(tags[0]["description"] == "ready for review", "the tag keeps its description")
check(client.prompts.tags.list(prompt_version_id=v1.id) == [], "an untagged version lists no tags")

# production is protected: creating it displaces nothing, so the plain client may (as Phoenix
# allows); moving it is refused (403) unless the client holds a deploy token, or is built with
# the force header (and an actor), as the CLI needs --force.
client.prompts.tags.create(prompt_version_id=v2.id, name="production")
check(
    "production" in [t["name"] for t in client.prompts.tags.list(prompt_version_id=v2.id)],
    "creating protected 'production' needs no force, as in Phoenix and the CLI",
)
check(
    status_of(lambda: client.prompts.tags.create(prompt_version_id=v1.id, name="production"))
    == 403,
    "moving protected 'production' with a write token and without force is refused (403)",
)
release = Client(
    base_url=URL,
    api_key=TOKEN,
    headers={"X-Runner-Force": "true", "X-Runner-Actor": "release-bot"},
)
release.prompts.tags.create(prompt_version_id=v1.id, name="production", description="ship v1")
check(
    [t["name"] for t in client.prompts.tags.list(prompt_version_id=v1.id)] == ["production"],
    "a forced tags.create moves production",
)
deployer = Client(base_url=URL, api_key=DEPLOY_TOKEN)
deployer.prompts.tags.create(prompt_version_id=v2.id, name="production", description="try v2")
deployer.prompts.tags.create(prompt_version_id=v1.id, name="production", description="back")
check(
    [t["name"] for t in client.prompts.tags.list(prompt_version_id=v1.id)] == ["production"],
    "a deploy token's plain tags.create moves production, without force",
)

# 3. prompts.get by tag, then .format(variables=...).
production = client.prompts.get(prompt_identifier=NAME, tag="production")
check(production.id == v1.id, "prompts.get(tag='production') returns the tagged version")
formatted = production.format(variables={"company": "Acme", "query": "Where is my order?"})
check(
    formatted.messages
    == [
        {"role": "system", "content": "You are a support agent for Acme."},
        {"role": "user", "content": "Customer query: Where is my order?"},
    ],
    ".format(variables=...) renders the messages",
)
check(formatted.kwargs == {"model": "gpt-4o-mini"}, ".format gives the model")

staging = client.prompts.get(prompt_identifier=NAME, tag="staging")
variables = {"tone": "kind", "company": "Acme", "query": "hi"}
check(
    staging.format(variables=variables).kwargs == v2_local.format(variables=variables).kwargs,
    "the staging version formats to the same OpenAI kwargs (tools, tool_choice, response_format)",
)
check(client.prompts.get(prompt_version_id=v3.id).id == v3.id, "prompts.get by version id")

# 4. Errors as the client expects them.
try:
    client.prompts.get(prompt_identifier=NAME, tag="no-such-tag")
    check(False, "an unknown tag is an error")
except ValueError as e:
    check("Prompt not found" in str(e), "an unknown tag is 404 (the client's ValueError)")
intruder = Client(base_url=URL, api_key="x" * 32)
check(
    status_of(lambda: intruder.prompts.get(prompt_identifier=NAME)) == 401,
    "a wrong token is refused (401)",
)

# 5. The CLI reads what the client wrote, with the caller in the tag history.
history = json.loads(runner("tag", "history", NAME, "--json").stdout)
moves = [(e["tag"], e["action"], e["actor"], e["forced"], e["deploy"]) for e in history]
check(
    moves == [
        ("staging", "set", "api:compat", False, False),
        ("production", "set", "api:compat", False, False),
        ("production", "move", "api:compat (release-bot)", True, False),
        ("production", "move", "api:release", False, True),
        ("production", "move", "api:release", False, True),
    ],
    f"the tag history records each caller: {moves}",
)
versions = json.loads(runner("prompt", "versions", NAME, "--json").stdout)
check(len(versions) == 4, "the CLI lists the four versions")

print(f"{checks} passed, 0 failed")
