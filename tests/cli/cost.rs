//! What a run costs: tokens turned into dollars (built-in prices, runner.toml's `[prices]`),
//! shown by experiment, list, compare and promote; `--max-cost` stops a run before it would
//! spend more; `--max-cost-increase` gates a promotion on the cost per row.

use crate::{Env, Mock, echo_dataset};
use serde_json::Value;

fn prompt(env: &Env, name: &str, template: &str, model: &str) {
    env.ok(&[
        "prompt",
        "create",
        name,
        "--template",
        template,
        "--model",
        model,
        "--param",
        "max_tokens=20",
    ]);
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[test]
fn an_experiment_says_what_it_cost_at_built_in_or_configured_prices() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--priced"]);
    let url = mock.url.clone();
    prompt(
        &env,
        "greet",
        "Answer briefly: {{query}}",
        "gpt-4o-mini-2024-07-18",
    );
    let data = echo_dataset(
        &env,
        "d.csv",
        &["hello there", "where is my order", "thanks"],
    );
    let run = env.json(&[
        "experiment",
        "--prompt",
        "greet",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--json",
    ]);
    let (p, c) = (
        run["summary"]["prompt_tokens"].as_f64().unwrap(),
        run["summary"]["completion_tokens"].as_f64().unwrap(),
    );
    assert!(p > 0.0 && c > 0.0, "{run}");
    // A dated snapshot takes its family's built-in price: $0.15 in, $0.60 out per 1M tokens.
    let cost = &run["cost"];
    assert_eq!(cost["price_source"], "built-in", "{cost}");
    assert_eq!(cost["input_per_mtok"], 0.15);
    assert_eq!(cost["output_per_mtok"], 0.6);
    let usd = (p * 0.15 + c * 0.60) / 1e6;
    assert!(close(cost["usd"].as_f64().unwrap(), usd), "{cost} vs {usd}");
    assert!(
        close(cost["per_row_usd"].as_f64().unwrap(), usd / 3.0),
        "{cost}"
    );
    let id = run["experiment"]["id"].as_str().unwrap().to_string();
    let list = env.json(&["experiment", "list", "--json"]);
    assert_eq!(list[0]["id"], id.as_str());
    assert!(close(list[0]["cost_usd"].as_f64().unwrap(), usd), "{list}");
    assert_eq!(list[0]["prompt_tokens"].as_f64(), Some(p));
    let text = env.ok(&["experiment", "list"]);
    assert!(text.contains("COST"), "{text}");
    let show = env.ok(&["experiment", "show", &id]);
    assert!(show.contains("built-in price"), "{show}");

    // runner.toml's price wins, and every figure follows it at once.
    env.write(
        "runner.toml",
        "[prices.\"gpt-4o-mini\"]\ninput_per_mtok = 100\noutput_per_mtok = 1000\n",
    );
    let shown = env.json(&["experiment", "show", &id, "--json"]);
    assert_eq!(shown["cost"]["price_source"], "runner-toml");
    let usd = (p * 100.0 + c * 1000.0) / 1e6;
    assert!(
        close(shown["cost"]["usd"].as_f64().unwrap(), usd),
        "{shown}"
    );

    // A model no price names: the cost is unknown, said so, never guessed.
    prompt(&env, "local", "{{query}}", "llama-local");
    let run = env.json(&[
        "experiment",
        "--prompt",
        "local",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--json",
    ]);
    assert_eq!(run["cost"], Value::Null, "{run}");
    let id = run["experiment"]["id"].as_str().unwrap();
    let show = env.ok(&["experiment", "show", id]);
    assert!(show.contains("no price for model llama-local"), "{show}");
}

#[test]
fn a_budget_stops_the_run_before_it_would_spend_more_and_resume_runs_the_rest() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--priced"]);
    let url = mock.url.clone();
    // A dollar per thousand tokens: the figures stay readable. Each request is estimated at
    // its text (about 4 characters a token) plus max_tokens = 20, about $0.022; the mock's
    // answer (the query echoed) costs about $0.004.
    env.write(
        "runner.toml",
        "[prices.\"pricey\"]\ninput_per_mtok = 1000\noutput_per_mtok = 1000\n",
    );
    prompt(&env, "echo", "{{query}}", "pricey");
    let queries: Vec<String> = (0..40).map(|i| format!("question {i}")).collect();
    let data = echo_dataset(&env, "d.csv", &queries);
    let out = env.run(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--concurrency",
        "4",
        "--max-cost",
        "0.1",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("stopped at its budget"), "{stderr}");
    assert!(
        stderr.contains("hint: `runner experiment resume"),
        "{stderr}"
    );
    let list = env.json(&["experiment", "list", "--json"]);
    let id = list[0]["id"].as_str().unwrap().to_string();
    assert_eq!(list[0]["status"], "interrupted");
    let stored = env.json(&["experiment", "show", &id, "--json"])["summary"]["results"]
        .as_u64()
        .unwrap();
    assert!(stored > 0 && stored < 40, "stored {stored}");
    // Nothing was sent beyond what is stored, and what is stored stays within the budget.
    assert_eq!(mock.requests(), stored);
    let spent = list[0]["cost_usd"].as_f64().unwrap();
    assert!(spent <= 0.1, "spent {spent}");

    // A larger budget runs the rest: every row once, no request twice.
    let done = env.json(&["experiment", "resume", &id, "--max-cost", "1", "--json"]);
    assert_eq!(done["experiment"]["status"], "completed", "{done}");
    assert_eq!(done["summary"]["results"], 40);
    assert_eq!(mock.requests(), 40);
    assert!(done["cost"]["usd"].as_f64().unwrap() <= 1.0);

    // A budget whose first request cannot fit sends nothing at all.
    let before = mock.requests();
    let out = env.run(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--fresh",
        "--max-cost",
        "0.001",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(mock.requests(), before);
}

