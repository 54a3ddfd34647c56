"""One script of the whole Phoenix prompt API, run through the official Phoenix client (and raw
HTTP where the client has no method), that writes every operation's answer, normalised, as JSON.

Run against a real Phoenix server (tests/compat/record.sh) it records the fixture
(tests/compat/phoenix-fixture.json); run against `runner serve` (tests/compat/run.sh) its output is
compared with that fixture by compare.py.

    python differential.py --url URL [--token TOKEN] --out FILE

Normalisation: ids (version, prompt, tag, dataset, example, experiment and run ids, cursors)
become placeholders numbered in the order they first appear, timestamps become "<time>", measured
latencies "<latency>", and an error's body is kept as its status
and kind only (the wording of error messages is not compared, see compare.py).
"""

import argparse
import base64
import datetime
import json
import os
import re
import sys
import tempfile
import uuid

import httpx
from phoenix.client import Client
from phoenix.client.types.prompts import PromptVersion

parser = argparse.ArgumentParser()
parser.add_argument("--url", required=True)
parser.add_argument("--token", default=None)
parser.add_argument("--out", required=True)
args = parser.parse_args()

# --- recording -------------------------------------------------------------------------------

exchanges = []


def on_response(response):
    response.read()
    exchanges.append(response)


headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
http = httpx.Client(
    base_url=args.url, headers=headers, event_hooks={"response": [on_response]}, timeout=30
)
client = Client(http_client=http)

ID_KEYS = {
    "id",
    "latest_version_id",
    "version_id",
    "source_prompt_id",
    "prompt_version_id",
    "dataset_id",
    "node_id",
    "experiment_id",
    "experiment_run_id",
    "dataset_example_id",
    "dataset_version_id",
    "example_id",
    "trace_id",
}
ids = {}


def placeholder(value):
    if value not in ids:
        ids[value] = f"<id {len(ids) + 1}>"
    return ids[value]


