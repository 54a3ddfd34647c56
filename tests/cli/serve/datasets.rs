//! Phoenix's dataset routes on `runner serve`: uploads (JSON and gzipped CSV forms) that create,
//! append to and replace a dataset's examples as versions, the reads by id and by name with
//! Phoenix's ids and paging, delete, and every refusal leaving the store as it was.

use super::{READER, Reply, Server, WRITER, bearer, tokens};
use crate::{Env, Mock, dump};
use serde_json::{Value, json};
use std::io::Write;

fn upload(server: &Server, body: &Value) -> Reply {
    server.post("/v1/datasets/upload?sync=true", body)
}

fn examples(server: &Server, dataset: &str, version: Option<&str>) -> Vec<Value> {
    let path = match version {
        Some(v) => format!("/v1/datasets/{dataset}/examples?version_id={v}"),
        None => format!("/v1/datasets/{dataset}/examples"),
    };
    let reply = server.get(&path);
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["data"]["examples"].as_array().unwrap().clone()
}

fn questions(examples: &[Value]) -> Vec<String> {
    examples
        .iter()
        .map(|e| e["input"]["question"].as_str().unwrap().to_string())
        .collect()
}

/// A multipart form as the Phoenix client sends a CSV or a DataFrame: the fields, then the
/// file gzipped.
fn csv_form(name: &str, action: &str, csv: &str, inputs: &[&str], outputs: &[&str]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(csv.as_bytes()).unwrap();
    let file = gz.finish().unwrap();
    let mut body = Vec::new();
    let mut field = |name: &str, value: &str| {
        write!(
            body,
            "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
        )
        .unwrap();
    };
    field("action", action);
    field("name", name);
    field("description", "");
    for key in inputs {
        field("input_keys[]", key);
    }
    for key in outputs {
        field("output_keys[]", key);
    }
    write!(
        body,
        "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"data.csv\"\r\n\
         Content-Type: text/csv\r\nContent-Encoding: gzip\r\n\r\n"
    )
    .unwrap();
    body.extend_from_slice(&file);
    body.extend_from_slice(b"\r\n--XyZ--\r\n");
    body
}

fn post_form(server: &Server, body: Vec<u8>) -> Reply {
    post_form_as(server, None, body)
}

/// A form upload with this `Authorization` header, if any.
fn post_form_as(server: &Server, auth: Option<&str>, body: Vec<u8>) -> Reply {
    let mut headers = vec![("content-type", "multipart/form-data; boundary=XyZ")];
    if let Some(auth) = auth {
        headers.push(("authorization", auth));
    }
    server
        .request(
            "POST",
            "/v1/datasets/upload?sync=true",
            &headers,
            Some(body),
        )
        .unwrap()
}

