"""The real Phoenix Python client's datasets resource against `runner serve`: uploads of every
form the client sends (examples, dictionaries, a DataFrame, a CSV file), the reads by name, id
and version, and the CLI reading the same datasets. run.sh sets RUNNER_URL, RUNNER_TOKEN,
RUNNER_BIN and RUNNER_DB.
"""

import asyncio
import json
import os
import tempfile

import pandas as pd
from phoenix.client import AsyncClient, Client

from checks import check, finish
from cli import runner

URL = os.environ["RUNNER_URL"]
TOKEN = os.environ["RUNNER_TOKEN"]




def plain(dataset):
    return [(dict(e["input"]), dict(e["output"]), dict(e["metadata"])) for e in dataset.examples]


client = Client(base_url=URL, api_key=TOKEN)

# 1. Examples as dictionaries with input, output and metadata.
first = client.datasets.create_dataset(
    name="support_queries",
    examples=[
        {"input": {"question": "Where is my order?"}, "output": {"answer": "order"},
         "metadata": {"source": "email"}},
        {"input": {"question": "Refund, please"}, "output": {"answer": "refund"}},
    ],
    dataset_description="what customers ask",
)
check(len(first) == 2 and first.name == "support_queries", "create_dataset with examples")
check(first.id.startswith("RGF0YXNldDo"), "the dataset id is a Dataset global id")
check(first.description == "what customers ask", "the description is kept")
check(
    plain(first)[0] == ({"question": "Where is my order?"}, {"answer": "order"}, {"source": "email"}),
    "an example reads back with its input, output and metadata",
)
check(all(e["id"] == e["node_id"] for e in first.examples), "examples carry id and node_id")

by_name = client.datasets.get_dataset(dataset="support_queries")
by_id = client.datasets.get_dataset(dataset=first.id)
check(plain(by_name) == plain(first) == plain(by_id), "get_dataset by name and by id")

# 2. create_dataset on an existing name is an update: the same content keeps the version.
same = client.datasets.create_dataset(
    name="support_queries",
    inputs=[{"question": "Where is my order?"}, {"question": "Refund, please"}],
    outputs=[{"answer": "order"}, {"answer": "refund"}],
    metadata=[{"source": "email"}, {}],
)
check(same.version_id == first.version_id, "the same content keeps the version")

# 3. Changed content: a new version holding exactly the given examples; a kept one keeps its id.
changed = client.datasets.create_dataset(
    name="support_queries",
    inputs=[{"question": "Refund, please"}, {"question": "Cancel my plan"}],
    outputs=[{"answer": "refund"}, {"answer": "cancel"}],
)
check(changed.version_id != first.version_id and len(changed) == 2, "changed content: a new version")
check(changed.examples[0]["id"] == first.examples[1]["id"], "an unchanged example keeps its id")

# 4. Appending rows makes a new version; older versions read as they were.
appended = client.datasets.add_examples_to_dataset(
    dataset="support_queries",
    inputs=[{"question": "Reset my password"}],
    outputs=[{"answer": "password"}],
)
check(len(appended) == 3, "add_examples_to_dataset appends a version")
versions = client.datasets.get_dataset_versions(dataset="support_queries")
check(
    [v["version_id"] for v in versions] == [appended.version_id, changed.version_id, first.version_id],
    "get_dataset_versions lists the versions newest first",
)
old = client.datasets.get_dataset(dataset=first.id, version_id=first.version_id)
check(plain(old) == plain(first), "an older version reads as it was")

# 5. A DataFrame and a CSV file arrive as gzipped CSV: every value a string, empty cells dropped.
frame = pd.DataFrame(
    {"question": ["Where is my order?", "Hi"], "answer": ["order", ""], "priority": [1, 2]}
)
from_frame = client.datasets.create_dataset(
    name="from_frame", dataframe=frame, input_keys=["question"], output_keys=["answer"],
    metadata_keys=["priority"],
)
check(
    plain(from_frame) == [
        ({"question": "Where is my order?"}, {"answer": "order"}, {"priority": "1"}),
        ({"question": "Hi"}, {}, {"priority": "2"}),
    ],
    "a DataFrame upload: strings, empty cells dropped",
)
with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
    f.write("question,answer\nWhere is my order?,order\n\"Refund, please\",refund\n")
from_csv = client.datasets.create_dataset(
    name="from_csv", csv_file_path=f.name, input_keys=["question"], output_keys=["answer"]
)
check(plain(from_csv)[1][0] == {"question": "Refund, please"}, "a CSV file upload")

# 6. Lists, and the async client.
names = [d["name"] for d in client.datasets.list()]
check(names == ["from_csv", "from_frame", "support_queries"], f"datasets.list, newest first: {names}")
check(len(client.datasets.list(limit=2)) == 2, "datasets.list(limit=2)")


async def read_async():
    aclient = AsyncClient(base_url=URL, api_key=TOKEN)
    return await aclient.datasets.get_dataset(dataset="support_queries")


check(plain(asyncio.run(read_async())) == plain(appended), "AsyncClient.datasets.get_dataset")

# 7. Errors as the client expects them.
try:
    client.datasets.get_dataset(dataset="no_such_dataset")
    check(False, "an unknown name is an error")
except ValueError as e:
    check("Dataset not found" in str(e), "an unknown name is the client's ValueError")

# 8. The CLI sees the same datasets, with their versions numbered.
listed = json.loads(runner("dataset", "list", "--json").stdout)
check(
    {(d["dataset"], d["seq"]) for d in listed}
    == {("support_queries", 3), ("from_frame", 1), ("from_csv", 1)},
    "runner dataset list shows what the client uploaded",
)

finish()