def normalise(value, key=None):
    if isinstance(value, datetime.datetime):
        return "<time>"
    if key == "latency_ms" and isinstance(value, (int, float)):
        return "<latency>"
    if isinstance(value, dict):
        return {k: normalise(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, str):
        if key == "project_name":
            return "<project>"
        if key in ID_KEYS:
            return placeholder(value)
        if key == "next_cursor":
            return "<cursor>"
        if key is not None and (key.endswith("_at") or key.endswith("_time")):
            return "<time>"
    return value


def answer(response):
    """An HTTP answer as compared: status and, for a success, the normalised JSON body (or text);
    for an error, only whether its body was JSON or text."""
    out = {"method": response.request.method, "status": response.status_code}
    ctype = response.headers.get("content-type", "")
    if response.status_code >= 400:
        return out
    if not response.content:
        out["body"] = None
    elif ctype.startswith("application/json"):
        out["body"] = normalise(response.json())
    else:
        out["body"] = response.text.strip()
    return out


operations = []


def op(label, call):
    """Runs one operation: its HTTP answers and what the client gave back (or raised)."""
    del exchanges[:]
    record = {"op": label}
    try:
        result = call()
        record["result"] = normalise(result)
    except httpx.HTTPStatusError as e:
        record["raised"] = f"HTTPStatusError {e.response.status_code}"
        result = None
    except Exception as e:  # the client's own exceptions (ValueError, PhoenixException, ...)
        record["raised"] = type(e).__name__
        result = None
    record["http"] = [answer(r) for r in exchanges]
    operations.append(record)
    return result


def raw(method, path, **kwargs):
    """A request the client has no method for; the answer is recorded by the hook."""
    response = http.request(method, path, **kwargs)
    return None if response.status_code >= 400 or not response.content else response.json()


def quietly(call):
    """A read outside the recorded operations (its result feeds later ones); None if it fails."""
    try:
        return call()
    except Exception:
        return None


def dumped(version):
    return None if version is None else version._dumps()


def missing_version_id(existing):
    """A well-formed version id that names no version, in the server's own id form."""
    try:
        decoded = base64.b64decode(existing).decode()
        if re.fullmatch(r"PromptVersion:\d+", decoded):
            return base64.b64encode(b"PromptVersion:999999").decode()
    except Exception:
        pass
    try:
        return str(uuid.UUID(int=uuid.UUID(existing).int ^ 0xFFFF))
    except ValueError:
        return "00000000-0000-0000-0000-000000000000"


def chat(provider, params, messages, **extra):
    version = {
        "model_provider": provider,
        "model_name": extra.pop("model_name", "gpt-4o-mini"),
        "template": {"type": "chat", "messages": messages},
        "template_type": "CHAT",
        "template_format": extra.pop("template_format", "MUSTACHE"),
        "invocation_parameters": params,
    }
    version.update(extra)
    return version


def openai(**params):
    return {"type": "openai", "openai": params}


USER = [{"role": "user", "content": "Hello {{name}}"}]

# --- the server ------------------------------------------------------------------------------

op("GET /arize_phoenix_version", lambda: http.get("arize_phoenix_version").text.strip())
op("list prompts on an empty server", lambda: raw("GET", "v1/prompts"))

# --- creating prompts and versions -----------------------------------------------------------

v1_local = PromptVersion(
    [
        {"role": "system", "content": "You are a support agent for {{company}}."},
        {"role": "user", "content": "Customer query: {{query}}"},
    ],
    model_name="gpt-4o-mini",
    description="first cut",
)

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
created = {}


class CreatedIds(dict):
    def __getitem__(self, label):
        # A version that could not be created: an id that names nothing.
        return created.get(label, "00000000-0000-0000-0000-000000000000")


created_id = CreatedIds()


def create(label, name, version, **kwargs):
    def call():
        v = client.prompts.create(name=name, version=version, **kwargs)
        created[label] = v.id
        return v._dumps()

    return op(label, call)


create(
    "create: chat, mustache, prompt description and metadata",
    "support",
    v1_local,
    prompt_description="Greets customers",
    prompt_metadata={"owner": "support-team"},
)
v1_id = created_id["create: chat, mustache, prompt description and metadata"]
create("create: from_openai with tools, tool_choice, response_format", "support", v2_local)
create(
    "create: from_anthropic (part lists, max_tokens, system)",
    "support",
    PromptVersion.from_anthropic(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 500,
            "temperature": 0.1,
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "{{query}}"}],
        }
    ),
)
create(
    "create: f-string",
    "support",
    PromptVersion(
        [{"role": "user", "content": "Hello {name}, about {topic}"}],
        model_name="gpt-4o-mini",
        template_format="F_STRING",
    ),
)
create(
    "create: format none",
    "plain",
    PromptVersion(
        [{"role": "user", "content": "Say {{nothing}} literally"}],
        model_name="gpt-4o-mini",
        template_format="NONE",
    ),
    prompt_description="A prompt with no placeholders",
)
create(
    "create: roles ai, model, developer, tool",
    "roles",
    PromptVersion(
        [
            {"role": "developer", "content": "Follow the rules."},
            {"role": "user", "content": "Hi {{name}}"},
            {"role": "ai", "content": "Hello!"},
            {"role": "model", "content": "How can I help?"},
            {"role": "tool", "content": "{}"},
        ],
        model_name="gpt-4o-mini",
    ),
)
create(
    "create: tool_call and tool_result parts",
    "tooluse",
    PromptVersion(
        [
            {"role": "user", "content": [{"type": "text", "text": "Where is order {{id}}?"}]},
            {
                "role": "ai",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {
                        "type": "tool_call",
                        "tool_call_id": "call_1",
                        "tool_call": {
                            "type": "function",
                            "name": "lookup_order",
                            "arguments": '{"id": "{{id}}"}',
                        },
                    },
                ],
            },
            {
                "role": "tool",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_call_id": "call_1",
                        "tool_result": {"status": "shipped"},
                    }
                ],
            },
        ],
        model_name="gpt-4o-mini",
    ),
)
create(
    "create: existing prompt with another description (kept on the prompt)",
    "plain",
    PromptVersion([{"role": "user", "content": "Second"}], model_name="gpt-4o", template_format="NONE"),
    prompt_description="Ignored: the prompt exists",
    prompt_metadata={"ignored": True},
)
create(
    "create: from_openai with a specific function and no parallel calls",
    "functions",
    PromptVersion.from_openai(
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "{{q}}"}],
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}},
                {"type": "function", "function": {"name": "g", "strict": True}},
            ],
            "tool_choice": {"type": "function", "function": {"name": "g"}},
            "parallel_tool_calls": False,
        }
    ),
)
create(
    "create: from_openai with tool_choice required and a strict schema",
    "functions",
    PromptVersion.from_openai(
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "{{q}}"}],
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "required",
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "out", "schema": {"type": "object"}, "strict": True},
            },
        }
    ),
)
create(
    "create: from_anthropic with tools",
    "claude-tools",
    PromptVersion.from_anthropic(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 200,
            "messages": [{"role": "user", "content": "{{q}}"}],
            "tools": [
                {
                    "name": "lookup",
                    "description": "Look up",
                    "input_schema": {"type": "object", "properties": {}},
                }
            ],
            "tool_choice": {"type": "auto"},
        }
    ),
)

# Raw bodies for what the client does not build: version metadata, other providers.
op(
    "POST /v1/prompts: version metadata",
    lambda: raw(
        "POST",
        "v1/prompts",
        json={
            "prompt": {"name": "meta", "description": "has metadata", "metadata": {"team": "a"}},
            "version": chat(
                "OPENAI",
                openai(temperature=0.5, top_p=0.9, seed=7),
                USER,
                description="with metadata",
                metadata={"ticket": "PR-12", "reviewed": True, "score": 0.5},
            ),
        },
    ),
)
op(
    "POST /v1/prompts: no version description",
    lambda: raw(
        "POST",
        "v1/prompts",
        json={"prompt": {"name": "meta"}, "version": chat("OPENAI", openai(), USER)},
    ),
)
op(
    "POST /v1/prompts: GOOGLE invocation parameters",
    lambda: raw(
        "POST",
        "v1/prompts",
        json={
            "prompt": {"name": "gemini"},
            "version": chat(
                "GOOGLE",
                {"type": "google", "google": {"temperature": 0.3, "max_output_tokens": 100}},
                USER,
                model_name="gemini-2.5-flash",
            ),
        },
    ),
)
op(
    "POST /v1/prompts: ANTHROPIC with thinking",
    lambda: raw(
        "POST",
        "v1/prompts",
        json={
            "prompt": {"name": "thinker"},
            "version": chat(
                "ANTHROPIC",
                {
                    "type": "anthropic",
                    "anthropic": {
                        "max_tokens": 2000,
                        "thinking": {"type": "enabled", "budget_tokens": 1024},
                    },
                },
                USER,
                model_name="claude-sonnet-4-5",
            ),
        },
    ),
)