#[test]
fn budgets_and_prices_that_cannot_be_kept_are_refused_with_nothing_written() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--priced"]);
    let url = mock.url.clone();
    prompt(&env, "local", "{{query}}", "llama-local");
    let data = echo_dataset(&env, "d.csv", &["a", "b"]);
    let run = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "--prompt",
            "local",
            "--dataset",
            &data,
            "--base-url",
            &url,
        ];
        args.extend_from_slice(extra);
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = run(&["--max-cost", "1"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let err = env.fails(&args, 2);
    assert!(
        err.contains("needs the price of model llama-local"),
        "{err}"
    );
    assert!(err.contains("hint: add [prices.\"llama-local\"]"), "{err}");
    for bad in ["0", "-1", "NaN"] {
        let flag = format!("--max-cost={bad}");
        let args = run(&[&flag]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = env.fails(&args, 2);
        assert!(
            err.contains("--max-cost must be a positive number"),
            "{err}"
        );
    }
    assert_eq!(mock.requests(), 0);
    env.write(
        "runner.toml",
        "[prices.\"llama-local\"]\ninput_per_mtok = -1\noutput_per_mtok = 1\n",
    );
    let err = env.fails(&["experiment", "list"], 2);
    assert!(
        err.contains("[prices.\"llama-local\"]: input_per_mtok"),
        "{err}"
    );
}

#[test]
fn promotion_can_gate_on_the_cost_per_row() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--priced"]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "{{query}}",
        "--model",
        "gpt-4o",
        "--tag",
        "production",
    ]);
    // The candidate sends four times the words: it costs more per row.
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "{{query}} {{query}} {{query}} {{query}}",
        "--tag",
        "staging",
    ]);
    let data = echo_dataset(&env, "d.csv", &["where is my parcel", "refund please"]);
    let promote = |limit: &str| {
        env.run(&[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--eval",
            "contains",
            "--max-cost-increase",
            limit,
            "--dry-run",
            "--json",
        ])
    };
    let out = promote("0.1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    let criteria = verdict["verdict"]["criteria"].as_array().unwrap();
    let cost = criteria
        .iter()
        .find(|c| c["name"] == "max cost increase")
        .unwrap_or_else(|| panic!("{verdict}"));
    assert_eq!(cost["passed"], false);
    assert_eq!(cost["threshold"], 0.1);
    assert!(cost["actual"].as_f64().unwrap() > 1.0, "{cost}");
    let base = verdict["comparison"]["baseline"]["cost_per_row_usd"]
        .as_f64()
        .unwrap();
    let cand = verdict["comparison"]["candidate"]["cost_per_row_usd"]
        .as_f64()
        .unwrap();
    assert!(
        close(cost["actual"].as_f64().unwrap(), cand / base - 1.0),
        "{verdict}"
    );
    // Allowed five times the cost, it passes.
    let out = promote("5");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = env.ok(&[
        "compare",
        "--prompt",
        "greet",
        "--tags",
        "production,staging",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--eval",
        "contains",
    ]);
    assert!(text.contains("cost") && text.contains("per row"), "{text}");
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "greet",
            "--from",
            "staging",
            "--to",
            "production",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--max-cost-increase=-0.5",
        ],
        2,
    );
    assert!(err.contains("--max-cost-increase must be a share"), "{err}");
}

