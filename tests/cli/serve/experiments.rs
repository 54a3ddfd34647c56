//! Phoenix's experiment routes on `runner serve`: an experiment on a dataset version, its runs
//! and evaluations as the client posts them, the reads, and a linked experiment becoming
//! runner's own (results, scores, the gate); every refusal leaving the store as it was.

use super::{Reply, Server};
use crate::{Env, dump};
use serde_json::{Value, json};

const T0: &str = "2026-12-06T10:00:00.000000+00:00";
const T1: &str = "2026-12-06T10:00:00.250000+00:00";

/// A dataset of two examples; its id and its examples' ids.
fn dataset(server: &Server) -> (String, Vec<String>) {
    let reply = server.post(
        "/v1/datasets/upload?sync=true",
        &json!({"name": "questions", "inputs": [{"q": "Where is my order?"}, {"q": "Refund?"}],
                "outputs": [{"topic": "order"}, {"topic": "refund"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.text);
    let id = reply.json()["data"]["dataset_id"]
        .as_str()
        .unwrap()
        .to_string();
    let examples = server.get(&format!("/v1/datasets/{id}/examples")).json()["data"]["examples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    (id, examples)
}

fn create(server: &Server, dataset: &str, body: &Value) -> Reply {
    server.post(&format!("/v1/datasets/{dataset}/experiments"), body)
}

fn run(server: &Server, experiment: &str, example: &str, rep: i64, error: Option<&str>) -> Reply {
    server.post(
        &format!("/v1/experiments/{experiment}/runs"),
        &json!({"dataset_example_id": example, "output": format!("answer about {example}"),
                "repetition_number": rep, "start_time": T0, "end_time": T1, "error": error}),
    )
}

fn evaluate(server: &Server, run: &str, name: &str, result: Value) -> Reply {
    server.post(
        "/v1/experiment_evaluations",
        &json!({"experiment_run_id": run, "name": name, "annotator_kind": "CODE",
                "start_time": T0, "end_time": T1, "result": result}),
    )
}

fn id(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.json()["data"]["id"].as_str().unwrap().to_string()
}

#[test]
fn a_linked_experiment_s_runs_and_evaluations_are_runner_s_results_and_scores() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi {{input.q}}"]);
    env.ok(&["tag", "set", "greet", "production", "--version", "1"]);
    let server = Server::start(&env, &[]);
    let (dataset, examples) = dataset(&server);
    let created = create(
        &server,
        &dataset,
        &json!({"name": "greet-prod", "repetitions": 2,
                "metadata": {"prompt": "greet", "tag": "production"}}),
    );
    assert_eq!(created.status, 200, "{}", created.text);
    let experiment = created.json()["data"].clone();
    assert_eq!(experiment["example_count"], 2);
    assert_eq!(experiment["missing_run_count"], 4);
    assert_eq!(experiment["project_name"], Value::Null);
    assert_eq!(experiment["metadata"]["tag"], "production");
    let exp = experiment["id"].as_str().unwrap().to_string();

    // Runs: one errors first, then succeeds in place; a successful run is final.
    let first = id(&run(&server, &exp, &examples[0], 1, Some("TimeoutError()")));
    let again = id(&run(&server, &exp, &examples[0], 1, None));
    assert_eq!(first, again, "an errored run is replaced in place");
    assert_eq!(run(&server, &exp, &examples[0], 1, None).status, 409);
    let r2 = id(&run(&server, &exp, &examples[0], 2, None));
    let r3 = id(&run(&server, &exp, &examples[1], 1, None));
    let r4 = id(&run(
        &server,
        &exp,
        &examples[1],
        2,
        Some("ValueError('no')"),
    ));

    // Evaluations: one per run and name; sent again, replaced with the same id.
    let e1 = id(&evaluate(&server, &first, "correct", json!({"score": 0.2})));
    let e1_again = id(&evaluate(
        &server,
        &first,
        "correct",
        json!({"score": 1.0, "label": "True"}),
    ));
    assert_eq!(e1, e1_again);
    // An errored run judged a pass (the client evaluates it with no output) still fails.
    for (run, label) in [(&r2, "True"), (&r3, "False"), (&r4, "True")] {
        id(&evaluate(&server, run, "correct", json!({"label": label})));
    }

    // Reads: the experiment's counts, its runs newest first a page at a time, the export.
    let got = server.get(&format!("/v1/experiments/{exp}")).json()["data"].clone();
    assert_eq!(
        (
            &got["successful_run_count"],
            &got["failed_run_count"],
            &got["missing_run_count"]
        ),
        (&json!(3), &json!(1), &json!(0))
    );
    let page = server
        .get(&format!("/v1/experiments/{exp}/runs?limit=3"))
        .json();
    let ids: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [r4.as_str(), r3.as_str(), r2.as_str()]);
    let rest = server
        .get(&format!(
            "/v1/experiments/{exp}/runs?limit=3&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .json();
    assert_eq!(rest["data"][0]["id"], first.as_str());
    assert_eq!(
        rest["data"][0]["output"],
        format!("answer about {}", examples[0])
    );
    let export = server.get(&format!("/v1/experiments/{exp}/json")).json();
    let record = &export.as_array().unwrap()[0];
    assert_eq!(record["reference_output"], json!({"topic": "order"}));
    assert_eq!(record["annotations"][0]["score"], 1.0);
    assert_eq!(record["annotations"][0]["label"], "True");
    assert_eq!(record["latency_ms"], 250.0);

    // runner's own experiment of the same id: completed, with an errored row failing
    // every evaluator, found by name.
    let shown = env.json(&["experiment", "show", "greet-prod", "--json"]);
    assert_eq!(
        shown["experiment"]["status"], "completed_with_errors",
        "{shown}"
    );
    assert_eq!(shown["experiment"]["tag"], "production");
    assert_eq!(shown["experiment"]["dataset"]["path"], "store:questions@1");
    assert_eq!(shown["summary"]["ok"], 3);
    assert_eq!(shown["summary"]["errored"], 1);
    let correct = &shown["summary"]["evaluators"][0];
    assert_eq!(correct["evaluator"], "correct");
    assert_eq!(
        (&correct["passed"], &correct["total"]),
        (&json!(2), &json!(4))
    );
    // Its errored row is beyond the gate's error rate: the hint sends the rows back to your
    // code, as runner cannot run a task it did not run.
    let out = env.run(&[
        "promote",
        "--prompt",
        "greet",
        "--candidate",
        "production",
        "--baseline",
        "staging",
        "--candidate-experiment",
        "greet-prod",
        "--min-pass-rate",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("beyond --max-error-rate"), "{stderr}");
    assert!(
        stderr.contains("from your code") && !stderr.contains("experiment resume"),
        "{stderr}"
    );
    server.stop();
}

#[test]
fn refused_runs_evaluations_and_experiments_store_nothing() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi"]);
    let server = Server::start(&env, &[]);
    let (dataset, examples) = dataset(&server);
    let exp = id(&create(&server, &dataset, &json!({"name": "plain"})));
    let r1 = id(&run(&server, &exp, &examples[0], 1, None));
    // A second version with a new example: not in the experiment's version.
    let appended = server.post(
        "/v1/datasets/upload?sync=true",
        &json!({"action": "append", "name": "questions", "inputs": [{"q": "Cancel?"}]}),
    );
    assert_eq!(appended.status, 200);
    let newest = server
        .get(&format!("/v1/datasets/{dataset}/examples"))
        .json()["data"]["examples"][2]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let before = dump(&env.db);
    let unknown_exp = "RXhwZXJpbWVudDpleHBfbm9uZQ=="; // Experiment:exp_none
    let unknown_run = "RXhwZXJpbWVudFJ1bjpub25l"; // ExperimentRun:none
    let checks: Vec<(Reply, u16, &str)> = vec![
        (
            run(&server, unknown_exp, &examples[0], 1, None),
            404,
            "unknown experiment",
        ),
        (
            run(&server, "not-an-id", &examples[0], 1, None),
            422,
            "malformed experiment id",
        ),
        (
            run(&server, &exp, &newest, 1, None),
            404,
            "example outside the version",
        ),
        (
            run(&server, &exp, "RGF0YXNldEV4YW1wbGU6eA==", 1, None),
            404,
            "unknown example",
        ),
        (
            run(&server, &exp, &examples[1], 2, None),
            422,
            "repetition beyond 1",
        ),
        (
            run(&server, &exp, &examples[1], 0, None),
            422,
            "repetition 0",
        ),
        (
            server.post(
                &format!("/v1/experiments/{exp}/runs"),
                &json!({"dataset_example_id": examples[1], "output": 1, "repetition_number": 1,
                        "start_time": "yesterday", "end_time": T1}),
            ),
            422,
            "a time that is not one",
        ),
        (
            evaluate(&server, unknown_run, "x", json!({"score": 1})),
            404,
            "unknown run",
        ),
        (
            server.post(
                "/v1/experiment_evaluations",
                &json!({"experiment_run_id": r1, "name": "x", "annotator_kind": "ROBOT",
                        "start_time": T0, "end_time": T1}),
            ),
            422,
            "unknown annotator kind",
        ),
        (
            create(
                &server,
                &dataset,
                &json!({"metadata": {"prompt": "nope", "tag": "production"}}),
            ),
            422,
            "metadata naming an unknown prompt",
        ),
        (
            create(
                &server,
                &dataset,
                &json!({"metadata": {"prompt": "greet", "tag": "production"}}),
            ),
            422,
            "metadata naming a tag the prompt lacks",
        ),
        (
            create(&server, &dataset, &json!({"splits": ["train"]})),
            422,
            "splits",
        ),
        (
            create(&server, &dataset, &json!({"repetitions": 0})),
            422,
            "repetitions 0",
        ),
        (
            create(&server, "RGF0YXNldDpub25l", &json!({})),
            404,
            "unknown dataset",
        ),
        (
            create(&server, "not-an-id", &json!({})),
            422,
            "malformed dataset id",
        ),
    ];
    for (reply, status, what) in checks {
        assert_eq!(reply.status, status, "{what}: {}", reply.text);
    }
    assert_eq!(dump(&env.db), before, "a refusal wrote something");
    // An unknown experiment has no runs (200, as in Phoenix); getting it is 404.
    let runs = server.get(&format!("/v1/experiments/{unknown_exp}/runs"));
    assert_eq!((runs.status, runs.json()["data"].clone()), (200, json!([])));
    assert_eq!(
        server.get(&format!("/v1/experiments/{unknown_exp}")).status,
        404
    );
    server.stop();
}

#[test]
fn unlinked_experiments_are_deleted_linked_ones_and_their_datasets_are_kept() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi"]);
    let server = Server::start(&env, &[]);
    let (dataset, examples) = dataset(&server);
    let plain = id(&create(&server, &dataset, &json!({"name": "plain"})));
    id(&run(&server, &plain, &examples[0], 1, None));
    let linked = id(&create(
        &server,
        &dataset,
        &json!({"name": "linked", "metadata": {"prompt": "greet"}}),
    ));
    let listed = server
        .get(&format!("/v1/datasets/{dataset}/experiments"))
        .json();
    let names: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linked", "plain"]);
    // The dataset is the evidence of both: kept.
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/datasets/{dataset}"), &[], None)
            .status,
        409
    );
    let before = dump(&env.db);
    let refused = server.call("DELETE", &format!("/v1/experiments/{linked}"), &[], None);
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert_eq!(dump(&env.db), before);
    // runner's experiment of the same id goes with it (it named no version: no gate cited it).
    env.ok(&["experiment", "show", "plain"]);
    let deleted = server.call("DELETE", &format!("/v1/experiments/{plain}"), &[], None);
    assert_eq!(deleted.status, 204, "{}", deleted.text);
    assert_eq!(server.get(&format!("/v1/experiments/{plain}")).status, 404);
    env.fails(&["experiment", "show", "plain"], 2);
    env.ok(&["experiment", "show", "linked"]);
    assert_eq!(
        server
            .call("DELETE", &format!("/v1/experiments/{plain}"), &[], None)
            .status,
        404
    );
    server.stop();
}

#[test]
fn an_experiment_whose_evaluations_are_still_arriving_is_no_evidence() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi {{input.q}}"]);
    let server = Server::start(&env, &[]);
    let (dataset, examples) = dataset(&server);
    let exp = id(&create(
        &server,
        &dataset,
        &json!({"name": "half-judged", "metadata": {"prompt": "greet"}}),
    ));
    let runs: Vec<String> = examples
        .iter()
        .map(|e| id(&run(&server, &exp, e, 1, None)))
        .collect();
    // One run judged, the other not yet: compare and promote refuse it.
    id(&evaluate(
        &server,
        &runs[0],
        "correct",
        json!({"score": 1.0}),
    ));
    let out = env.run(&["compare", "half-judged", "half-judged"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("evaluator 'correct' judged 1 of its 2 results"),
        "{stderr}"
    );
    // Once every run is judged, it is.
    id(&evaluate(
        &server,
        &runs[1],
        "correct",
        json!({"score": 0.0}),
    ));
    let out = env.run(&["compare", "half-judged", "half-judged"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    server.stop();
}

#[test]
fn experiments_that_name_no_prompt_version_are_listed_shown_and_compared_never_promoted() {
    let env = Env::new();
    env.ok(&["prompt", "create", "greet", "--template", "Hi {{input.q}}"]);
    env.ok(&["tag", "set", "greet", "staging", "--version", "1"]);
    let server = Server::start(&env, &[]);
    let (dataset, examples) = dataset(&server);
    // Two experiments of your own code that name no prompt: the first right on both examples,
    // the second on one.
    for (name, scores) in [("mine-a", [1.0, 1.0]), ("mine-b", [1.0, 0.0])] {
        let exp = id(&create(&server, &dataset, &json!({"name": name})));
        for (example, score) in examples.iter().zip(scores) {
            let run = id(&run(&server, &exp, example, 1, None));
            id(&evaluate(&server, &run, "correct", json!({"score": score})));
        }
    }
    // Listed and shown by runner as its own experiments, with no prompt.
    let listed = env.json(&["experiment", "list", "--json"]);
    let names: Vec<(&str, &Value)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), &e["prompt"]))
        .collect();
    assert_eq!(names, [("mine-b", &Value::Null), ("mine-a", &Value::Null)]);
    let text = env.ok(&["experiment", "list"]);
    assert!(text.contains("mine-b (no prompt version)"), "{text}");
    let shown = env.json(&["experiment", "show", "mine-b", "--json"]);
    assert_eq!(shown["experiment"]["prompt"], Value::Null);
    assert_eq!(shown["experiment"]["version_id"], Value::Null);
    assert_eq!(shown["experiment"]["status"], "completed");
    assert_eq!(shown["summary"]["evaluators"][0]["pass_rate"], 0.5);
    // Compared by name, with the statistics, as any two experiments.
    let compared = env.json(&[
        "compare",
        "--baseline-experiment",
        "mine-a",
        "--candidate-experiment",
        "mine-b",
        "--json",
    ]);
    let evaluator = &compared["evaluators"][0];
    assert_eq!(evaluator["evaluator"], "correct");
    assert_eq!(evaluator["baseline_pass_rate"], 1.0);
    assert_eq!(evaluator["candidate_pass_rate"], 0.5);
    let text = env.ok(&["compare", "mine-a", "mine-b"]);
    assert!(text.contains("mine-a (no prompt version)"), "{text}");
    // Never a gate's evidence: refused, nothing moved.
    let before = dump(&env.db);
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--candidate-experiment",
            "mine-a",
            "--min-pass-rate",
            "0.5",
        ],
        2,
    );
    assert!(err.contains("names no prompt version"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    assert_eq!(dump(&env.db), before);
    let err = env.fails(&["experiment", "resume", "mine-a"], 2);
    assert!(err.contains("runner cannot run its task"), "{err}");
    // The web UI lists them among every experiment, shows and compares them.
    let page = server.get("/experiments");
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("mine-a") && page.text.contains("mine-b"));
    assert!(page.text.contains("your code"), "{}", page.text);
    let a = shown_id(&env, "mine-a");
    let b = shown_id(&env, "mine-b");
    let page = server.get(&format!("/experiments/{b}"));
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(
        page.text.contains("named no prompt version"),
        "{}",
        page.text
    );
    let page = server.get(&format!("/compare?baseline={a}&candidate={b}"));
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("correct"), "{}", page.text);
    server.stop();
}

/// runner's id of an experiment named `name`.
fn shown_id(env: &Env, name: &str) -> String {
    env.json(&["experiment", "show", name, "--json"])["experiment"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}