# POST /v1/prompts/{id}/versions
op(
    "POST /v1/prompts/{name}/versions with tags",
    lambda: raw(
        "POST",
        "v1/prompts/meta/versions",
        json={
            "version": chat("OPENAI", openai(temperature=1.0), USER, description="third"),
            "tags": [{"name": "candidate", "description": "to try"}],
        },
    ),
)
op(
    "POST /v1/prompts/{name}/versions: unknown prompt",
    lambda: raw("POST", "v1/prompts/no-such-prompt/versions", json={"version": chat("OPENAI", openai(), USER)}),
)
op(
    "POST /v1/prompts/{name}/versions: invalid name",
    lambda: raw("POST", "v1/prompts/Bad%20Name/versions", json={"version": chat("OPENAI", openai(), USER)}),
)
op(
    "POST /v1/prompts/{name}/versions: provider and parameters disagree",
    lambda: raw(
        "POST",
        "v1/prompts/meta/versions",
        json={"version": chat("ANTHROPIC", openai(), USER)},
    ),
)

# --- reading ----------------------------------------------------------------------------------

op("get latest by name", lambda: dumped(client.prompts.get(prompt_identifier="support")))
op("get by version id", lambda: dumped(client.prompts.get(prompt_version_id=v1_id)))
op("GET /v1/prompts/{name}/latest", lambda: raw("GET", "v1/prompts/support/latest"))
op("GET /v1/prompt_versions/{id}", lambda: raw("GET", f"v1/prompt_versions/{v1_id}"))
op("GET /v1/prompts/meta/latest (metadata kept)", lambda: raw("GET", "v1/prompts/meta/latest"))
op(
    "get the tool_call version back",
    lambda: dumped(client.prompts.get(prompt_identifier="tooluse")),
)
op("get the roles version back", lambda: dumped(client.prompts.get(prompt_identifier="roles")))

support_latest = quietly(lambda: client.prompts.get(prompt_identifier="support"))
op(
    ".format: f-string",
    lambda: support_latest.format(variables={"name": "Ada", "topic": "billing"}).messages,
)
v1_read = quietly(lambda: client.prompts.get(prompt_version_id=v1_id))
op(
    ".format: mustache messages",
    lambda: v1_read.format(variables={"company": "Acme", "query": "Where?"}).messages,
)
op(".format: mustache kwargs", lambda: v1_read.format(variables={"company": "A", "query": "q"}).kwargs)
v2_read = quietly(lambda: client.prompts.get(prompt_version_id=created_id["create: from_openai with tools, tool_choice, response_format"]))
op(
    ".format: openai tools kwargs",
    lambda: v2_read.format(variables={"tone": "kind", "company": "A", "query": "q"}).kwargs,
)
v3_read = quietly(lambda: client.prompts.get(prompt_version_id=created_id["create: from_anthropic (part lists, max_tokens, system)"]))
op(".format: anthropic messages (part lists)", lambda: v3_read.format(variables={"query": "hi"}).messages)
op(".format: anthropic kwargs", lambda: v3_read.format(variables={"query": "hi"}).kwargs)
plain = quietly(lambda: client.prompts.get(prompt_version_id=created_id["create: format none"]))
op(".format: none", lambda: plain.format(variables={"nothing": "x"}).messages)
tooluse = quietly(lambda: client.prompts.get(prompt_identifier="tooluse"))
op(".format: tool_call parts for openai", lambda: tooluse.format(variables={"id": "42"}).messages)
roles = quietly(lambda: client.prompts.get(prompt_identifier="roles"))
op(".format: roles for openai", lambda: roles.format(variables={"name": "Ada"}).messages)

# --- lists ------------------------------------------------------------------------------------

op("list prompts", lambda: raw("GET", "v1/prompts"))
first_page = op("list prompts, limit 3", lambda: raw("GET", "v1/prompts", params={"limit": 3}))
if first_page and first_page.get("next_cursor"):
    cursor = first_page["next_cursor"]
    op(
        "list prompts, second page",
        lambda: raw("GET", "v1/prompts", params={"limit": 3, "cursor": cursor}),
    )
else:
    op("list prompts, second page", lambda: None)
op("list prompts, limit 0", lambda: raw("GET", "v1/prompts", params={"limit": 0}))
op("list prompts, limit abc", lambda: raw("GET", "v1/prompts", params={"limit": "abc"}))
op("list prompts, bad cursor", lambda: raw("GET", "v1/prompts", params={"cursor": "%%%"}))

op("list versions", lambda: raw("GET", "v1/prompts/support/versions"))
vpage = op("list versions, limit 2", lambda: raw("GET", "v1/prompts/support/versions", params={"limit": 2}))
if vpage and vpage.get("next_cursor"):
    vcursor = vpage["next_cursor"]
    op(
        "list versions, second page",
        lambda: raw("GET", "v1/prompts/support/versions", params={"limit": 2, "cursor": vcursor}),
    )
else:
    op("list versions, second page", lambda: None)
op("list versions of an unknown prompt", lambda: raw("GET", "v1/prompts/no-such-prompt/versions"))
op("list versions, invalid name", lambda: raw("GET", "v1/prompts/Bad%20Name/versions"))
op("list versions, limit 0", lambda: raw("GET", "v1/prompts/support/versions", params={"limit": 0}))

# --- tags -------------------------------------------------------------------------------------