#[test]
fn uploads_make_versions_of_examples_read_back_by_id_and_by_name() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let first = upload(
        &server,
        &json!({
            "action": "update", "name": "support_queries", "description": "what customers ask",
            "inputs": [{"question": "Where is my order?"}, {"question": "Refund, please"}],
            "outputs": [{"answer": "order"}, {"answer": "refund"}],
            "metadata": [{"source": "email"}, {}],
        }),
    );
    assert_eq!(first.status, 200, "{}", first.text);
    let data = first.json()["data"].clone();
    assert_eq!(data["num_created_examples"], 2);
    let id = data["dataset_id"].as_str().unwrap().to_string();
    let v1 = data["version_id"].as_str().unwrap().to_string();
    assert!(
        id.starts_with("RGF0YXNldDo"),
        "a base64 Dataset: global id: {id}"
    );

    // The same examples again: the same version, nothing changed.
    let same = upload(
        &server,
        &json!({
            "action": "update", "name": "support_queries",
            "inputs": [{"question": "Where is my order?"}, {"question": "Refund, please"}],
            "outputs": [{"answer": "order"}, {"answer": "refund"}],
            "metadata": [{"source": "email"}, {}],
        }),
    )
    .json()["data"]
        .clone();
    assert_eq!(same["version_id"], v1.as_str());
    assert_eq!(same["num_created_examples"], 0);

    // Append: a new version with one example more; the first two keep their ids.
    let before = examples(&server, &id, None);
    let appended = upload(
        &server,
        &json!({"action": "append", "name": "support_queries",
                "inputs": [{"question": "Reset my password"}],
                "outputs": [{"answer": "password"}]}),
    )
    .json()["data"]
        .clone();
    assert_eq!(appended["num_created_examples"], 1);
    let v2 = appended["version_id"].as_str().unwrap().to_string();
    assert_ne!(v2, v1);
    let after = examples(&server, &id, None);
    assert_eq!(
        questions(&after),
        ["Where is my order?", "Refund, please", "Reset my password"]
    );
    assert_eq!(after[0]["id"], before[0]["id"]);
    assert_eq!(after[0]["node_id"], before[0]["id"]);
    assert_eq!(after[0]["metadata"], json!({"source": "email"}));

    // Update to exactly these examples: one kept, one new, two gone.
    let updated = upload(
        &server,
        &json!({"action": "update", "name": "support_queries",
                "inputs": [{"question": "Refund, please"}, {"question": "Cancel"}],
                "outputs": [{"answer": "refund"}, {"answer": "cancel"}]}),
    )
    .json()["data"]
        .clone();
    assert_eq!(
        (
            &updated["num_created_examples"],
            &updated["num_deleted_examples"]
        ),
        (&json!(1), &json!(2))
    );
    let v3 = updated["version_id"].as_str().unwrap().to_string();
    let latest = examples(&server, &id, None);
    assert_eq!(questions(&latest), ["Refund, please", "Cancel"]);
    assert_eq!(latest[0]["id"], before[1]["id"]);
    // Older versions read as they were.
    assert_eq!(questions(&examples(&server, &id, Some(&v1))).len(), 2);
    assert_eq!(questions(&examples(&server, &id, Some(&v2))).len(), 3);

    // Reads: by id, by name, versions newest first with paging.
    let got = server.get(&format!("/v1/datasets/{id}")).json()["data"].clone();
    assert_eq!(got["name"], "support_queries");
    assert_eq!(got["description"], "what customers ask");
    assert_eq!(got["example_count"], 2);
    let named = server.get("/v1/datasets?name=support_queries").json();
    assert_eq!(named["data"][0]["id"], id.as_str());
    let page = server
        .get(&format!("/v1/datasets/{id}/versions?limit=2"))
        .json();
    let listed: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [v3.as_str(), v2.as_str()]);
    assert_eq!(page["next_cursor"], v1.as_str());
    let rest = server
        .get(&format!("/v1/datasets/{id}/versions?limit=2&cursor={v1}"))
        .json();
    assert_eq!(rest["data"][0]["version_id"], v1.as_str());
    assert_eq!(rest["next_cursor"], Value::Null);

    // The CLI sees the same dataset, its versions numbered.
    let shown = env.json(&["dataset", "show", "support_queries", "--json"]);
    assert_eq!(shown.as_array().unwrap().len(), 3, "{shown}");
    assert_eq!(shown[0]["seq"], 3);
    assert_eq!(shown[0]["rows"], 2);
    server.stop();
}