#[test]
fn cached_answers_cost_nothing_spent_and_say_what_they_would_have_cost() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--priced"]);
    let url = mock.url.clone();
    prompt(&env, "greet", "Answer briefly: {{query}}", "gpt-4o-mini");
    let data = echo_dataset(
        &env,
        "d.csv",
        &["hello there", "where is my order", "thanks"],
    );
    let run = |env: &Env| {
        env.json(&[
            "experiment",
            "--prompt",
            "greet",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--json",
        ])
    };
    let first = run(&env);
    let second = run(&env);
    assert_eq!(first["summary"]["cached"], 0);
    assert_eq!(second["summary"]["cached"], 3);
    let (one, two) = (&first["cost"], &second["cost"]);
    // The first run spent what its answers cost; the second, answered from the cache, nothing.
    assert!(
        close(
            one["spent_usd"].as_f64().unwrap(),
            one["usd"].as_f64().unwrap()
        ),
        "{one}"
    );
    assert_eq!(one["cached_usd"], 0.0, "{one}");
    assert_eq!(two["spent_usd"], 0.0, "{two}");
    assert!(
        close(
            two["cached_usd"].as_f64().unwrap(),
            one["usd"].as_f64().unwrap()
        ),
        "{two}"
    );
    let id = second["experiment"]["id"].as_str().unwrap();
    let text = env.ok(&["experiment", "show", id]);
    assert!(
        text.contains("spent $0: 3 cached row(s) cost nothing here (they would have cost $"),
        "{text}"
    );
}

#[test]
fn a_run_against_the_mock_costs_nothing_whatever_the_models_price() {
    let env = Env::new();
    let mock = Mock::start(&env, &[]);
    let url = mock.url.clone();
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "{{query}}",
        "--model",
        "gpt-4",
        "--param",
        "max_tokens=20",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Re: {{query}}",
        "--tag",
        "staging",
    ]);
    let data = echo_dataset(&env, "d.csv", &["where is my parcel", "refund please"]);
    let experiment = |tag: &str, json: bool| -> String {
        let mut args = vec![
            "experiment",
            "--prompt",
            "greet",
            "--tag",
            tag,
            "--dataset",
            &data,
            "--base-url",
            &url,
        ];
        if json {
            args.push("--json");
        }
        env.ok(&args)
    };
    let run: Value = serde_json::from_str(&experiment("production", true)).unwrap();
    assert!(
        run["summary"]["prompt_tokens"].as_i64().unwrap() > 0,
        "{run}"
    );
    assert_eq!(run["experiment"]["settings"]["mock"], true, "{run}");
    assert_eq!(run["cost"]["price_source"], "mock", "{run}");
    assert_eq!(run["cost"]["usd"], 0.0, "{run}");
    assert_eq!(run["cost"]["spent_usd"], 0.0, "{run}");
    // gpt-4's list price would have made these tokens cost something: the mock says $0.
    let text = experiment("staging", false);
    assert!(text.contains("$0 (mock)"), "{text}");
    let list = env.ok(&["experiment", "list"]);
    assert!(list.contains("$0 (mock)"), "{list}");
    let listed = env.json(&["experiment", "list", "--json"]);
    assert_eq!(listed[0]["cost_usd"], 0.0, "{listed}");
    let compare = env.ok(&[
        "compare",
        "--prompt",
        "greet",
        "--baseline",
        "production",
        "--candidate",
        "staging",
        "--dataset",
        &data,
        "--base-url",
        &url,
    ]);
    assert!(compare.contains("$0 (mock)"), "{compare}");
    // Nothing is spent, so a budget that list prices would exhaust after a few rows is
    // never reached: 40 rows at gpt-4's price cost more than $0.005, the mock charges $0.
    let queries: Vec<String> = (0..40).map(|i| format!("question number {i}")).collect();
    let many = echo_dataset(&env, "many.csv", &queries);
    let budgeted = env.json(&[
        "experiment",
        "--prompt",
        "greet",
        "--dataset",
        &many,
        "--base-url",
        &url,
        "--max-cost",
        "0.005",
        "--json",
    ]);
    assert_eq!(budgeted["summary"]["results"], 40, "{budgeted}");
    assert_eq!(budgeted["cost"]["usd"], 0.0, "{budgeted}");
    let list_price = (budgeted["summary"]["prompt_tokens"].as_f64().unwrap() * 30.0
        + budgeted["summary"]["completion_tokens"].as_f64().unwrap() * 60.0)
        / 1e6;
    assert!(list_price > 0.005, "{list_price}");

    // The same endpoint started --priced answers like a billed one: list prices apply.
    let priced = Mock::start(&env, &["--priced"]);
    let billed = env.json(&[
        "experiment",
        "--prompt",
        "greet",
        "--dataset",
        &data,
        "--base-url",
        &priced.url,
        "--fresh",
        "--json",
    ]);
    assert_eq!(billed["cost"]["price_source"], "built-in", "{billed}");
    assert!(billed["cost"]["usd"].as_f64().unwrap() > 0.0, "{billed}");
    assert!(
        billed["experiment"]["settings"].get("mock").is_none(),
        "{billed}"
    );
}