v2_id = created_id["create: from_openai with tools, tool_choice, response_format"]
v3_id = created_id["create: from_anthropic (part lists, max_tokens, system)"]
op(
    "tags.create staging with a description",
    lambda: client.prompts.tags.create(prompt_version_id=v2_id, name="staging", description="ready"),
)
op("tags.list", lambda: client.prompts.tags.list(prompt_version_id=v2_id))
op("tags.list of an untagged version", lambda: client.prompts.tags.list(prompt_version_id=v1_id))
op(
    "tags.create production (new: displaces nothing)",
    lambda: client.prompts.tags.create(prompt_version_id=v2_id, name="production"),
)
op(
    "tags.create a third tag",
    lambda: client.prompts.tags.create(prompt_version_id=v2_id, name="canary", description="5%"),
)
op("tags.list newest first", lambda: client.prompts.tags.list(prompt_version_id=v2_id))
tpage = op(
    "GET version tags, limit 2",
    lambda: raw("GET", f"v1/prompt_versions/{v2_id}/tags", params={"limit": 2}),
)
if tpage and tpage.get("next_cursor"):
    tcursor = tpage["next_cursor"]
    op(
        "GET version tags, second page",
        lambda: raw("GET", f"v1/prompt_versions/{v2_id}/tags", params={"limit": 2, "cursor": tcursor}),
    )
else:
    op("GET version tags, second page", lambda: None)
op(
    "tags.create production again on the same version",
    lambda: client.prompts.tags.create(prompt_version_id=v2_id, name="production"),
)
op(
    "tags.create moves staging (unprotected)",
    lambda: client.prompts.tags.create(prompt_version_id=v3_id, name="staging"),
)
op("tags.list after staging moved away", lambda: client.prompts.tags.list(prompt_version_id=v2_id))
op(
    "tags.create moves production without force",
    lambda: client.prompts.tags.create(prompt_version_id=v1_id, name="production"),
)
op(
    "get by tag production",
    lambda: dumped(client.prompts.get(prompt_identifier="support", tag="production")),
)
op("GET /v1/prompts/{name}/tags/staging", lambda: raw("GET", "v1/prompts/support/tags/staging"))
op("get by an unknown tag", lambda: dumped(client.prompts.get(prompt_identifier="support", tag="nope")))
op("GET by an invalid tag name", lambda: raw("GET", "v1/prompts/support/tags/Bad%20Tag"))
op(
    "tags.create with an invalid name",
    lambda: client.prompts.tags.create(prompt_version_id=v2_id, name="Bad Name"),
)
op(
    "tags.create on an unknown version",
    lambda: client.prompts.tags.create(prompt_version_id=missing_version_id(v2_id), name="x"),
)
op(
    "tags.create on a malformed version id",
    lambda: client.prompts.tags.create(prompt_version_id="not-an-id", name="x"),
)
op("tags.list of an unknown version", lambda: client.prompts.tags.list(prompt_version_id=missing_version_id(v2_id)))
op("tags.list of a malformed version id", lambda: client.prompts.tags.list(prompt_version_id="not-an-id"))
# A version id in Phoenix's own form that names no version (what a client that moved from
# Phoenix may hold): 404 on both servers.
PHOENIX_FORM_ID = base64.b64encode(b"PromptVersion:999999").decode()
op(
    "tags.create on an unknown version id in Phoenix's form",
    lambda: client.prompts.tags.create(prompt_version_id=PHOENIX_FORM_ID, name="x"),
)
op(
    "tags.list of an unknown version id in Phoenix's form",
    lambda: client.prompts.tags.list(prompt_version_id=PHOENIX_FORM_ID),
)
op("DELETE tag canary", lambda: raw("DELETE", f"v1/prompt_versions/{v2_id}/tags/canary"))
op("DELETE tag canary again", lambda: raw("DELETE", f"v1/prompt_versions/{v2_id}/tags/canary"))
op("DELETE tag with an invalid name", lambda: raw("DELETE", f"v1/prompt_versions/{v2_id}/tags/Bad%20Name"))
op("DELETE tag on a malformed version id", lambda: raw("DELETE", "v1/prompt_versions/not-an-id/tags/x"))
op(
    "DELETE tag on an unknown version",
    lambda: raw("DELETE", f"v1/prompt_versions/{missing_version_id(v2_id)}/tags/x"),
)
op("get by the deleted tag", lambda: dumped(client.prompts.get(prompt_identifier="support", tag="canary")))
op("get by the tag the versions route set", lambda: raw("GET", "v1/prompts/meta/tags/candidate"))

# --- lookups that fail ------------------------------------------------------------------------

op("get an unknown prompt", lambda: dumped(client.prompts.get(prompt_identifier="no-such-prompt")))
op("GET latest of an invalid name", lambda: raw("GET", "v1/prompts/Bad%20Name/latest"))
op("get a malformed version id", lambda: dumped(client.prompts.get(prompt_version_id="not-an-id")))
op(
    "get an unknown version id",
    lambda: dumped(client.prompts.get(prompt_version_id=missing_version_id(v1_id))),
)
op(
    "get an unknown version id in Phoenix's form",
    lambda: dumped(client.prompts.get(prompt_version_id=PHOENIX_FORM_ID)),
)

# --- validation -------------------------------------------------------------------------------


def invalid(label, version, prompt=None, **kwargs):
    body = {"prompt": prompt or {"name": "invalid"}, "version": version}
    op(label, lambda: raw("POST", "v1/prompts", json=body, **kwargs))