#[test]
fn datasets_list_newest_first_a_page_at_a_time_and_files_pushed_by_the_cli_read_as_examples() {
    let env = Env::new();
    env.write("pushed.csv", "id,question\nr1,hello\nr2,bye\n");
    env.ok(&["dataset", "push", "pushed.csv", "--name", "pushed"]);
    let server = Server::start(&env, &[]);
    for name in ["a", "b", "c"] {
        let reply = upload(
            &server,
            &json!({"name": name, "inputs": [{"question": name}]}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let first = server.get("/v1/datasets?limit=3").json();
    let names: Vec<&str> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["c", "b", "a"]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let second = server
        .get(&format!("/v1/datasets?limit=3&cursor={cursor}"))
        .json();
    assert_eq!(second["data"][0]["name"], "pushed");
    assert_eq!(second["next_cursor"], Value::Null);
    // The pushed file: each row an example's input, ids stable per row id.
    let id = second["data"][0]["id"].as_str().unwrap();
    let rows = examples(&server, id, None);
    assert_eq!(rows[0]["input"], json!({"id": "r1", "question": "hello"}));
    assert_eq!(rows[0]["output"], json!({}));
    // Phoenix's default page is 10.
    assert_eq!(
        server.get("/v1/datasets").json()["data"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    server.stop();
}

#[test]
fn a_gzipped_csv_form_reads_as_phoenix_reads_it() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let reply = post_form(
        &server,
        csv_form(
            "from_csv",
            "update",
            "question,answer,extra\nWhere is my order?,order,x\n\"Refund, please\",,y\n",
            &["question"],
            &["answer"],
        ),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = reply.json()["data"]["dataset_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rows = examples(&server, &id, None);
    assert_eq!(rows[0]["input"], json!({"question": "Where is my order?"}));
    assert_eq!(rows[0]["output"], json!({"answer": "order"}));
    // An empty cell is left out; every value is a string; unnamed columns are dropped.
    assert_eq!(rows[1]["output"], json!({}));
    assert_eq!(rows[1]["metadata"], json!({}));
    // `create` on a name that exists is refused, and nothing is written.
    let before = dump(&env.db);
    let again = post_form(
        &server,
        csv_form("from_csv", "create", "question\nx\n", &["question"], &[]),
    );
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("already exists"), "{}", again.text);
    assert_eq!(dump(&env.db), before);
    server.stop();
}

#[test]
fn bad_uploads_and_ids_are_refused_and_store_nothing() {
    let env = Env::new();
    let args = tokens(&env);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&env, &args);
    let writer = bearer(WRITER);
    let auth = [("authorization", writer.as_str())];
    let good = json!({"name": "kept", "inputs": [{"q": "1"}]});
    let created = server.call("POST", "/v1/datasets/upload", &auth, Some(&good));
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json()["data"]["dataset_id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = dump(&env.db);
    let refusals: Vec<(Value, &str)> = vec![
        (json!({"inputs": [{"q": "1"}]}), "Dataset name is required"),
        (json!({"name": "x"}), "input is required"),
        (json!({"name": "x", "inputs": ["text"]}), "dictionary"),
        (
            json!({"name": "x", "inputs": [{"q": 1}], "outputs": [{}, {}]}),
            "same length",
        ),
        (
            json!({"name": "x", "inputs": [{"q": 1}], "splits": ["train"]}),
            "splits",
        ),
        (
            json!({"name": "x", "inputs": [{"q": 1}], "action": "merge"}),
            "Invalid dataset action",
        ),
        (
            json!({"name": "x", "inputs": [{"q": 1}, {"q": 2}], "example_ids": ["a", "a"]}),
            "Duplicate example_id",
        ),
        (
            json!({"name": "Bad Name", "inputs": [{"q": 1}]}),
            "invalid dataset name",
        ),
        (json!({"name": "x", "inputs": []}), "at least one example"),
    ];
    for (body, says) in refusals {
        let reply = server.call("POST", "/v1/datasets/upload", &auth, Some(&body));
        assert_eq!(reply.status, 422, "{body}: {}", reply.text);
        assert!(reply.text.contains(says), "{body}: {}", reply.text);
    }
    // Not JSON, not a form, not gzip.
    let reply = server
        .request(
            "POST",
            "/v1/datasets/upload",
            &[("authorization", &writer), ("content-type", "text/plain")],
            Some(b"x".to_vec()),
        )
        .unwrap();
    assert_eq!(reply.status, 422, "{}", reply.text);
    let mut broken = csv_form("y", "create", "q\n1\n", &["q"], &[]);
    let at = broken.len() - 20;
    broken[at] ^= 0xff;
    let reply = post_form_as(&server, Some(&writer), broken);
    assert_eq!(reply.status, 422, "{}", reply.text);
    // Too many examples, or a small gzip that would unpack into millions of cells: refused
    // before they are held in memory.
    let many: Vec<Value> = (0..100_001).map(|_| json!({})).collect();
    let reply = server.call(
        "POST",
        "/v1/datasets/upload",
        &auth,
        Some(&json!({"name": "many", "inputs": many})),
    );
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(
        reply.text.contains("more than 100000 examples"),
        "{}",
        reply.text
    );
    let header: Vec<String> = (0..2_001).map(|i| format!("c{i}")).collect();
    let mut wide = header.join(",") + "\n";
    for _ in 0..1_000 {
        wide.push_str(&",".repeat(2_000));
        wide.push('\n');
    }
    let form = csv_form("wide", "create", &wide, &["c0"], &[]);
    assert!(form.len() < 100_000, "the gzip is small: {}", form.len());
    let reply = post_form_as(&server, Some(&writer), form);
    assert_eq!(reply.status, 422, "{}", reply.text);
    assert!(reply.text.contains("cells"), "{}", reply.text);
    // A read-only token cannot upload or delete; no token at all is 401.
    let reader = bearer(READER);
    let reply = server.call(
        "POST",
        "/v1/datasets/upload",
        &[("authorization", &reader)],
        Some(&good),
    );
    assert_eq!(reply.status, 403, "{}", reply.text);
    let reply = server.call(
        "DELETE",
        &format!("/v1/datasets/{id}"),
        &[("authorization", &reader)],
        None,
    );
    assert_eq!(reply.status, 403, "{}", reply.text);
    assert_eq!(
        server
            .call("POST", "/v1/datasets/upload", &[], Some(&good))
            .status,
        401
    );
    assert_eq!(dump(&env.db), before, "a refused upload wrote something");

    // Ids: not a global id 422; another type's id 404 on get, 422 where Phoenix says so; an
    // unknown dataset 404, its versions an empty list.
    let get = |path: &str| server.call("GET", path, &[("authorization", &reader)], None);
    assert_eq!(get("/v1/datasets/kept").status, 422);
    let prompt_id = "UHJvbXB0OjE="; // Prompt:1
    assert_eq!(get(&format!("/v1/datasets/{prompt_id}")).status, 404);
    assert_eq!(
        get(&format!("/v1/datasets/{prompt_id}/versions")).status,
        422
    );
    let unknown = "RGF0YXNldDo5OTk="; // Dataset:999
    assert_eq!(get(&format!("/v1/datasets/{unknown}")).status, 404);
    let versions = get(&format!("/v1/datasets/{unknown}/versions"));
    assert_eq!(versions.status, 200);
    assert_eq!(versions.json()["data"], json!([]));
    assert_eq!(get(&format!("/v1/datasets/{unknown}/examples")).status, 404);
    assert_eq!(get("/v1/datasets?limit=0").status, 422);
    assert_eq!(get("/v1/datasets?cursor=zzz").status, 422);
    server.stop();
}

#[test]
fn a_dataset_an_experiment_ran_on_is_kept_and_others_are_deleted() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    for name in ["used", "unused"] {
        let reply = upload(
            &server,
            &json!({"name": name, "inputs": [{"question": "Where is my order?"}],
                    "outputs": [{"answer": "order"}]}),
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let id_of = |name: &str| {
        server.get(&format!("/v1/datasets?name={name}")).json()["data"][0]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (used, unused) = (id_of("used"), id_of("unused"));
    // An experiment on the uploaded examples, with a template reading the input object.
    let mock = Mock::start(&env, &[]);
    env.ok(&[
        "prompt",
        "create",
        "answer",
        "--template",
        "Answer: {{input.question}}",
    ]);
    let out = env.json(&[
        "experiment",
        "--prompt",
        "answer",
        "--dataset",
        "store:used",
        "--base-url",
        &mock.url,
        "--model",
        "mock",
        "--expected-column",
        "output.answer",
        "--json",
    ]);
    assert_eq!(
        out["experiment"]["dataset"]["path"], "store:used@1",
        "{out}"
    );
    assert_eq!(out["summary"]["ok"], 1, "{out}");
    let before = dump(&env.db);
    let reply = server.call("DELETE", &format!("/v1/datasets/{used}"), &[], None);
    assert_eq!(reply.status, 409, "{}", reply.text);
    assert!(
        reply.text.contains("1 recorded experiment"),
        "{}",
        reply.text
    );
    assert_eq!(dump(&env.db), before);
    let reply = server.call("DELETE", &format!("/v1/datasets/{unused}"), &[], None);
    assert_eq!(reply.status, 204, "{}", reply.text);
    assert_eq!(server.get(&format!("/v1/datasets/{unused}")).status, 404);
    let reply = server.call("DELETE", &format!("/v1/datasets/{unused}"), &[], None);
    assert_eq!(reply.status, 404);
    server.stop();
}