invalid("422: temperature 'hot'", chat("OPENAI", openai(temperature="hot"), USER))
invalid("422: unknown invocation parameter", chat("OPENAI", openai(colour="blue"), USER))
invalid(
    "422: ANTHROPIC without max_tokens",
    chat("ANTHROPIC", {"type": "anthropic", "anthropic": {"temperature": 0.1}}, USER),
)
invalid("422: unknown provider", chat("ACME", openai(), USER))
invalid("422: unknown template format", chat("OPENAI", openai(), USER, template_format="JINJA"))
invalid("422: template type mismatch", chat("OPENAI", openai(), USER, template_type="STR"))
invalid("422: unknown role", chat("OPENAI", openai(), [{"role": "bot", "content": "x"}]))
invalid("422: empty content list", chat("OPENAI", openai(), [{"role": "user", "content": []}]))
invalid(
    "422: unknown part type",
    chat("OPENAI", openai(), [{"role": "user", "content": [{"type": "image", "url": "x"}]}]),
)
invalid("422: invalid prompt name", chat("OPENAI", openai(), USER), prompt={"name": "Bad Name"})
invalid("422: missing model_name", {k: v for k, v in chat("OPENAI", openai(), USER).items() if k != "model_name"})
invalid("422: max_tokens as text", chat("OPENAI", openai(max_tokens="many"), USER))
invalid(
    "422: response_format json_object",
    chat("OPENAI", openai(), USER, response_format={"type": "json_object"}),
)
invalid(
    "422: tools with an unknown type",
    chat("OPENAI", openai(), USER, tools={"type": "tools", "tools": [{"type": "magic"}]}),
)
op(
    "422: body sent as text/plain",
    lambda: raw(
        "POST",
        "v1/prompts",
        content=json.dumps({"prompt": {"name": "plaintext"}, "version": chat("OPENAI", openai(), USER)}),
        headers={"Content-Type": "text/plain"},
    ),
)
op(
    "422: malformed JSON",
    lambda: raw("POST", "v1/prompts", content=b"{not json", headers={"Content-Type": "application/json"}),
)
op("422: missing version", lambda: raw("POST", "v1/prompts", json={"prompt": {"name": "x"}}))
op("after the refusals: list prompts", lambda: [p["name"] for p in raw("GET", "v1/prompts")["data"]])

# --- update -----------------------------------------------------------------------------------

op(
    "update description and metadata",
    lambda: client.prompts.update(
        prompt_identifier="support",
        prompt_description="Greets customers kindly",
        prompt_metadata={"owner": "cx", "tier": 1},
    ),
)
op("update description to None", lambda: client.prompts.update(prompt_identifier="plain", prompt_description=None))
op("update metadata only", lambda: client.prompts.update(prompt_identifier="meta", prompt_metadata={"team": "b"}))
op("update with nothing given", lambda: client.prompts.update(prompt_identifier="meta"))
op(
    "update an unknown prompt",
    lambda: client.prompts.update(prompt_identifier="no-such-prompt", prompt_description="x"),
)
op("PATCH with an empty body", lambda: raw("PATCH", "v1/prompts/meta", json={}))
op("PATCH an invalid name", lambda: raw("PATCH", "v1/prompts/Bad%20Name", json={"description": "x"}))
op("PATCH description with padding", lambda: raw("PATCH", "v1/prompts/meta", json={"description": "  padded  "}))
op("list prompts after updates", lambda: raw("GET", "v1/prompts"))
op(
    "the prompt's id as identifier",
    lambda: raw("GET", f"v1/prompts/{raw('GET', 'v1/prompts', params={'limit': 1})['data'][0]['id']}/latest"),
)
op("get latest after update (versions unchanged)", lambda: dumped(client.prompts.get(prompt_identifier="support")))

# --- delete -----------------------------------------------------------------------------------

op("delete a prompt", lambda: client.prompts.delete(prompt_identifier="plain"))
op("get the deleted prompt", lambda: dumped(client.prompts.get(prompt_identifier="plain")))
op("GET latest of the deleted prompt", lambda: raw("GET", "v1/prompts/plain/latest"))
op("list versions of the deleted prompt", lambda: raw("GET", "v1/prompts/plain/versions"))
op("list prompts after the delete", lambda: [p["name"] for p in raw("GET", "v1/prompts")["data"]])
op("delete it again", lambda: client.prompts.delete(prompt_identifier="plain"))
op("DELETE an invalid name", lambda: raw("DELETE", "v1/prompts/Bad%20Name"))
op("update the deleted prompt", lambda: client.prompts.update(prompt_identifier="plain", prompt_description="x"))
op(
    "POST a version to the deleted prompt",
    lambda: raw("POST", "v1/prompts/plain/versions", json={"version": chat("OPENAI", openai(), USER)}),
)

# Last, because Phoenix stores this one (a prompt more in every list after it); runner refuses it.
invalid(
    "POST /v1/prompts: provider and parameters disagree",
    chat("ANTHROPIC", openai(), USER),
    prompt={"name": "mismatch"},
)

# Phoenix refuses a STR template; runner stores it (a prompt more in later lists).
invalid(
    "POST /v1/prompts: STR template",
    {
        "model_provider": "OPENAI",
        "model_name": "m",
        "template": {"type": "string", "template": "Hi {{name}}"},
        "template_type": "STR",
        "template_format": "MUSTACHE",
        "invocation_parameters": openai(),
    },
    prompt={"name": "plain-string"},
)

# --- datasets -----------------------------------------------------------------------------------


def as_dict(dataset):
    return None if dataset is None else dataset.to_dict()


def missing_global_id(existing, kind):
    """A well-formed global id of `kind` that names nothing, in the server's own id form."""
    raw_id = base64.b64decode(existing).decode().split(":", 1)[1]
    if raw_id.isdigit():
        return base64.b64encode(f"{kind}:999999".encode()).decode()
    try:
        missing = str(uuid.UUID(int=uuid.UUID(raw_id).int ^ 0xFFFF))
    except ValueError:
        missing = raw_id[:-4] + "zzzz"
    return base64.b64encode(f"{kind}:{missing}".encode()).decode()


QUERIES = [
    {"input": {"question": "Where is my order?"}, "output": {"answer": "order"},
     "metadata": {"source": "email"}},
    {"input": {"question": "Refund, please"}, "output": {"answer": "refund"}},
    {"input": {"question": "Reset my password"}, "output": {"answer": "password"},
     "metadata": {"source": "chat", "priority": 2}},
]

op("list datasets on an empty server", lambda: raw("GET", "v1/datasets"))
created = op(
    "create_dataset with examples",
    lambda: as_dict(client.datasets.create_dataset(
        name="queries", examples=QUERIES, dataset_description="what customers ask")),
)
dataset_id = quietly(lambda: raw("GET", "v1/datasets", params={"name": "queries"})["data"][0]["id"])
first_version = quietly(lambda: client.datasets.get_dataset(dataset="queries").version_id)
op("get_dataset by name", lambda: as_dict(client.datasets.get_dataset(dataset="queries")))
op("get_dataset by id", lambda: as_dict(client.datasets.get_dataset(dataset=dataset_id)))
op(
    "create_dataset again with the same examples",
    lambda: as_dict(client.datasets.create_dataset(name="queries", examples=QUERIES)),
)
op(
    "create_dataset again with changed examples",
    lambda: as_dict(client.datasets.create_dataset(
        name="queries",
        examples=[QUERIES[1], {"input": {"question": "Where is my order?"}, "output": {"answer": "shipping"}},
                  {"input": {"question": "Cancel my plan"}, "output": {"answer": "cancel"}}],
    )),
)
op(
    "add_examples_to_dataset",
    lambda: as_dict(client.datasets.add_examples_to_dataset(
        dataset="queries", inputs=[{"question": "Change my address"}], outputs=[{"answer": "address"}])),
)
op(
    "add_examples_to_dataset with an example already there",
    lambda: as_dict(client.datasets.add_examples_to_dataset(
        dataset="queries", inputs=[{"question": "Cancel my plan"}], outputs=[{"answer": "cancel"}])),
)
op("get_dataset_versions", lambda: client.datasets.get_dataset_versions(dataset="queries"))
op(
    "get_dataset of the first version",
    lambda: as_dict(client.datasets.get_dataset(dataset="queries", version_id=first_version)),
)
op("GET versions, one a page", lambda: raw("GET", f"v1/datasets/{dataset_id}/versions", params={"limit": 1}))
op(
    "GET versions, second page",
    lambda: raw("GET", f"v1/datasets/{dataset_id}/versions", params={
        "limit": 1,
        "cursor": raw("GET", f"v1/datasets/{dataset_id}/versions", params={"limit": 1})["next_cursor"],
    }),
)
op("GET examples without a version", lambda: raw("GET", f"v1/datasets/{dataset_id}/examples"))

try:
    import pandas as pd

    frame = pd.DataFrame({"question": ["Where is my order?", "Hi"], "answer": ["order", ""], "priority": [1, 2]})
    op(
        "create_dataset from a DataFrame",
        lambda: as_dict(client.datasets.create_dataset(
            name="frame", dataframe=frame, input_keys=["question"], output_keys=["answer"],
            metadata_keys=["priority"])),
    )
except ImportError:
    op("create_dataset from a DataFrame", lambda: "pandas is not installed")

csv_path = os.path.join(tempfile.mkdtemp(), "queries.csv")
with open(csv_path, "w") as f:
    f.write("question,answer,note\nWhere is my order?,order,\n\"Refund, please\",refund,vip\n")
op(
    "create_dataset from a CSV file",
    lambda: as_dict(client.datasets.create_dataset(
        name="from_csv", csv_file_path=csv_path, input_keys=["question"], output_keys=["answer"],
        metadata_keys=["note"])),
)
op(
    "create_dataset from a CSV file, keys inferred",
    lambda: as_dict(client.datasets.create_dataset(name="inferred", csv_file_path=csv_path)),
)

UPLOAD = "v1/datasets/upload"
op("upload: create on an existing name", lambda: raw(
    "POST", UPLOAD, params={"sync": True}, json={"action": "create", "name": "queries", "inputs": [{"q": 1}]}))
op("upload: an unknown action", lambda: raw(
    "POST", UPLOAD, params={"sync": True}, json={"action": "merge", "name": "x", "inputs": [{"q": 1}]}))
op("upload: no name", lambda: raw("POST", UPLOAD, params={"sync": True}, json={"inputs": [{"q": 1}]}))
op("upload: no inputs", lambda: raw("POST", UPLOAD, params={"sync": True}, json={"name": "x"}))
op("upload: inputs not objects", lambda: raw(
    "POST", UPLOAD, params={"sync": True}, json={"name": "x", "inputs": ["q"]}))
op("upload: outputs of another length", lambda: raw(
    "POST", UPLOAD, params={"sync": True}, json={"name": "x", "inputs": [{"q": 1}], "outputs": [{}, {}]}))
op("upload: duplicate example ids", lambda: raw(
    "POST", UPLOAD, params={"sync": True},
    json={"name": "x", "inputs": [{"q": 1}, {"q": 2}], "example_ids": ["a", "a"]}))
op("upload: text/plain", lambda: raw(
    "POST", UPLOAD, params={"sync": True}, content=b"q", headers={"content-type": "text/plain"}))
op("upload: JSON action create", lambda: raw(
    "POST", UPLOAD, params={"sync": True},
    json={"action": "create", "name": "plain_json", "inputs": [{"q": "1"}], "outputs": [{"a": "1"}],
          "metadata": [{"m": 1}], "description": "by hand"}))

op("list datasets", lambda: raw("GET", "v1/datasets"))
op("list datasets, two a page", lambda: raw("GET", "v1/datasets", params={"limit": 2}))
op(
    "list datasets, second page",
    lambda: raw("GET", "v1/datasets", params={
        "limit": 2, "cursor": raw("GET", "v1/datasets", params={"limit": 2})["next_cursor"]}),
)
op("list datasets by name", lambda: raw("GET", "v1/datasets", params={"name": "from_csv"}))
op("list datasets by an unknown name", lambda: raw("GET", "v1/datasets", params={"name": "nope"}))
op("list datasets, limit 0", lambda: raw("GET", "v1/datasets", params={"limit": 0}))
op("get_dataset by an unknown name", lambda: as_dict(client.datasets.get_dataset(dataset="nope")))
unknown_dataset = quietly(lambda: missing_global_id(dataset_id, "Dataset"))
op("GET an unknown dataset id", lambda: raw("GET", f"v1/datasets/{unknown_dataset}"))
op("GET a malformed dataset id", lambda: raw("GET", "v1/datasets/not-an-id"))
op("GET a dataset id of another type", lambda: raw(
    "GET", "v1/datasets/" + base64.b64encode(b"Prompt:1").decode()))
op("GET versions of an unknown dataset", lambda: raw("GET", f"v1/datasets/{unknown_dataset}/versions"))
op("GET versions of a malformed id", lambda: raw("GET", "v1/datasets/not-an-id/versions"))
op("GET examples of an unknown dataset", lambda: raw("GET", f"v1/datasets/{unknown_dataset}/examples"))
op("GET examples of an unknown version", lambda: raw(
    "GET", f"v1/datasets/{dataset_id}/examples",
    params={"version_id": quietly(lambda: missing_global_id(first_version, "DatasetVersion"))}))

inferred_id = quietly(lambda: raw("GET", "v1/datasets", params={"name": "inferred"})["data"][0]["id"])
op("DELETE a dataset", lambda: raw("DELETE", f"v1/datasets/{inferred_id}"))
op("GET the deleted dataset", lambda: raw("GET", f"v1/datasets/{inferred_id}"))
op("DELETE it again", lambda: raw("DELETE", f"v1/datasets/{inferred_id}"))
op("DELETE a malformed dataset id", lambda: raw("DELETE", "v1/datasets/not-an-id"))
op("list datasets after the delete", lambda: [d["name"] for d in raw("GET", "v1/datasets")["data"]])

# --- experiments ------------------------------------------------------------------------------


def summarise(ran):
    """A RanExperiment as JSON: its ids, runs and evaluations (in a stable order)."""
    if ran is None:
        return None
    evaluations = sorted(
        (
            {
                "name": e.name,
                "annotator_kind": e.annotator_kind,
                "error": e.error,
                "result": e.result,
                "experiment_run_id": e.experiment_run_id,
            }
            for e in ran["evaluation_runs"]
        ),
        key=lambda e: (e["name"], json.dumps(e["result"], sort_keys=True, default=str)),
    )
    runs = sorted(ran["task_runs"], key=lambda r: (json.dumps(r.get("output"), default=str), r["repetition_number"]))
    return {
        "experiment_id": ran["experiment_id"],
        "dataset_id": ran["dataset_id"],
        "dataset_version_id": ran["dataset_version_id"],
        "experiment_metadata": ran["experiment_metadata"],
        "task_runs": runs,
        "evaluation_runs": evaluations,
    }


def answer_task(input):
    return "answer: " + input["question"]


def exact(output, expected):
    return output.endswith(expected.get("answer", "-"))


def length(output):
    return len(output) / 100.0


failed_once = set()


def flaky_task(input):
    if input["question"] not in failed_once:
        failed_once.add(input["question"])
        raise RuntimeError("first try fails")
    return "second try: " + input["question"]


from_csv = quietly(lambda: client.datasets.get_dataset(dataset="from_csv"))
ran_one = op(
    "run_experiment with a task and two evaluators",
    lambda: summarise(client.experiments.run_experiment(
        dataset=from_csv, task=answer_task, evaluators=[exact, length], experiment_name="exp-one",
        experiment_metadata={"team": "support"}, print_summary=False)),
)
exp_one = quietly(lambda: ran_one["experiment_id"])
op("GET the experiment", lambda: raw("GET", f"v1/experiments/{exp_one}"))
op("GET its runs", lambda: raw("GET", f"v1/experiments/{exp_one}/runs"))
op("GET its runs, one a page", lambda: raw("GET", f"v1/experiments/{exp_one}/runs", params={"limit": 1}))
op(
    "GET its runs, second page",
    lambda: raw("GET", f"v1/experiments/{exp_one}/runs", params={
        "limit": 1,
        "cursor": raw("GET", f"v1/experiments/{exp_one}/runs", params={"limit": 1})["next_cursor"]}),
)
op("GET its JSON export", lambda: sorted(
    raw("GET", f"v1/experiments/{exp_one}/json"), key=lambda r: json.dumps(r["input"], sort_keys=True)))
op(
    "evaluate_experiment with a third evaluator",
    lambda: summarise(client.experiments.evaluate_experiment(
        experiment=client.experiments.get_experiment(experiment_id=exp_one),
        evaluators={"nonempty": lambda output: bool(output)}, print_summary=False)),
)
op("get_experiment after the evaluations", lambda: summarise(
    client.experiments.get_experiment(experiment_id=exp_one)))
op(
    "run_experiment whose task fails once per example",
    lambda: summarise(client.experiments.run_experiment(
        dataset=from_csv, task=flaky_task, experiment_name="exp-flaky", print_summary=False)),
)
op(
    "run_experiment with two repetitions",
    lambda: summarise(client.experiments.run_experiment(
        dataset=from_csv, task=answer_task, evaluators=[exact], experiment_name="exp-reps",
        repetitions=2, print_summary=False)),
)
csv_id = quietly(lambda: from_csv.id)
op("list the dataset's experiments", lambda: raw("GET", f"v1/datasets/{csv_id}/experiments"))

# Experiments and runs, raw, with every error case.
created_raw = op("POST an experiment on the first version of queries", lambda: raw(
    "POST", f"v1/datasets/{dataset_id}/experiments",
    json={"name": "raw", "version_id": first_version, "repetitions": 1}))
raw_exp = quietly(lambda: created_raw["data"]["id"])
first_examples = quietly(lambda: raw(
    "GET", f"v1/datasets/{dataset_id}/examples", params={"version_id": first_version})["data"]["examples"])
latest_examples = quietly(lambda: raw("GET", f"v1/datasets/{dataset_id}/examples")["data"]["examples"])


def run_body(example, repetition=1, **extra):
    body = {"dataset_example_id": example, "output": {"text": "hi"}, "repetition_number": repetition,
            "start_time": "2026-12-06T10:00:00+00:00", "end_time": "2026-12-06T10:00:01+00:00"}
    body.update(extra)
    return body


posted = op("POST a run", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs", json=run_body(first_examples[0]["id"])))
op("POST the same successful run again", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs", json=run_body(first_examples[0]["id"])))
errored = op("POST an errored run", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs", json=run_body(first_examples[1]["id"], error="boom")))
op("POST the errored run again, successful", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs", json=run_body(first_examples[1]["id"])))
op("POST a run for an example outside the version", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs",
    json=run_body(next(e["id"] for e in latest_examples
                       if e["id"] not in {f["id"] for f in first_examples}))))
op("POST a run with a repetition beyond the experiment's", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs", json=run_body(first_examples[2]["id"], repetition=2)))
unknown_experiment = quietly(lambda: missing_global_id(raw_exp, "Experiment"))
op("POST a run for an unknown experiment", lambda: raw(
    "POST", f"v1/experiments/{unknown_experiment}/runs", json=run_body(first_examples[0]["id"])))
op("POST a run for an unknown example", lambda: raw(
    "POST", f"v1/experiments/{raw_exp}/runs",
    json=run_body(missing_global_id(first_examples[0]["id"], "DatasetExample"))))
run_id = quietly(lambda: posted["data"]["id"])


def evaluation_body(run, name, **result):
    return {"experiment_run_id": run, "name": name, "annotator_kind": "CODE",
            "start_time": "2026-12-06T10:00:01+00:00", "end_time": "2026-12-06T10:00:02+00:00",
            "result": result}


op("POST an evaluation", lambda: raw("POST", "v1/experiment_evaluations",
                                     json=evaluation_body(run_id, "correct", score=0.5, label="half")))
op("POST the evaluation again (upsert)", lambda: raw(
    "POST", "v1/experiment_evaluations", json=evaluation_body(run_id, "correct", score=1.0)))
op("POST an evaluation for an unknown run", lambda: raw(
    "POST", "v1/experiment_evaluations",
    json=evaluation_body(missing_global_id(run_id, "ExperimentRun"), "correct", score=1.0)))
op("GET the raw experiment's JSON export", lambda: sorted(
    raw("GET", f"v1/experiments/{raw_exp}/json"), key=lambda r: json.dumps(r["input"], sort_keys=True)))
op("GET an unknown experiment", lambda: raw("GET", f"v1/experiments/{unknown_experiment}"))
op("GET a malformed experiment id", lambda: raw("GET", "v1/experiments/not-an-id"))
op("GET runs of an unknown experiment", lambda: raw("GET", f"v1/experiments/{unknown_experiment}/runs"))
op("GET experiments of an unknown dataset", lambda: raw(
    "GET", f"v1/datasets/{missing_global_id(dataset_id, 'Dataset')}/experiments"))
op("POST an experiment on an unknown dataset", lambda: raw(
    "POST", f"v1/datasets/{missing_global_id(dataset_id, 'Dataset')}/experiments", json={}))
op("POST an experiment on an unknown version", lambda: raw(
    "POST", f"v1/datasets/{dataset_id}/experiments",
    json={"version_id": missing_global_id(first_version, "DatasetVersion")}))
op("DELETE the raw experiment", lambda: raw("DELETE", f"v1/experiments/{raw_exp}"))
op("DELETE it again", lambda: raw("DELETE", f"v1/experiments/{raw_exp}"))

# --- routes that do not exist -----------------------------------------------------------------

op("GET an unknown route", lambda: http.get("v1/no-such-route").status_code)
op("PUT /v1/prompts", lambda: raw("PUT", "v1/prompts", json={}))

with open(args.out, "w") as f:
    json.dump({"operations": operations}, f, indent=1, sort_keys=True)
    f.write("\n")
print(f"{len(operations)} operations written to {args.out}", file=sys.stderr)
