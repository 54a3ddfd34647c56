//! Error bars, paired differences, the gates on them and planning, through the real binary
//! against a real endpoint on a random loopback port. The data are those of
//! tests/stats/reference.json, so runner's figures are checked against scipy's and
//! statsmodels' own.

use crate::Env;
use crate::fault_server::FaultServer;
use serde_json::Value;
use std::time::Duration;

fn reference() -> Value {
    serde_json::from_str(include_str!("../stats/reference.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs().max(1.0)
}

/// Prompt `ab`: production renders column `a`, staging renders column `b`. With the echoing
/// endpoint and `expected` = `yes`, a row passes `icontains` on a side exactly when that
/// side's column says `yes`: the test decides every row's verdict on both sides.
fn setup(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "ab",
        "--template",
        "{{a}}",
        "--model",
        "m",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "ab",
        "--template",
        "{{b}}",
        "--tag",
        "staging",
    ]);
}

/// A dataset whose rows pass (1.0) or fail (0.0) on each side, with a `doc` column.
fn dataset(env: &Env, name: &str, a: &[f64], b: &[f64], docs: Option<&[String]>) -> String {
    let word = |x: f64| if x >= 1.0 { "yes" } else { "no" };
    let mut text = String::from("id,doc,a,b,expected\n");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let doc = docs
            .map(|d| d[i].clone())
            .unwrap_or_else(|| format!("d{i}"));
        text.push_str(&format!("r{i:03},{doc},{},{},yes\n", word(*x), word(*y)));
    }
    env.write(name, &text).to_str().unwrap().to_string()
}

fn compare_json(env: &Env, data: &str, base: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "compare",
        "--prompt",
        "ab",
        "--tags",
        "production,staging",
        "--dataset",
        data,
        "--eval",
        "icontains",
        "--base-url",
        base,
        "--run",
        "--json",
    ];
    args.extend_from_slice(extra);
    env.json(&args)
}

/// `runner promote` of staging to production over `data`, with `extra` criteria and flags.
fn promote(env: &Env, data: &str, base: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "promote",
        "--prompt",
        "ab",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        data,
        "--eval",
        "icontains",
        "--base-url",
        base,
    ];
    args.extend_from_slice(extra);
    env.run(&args)
}

#[test]
fn miller_164_questions_at_83_6_percent_have_a_standard_error_of_2_9_points() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let values = floats(&r["miller"]["values"]);
    let data = dataset(&env, "miller.csv", &values, &values, None);
    let summary = env.json(&[
        "experiment",
        "--prompt",
        "ab",
        "--tag",
        "production",
        "--dataset",
        &data,
        "--eval",
        "icontains",
        "--base-url",
        &server.base_url(),
        "--json",
    ]);
    assert_eq!(summary["confidence"], 0.95);
    let st = &summary["statistics"][0];
    assert_eq!(st["rows"], 164);
    let pass = &st["pass_rate"];
    assert!(
        close(f(&pass["estimate"]), f(&r["miller"]["mean"])),
        "{pass}"
    );
    assert!(close(f(&pass["se"]), f(&r["miller"]["se"])), "{pass}");
    // A pass rate's interval is Wilson's (statsmodels' `method="wilson"`), not estimate ± z·SE.
    assert!(
        close(f(&pass["ci"][0]), f(&r["miller"]["wilson"][0])),
        "{pass}"
    );
    assert!(
        close(f(&pass["ci"][1]), f(&r["miller"]["wilson"][1])),
        "{pass}"
    );
    assert!((f(&pass["se"]) * 100.0 - 2.9).abs() < 0.05);
    // Without repetitions there is nothing to say about them.
    assert!(st["pass_rate_se_one_repetition"].is_null());

    let text = env.ok(&["experiment", "show", "last"]);
    assert!(
        text.contains("pass rate 95% CI 77.1–88.4% (SE 2.9 pts)"),
        "{text}"
    );
}

#[test]
fn compare_reports_the_paired_difference_with_mcnemars_exact_test() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let case = &r["paired_pass_fail"];
    let data = dataset(
        &env,
        "paired.csv",
        &floats(&case["baseline"]),
        &floats(&case["candidate"]),
        None,
    );
    let c = compare_json(&env, &data, &server.base_url(), &[]);
    assert_eq!(c["confidence"], 0.95);
    assert_eq!(c["power"], 0.8);
    let e = &c["evaluators"][0];
    assert_eq!(
        (e["regressed"].as_u64(), e["improved"].as_u64()),
        (Some(8), Some(0))
    );
    let d = &e["pass_rate_difference"];
    assert_eq!(d["test"], "McNemar's exact test");
    assert_eq!(d["rows"], 60);
    assert!(
        close(f(&d["p_value"]), f(&case["mcnemar_exact_p_value"])),
        "{d}"
    );
    let want = &case["paired"];
    assert!(close(f(&d["estimate"]), f(&want["estimate"])), "{d}");
    assert!(close(f(&d["se"]), f(&want["se"])), "{d}");
    // Pass / fail pairs: Agresti and Min's interval, not the t interval of the differences.
    let interval = &case["agresti_min_ci"];
    assert!(close(f(&d["ci"][0]), f(&interval[0])), "{d}");
    assert!(close(f(&d["ci"][1]), f(&interval[1])), "{d}");
    assert_eq!(f(&d["df"]), f(&want["df"]));
    // Significant paired, while the two bare rates are not told apart by an unpaired test.
    assert!(f(&d["p_value"]) < 0.05);
    assert!(f(&case["unpaired_two_proportion_p_value"]) > 0.05);
    // (1.96 + 0.84) × SE.
    let mde = f(&d["minimum_detectable_effect"]);
    assert!(close(mde, 2.801_585_218_1 * f(&d["se"])), "{d}");
    // Each side's pass rate carries its error and interval.
    let side = &c["candidate"]["evaluators"][0];
    assert!(f(&side["pass_rate_se"]) > 0.0);
    assert!(f(&side["pass_rate_ci"][0]) < f(&side["pass_rate"]));
    // The mean score is tested with a paired t-test.
    assert_eq!(e["mean_score_difference"]["test"], "paired t-test");

    // The text names the test and the interval.
    let text = env.ok(&[
        "compare",
        "--prompt",
        "ab",
        "--tags",
        "production,staging",
        "--dataset",
        &data,
        "--eval",
        "icontains",
        "--base-url",
        &server.base_url(),
    ]);
    assert!(text.contains("is the difference real?"), "{text}");
    assert!(text.contains("-13.3 pts"), "{text}");
    assert!(text.contains("-21.8 pts to -4.0 pts"), "{text}");
    assert!(text.contains("0.0078 (McNemar's exact test)"), "{text}");
}

#[test]
fn non_inferior_and_min_improvement_gate_on_the_lower_bound_and_warn_when_underpowered() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let case = &r["paired_pass_fail"];
    let data = dataset(
        &env,
        "paired.csv",
        &floats(&case["baseline"]),
        &floats(&case["candidate"]),
        None,
    );
    let base = server.base_url();
    let c = compare_json(&env, &data, &base, &[]);
    let d = &c["evaluators"][0]["pass_rate_difference"];
    let (low, mde) = (f(&d["ci"][0]), f(&d["minimum_detectable_effect"]));

    // Not worse by more than 30 points: the lower bound (-21.8 pts) clears it, and 60 rows
    // detect 12.4 points, so no warning.
    let gated = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--prompt",
            "ab",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--eval",
            "icontains",
            "--base-url",
            &base,
        ];
        args.extend_from_slice(extra);
        env.run(&args)
    };
    let passed = gated(&["--non-inferior", "0.3", "--json"]);
    assert_eq!(passed.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&passed.stdout).unwrap();
    let criterion = &json["gate"]["criteria"][0];
    assert_eq!(criterion["name"], "non-inferior [icontains]");
    assert_eq!(criterion["threshold"], -0.3);
    assert!(close(f(&criterion["actual"]), low));
    assert_eq!(json["gate"]["warnings"], Value::Array(vec![]));
    assert!(!String::from_utf8_lossy(&passed.stderr).contains("warning"));

    // Not worse by more than 2 points: fails, and 2 points is below what 60 rows detect.
    let failed = gated(&["--non-inferior", "0.02"]);
    assert_eq!(failed.status.code(), Some(1));
    // Said once, in the report (not again on stderr).
    let stdout = String::from_utf8_lossy(&failed.stdout);
    let needed = (60.0 * (mde / 0.02f64).powi(2) - 1e-9).ceil() as u64;
    assert_eq!(
        stdout
            .matches(&format!("detecting 2.0 pts needs about {needed} rows"))
            .count(),
        1,
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&failed.stderr).contains("warning"));
    assert!(stdout.contains("non-inferior [icontains]"), "{stdout}");
    assert!(stdout.contains("FAIL"), "{stdout}");

    // A real improvement of at least 1 point: the candidate is worse, so no.
    let failed = gated(&["--min-improvement", "0.01", "--json"]);
    assert_eq!(failed.status.code(), Some(1));
    let json: Value = serde_json::from_slice(&failed.stdout).unwrap();
    assert_eq!(json["gate"]["passed"], false);
    assert_eq!(json["gate"]["warnings"][0]["rows_needed"], {
        let n = (60.0 * (mde / 0.01f64).powi(2) - 1e-9).ceil() as u64;
        Value::from(n)
    });

    // --max-regression keeps its meaning and warns the same way.
    let failed = gated(&["--max-regression", "0.05"]);
    assert_eq!(failed.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert!(
        stdout.contains(
            "warning: max regression [icontains] 5.0 pts is below what 60 rows can detect"
        ),
        "{stdout}"
    );

    // promote takes the same criteria; its reports carry the interval and the test.
    let md = env.path("gate.md");
    let junit = env.path("gate.xml");
    let out = promote(
        &env,
        &data,
        &base,
        &[
            "--non-inferior",
            "0.3",
            "--min-pass-rate",
            "0.5",
            "--markdown",
            md.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(md).unwrap();
    assert!(md.contains("McNemar's exact test"), "{md}");
    assert!(md.contains("95% CI -21.8 pts to -4.0 pts"), "{md}");
    let junit = std::fs::read_to_string(junit).unwrap();
    assert!(
        junit.contains("<testcase name=\"non-inferior [icontains]\""),
        "{junit}"
    );
    assert!(junit.contains("lower bound -21.8 pts"), "{junit}");
    // The candidate's pass rate, 40 of 60, with its interval.
    assert!(junit.contains("66.7% (95% CI "), "{junit}");
    let history = env.json(&["tag", "history", "ab", "production", "--json"]);
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["action"], "promote");

    // A margin out of range is refused before anything runs.
    let err = env.fails(
        &[
            "promote",
            "--prompt",
            "ab",
            "--from",
            "production",
            "--to",
            "staging",
            "--dataset",
            &data,
            "--eval",
            "icontains",
            "--base-url",
            &base,
            "--non-inferior",
            "2",
        ],
        2,
    );
    assert!(err.contains("--non-inferior 2 is out of range"), "{err}");
}

#[test]
fn clustered_standard_errors_match_statsmodels() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let case = &r["clustered"];
    let values = floats(&case["values"]);
    let docs: Vec<String> = case["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    // The baseline passes everything, so the per-row differences are the candidate's values
    // less one: the same clustered error, the interval shifted by one.
    let data = dataset(
        &env,
        "docs.csv",
        &vec![1.0; values.len()],
        &values,
        Some(&docs),
    );
    let base = server.base_url();
    let naive = compare_json(&env, &data, &base, &[]);
    let c = compare_json(&env, &data, &base, &["--cluster-column", "doc"]);
    assert_eq!(c["cluster_column"], "doc");
    let want = &case["clustered"];
    let side = &c["candidate"]["evaluators"][0];
    assert!(close(f(&side["pass_rate_se"]), f(&want["se"])), "{side}");
    let d = &c["evaluators"][0]["pass_rate_difference"];
    assert_eq!(d["clusters"], 9);
    assert_eq!(f(&d["df"]), f(&want["df"]));
    assert!(close(f(&d["se"]), f(&want["se"])), "{d}");
    assert!(close(f(&d["ci"][0]), f(&want["ci"][0]) - 1.0), "{d}");
    assert!(close(f(&d["ci"][1]), f(&want["ci"][1]) - 1.0), "{d}");
    assert_eq!(d["test"], "clustered t-test, 9 clusters, 8 df");
    // Ignoring the documents understates the error.
    let plain = &naive["candidate"]["evaluators"][0];
    assert!(
        close(f(&plain["pass_rate_se"]), f(&case["naive_se"])),
        "{plain}"
    );
    assert!(f(&plain["pass_rate_se"]) < f(&side["pass_rate_se"]));

    // A column the dataset lacks is refused, naming the columns there are.
    let err = env.fails(
        &[
            "compare",
            "--prompt",
            "ab",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--eval",
            "icontains",
            "--base-url",
            &base,
            "--cluster-column",
            "document",
        ],
        2,
    );
    assert!(err.contains("--cluster-column document"), "{err}");
    assert!(
        err.contains("hint: its columns: id, doc, a, b, expected"),
        "{err}"
    );
}

#[test]
fn repetitions_shrink_the_error_and_the_summary_says_by_how_much() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    // Ten rows always pass; in ten more the first answer of three is a 500 (a fail, no retry)
    // and the other two pass: those rows' pass share is 2/3.
    let mut text = String::from("id,doc,a,b,expected\n");
    for i in 0..20 {
        let a = if i < 10 {
            format!("yes {i}")
        } else {
            format!("yes {i} fault=500:1")
        };
        text.push_str(&format!("r{i:02},d,{a},x,yes\n"));
    }
    let data = env.write("reps.csv", &text);
    let summary = env.json(&[
        "experiment",
        "--prompt",
        "ab",
        "--tag",
        "production",
        "--dataset",
        data.to_str().unwrap(),
        "--eval",
        "icontains",
        "--base-url",
        &server.base_url(),
        "--repetitions",
        "3",
        "--max-retries",
        "0",
        "--concurrency",
        "1",
        "--json",
        "--max-error-rate",
        "1",
    ]);
    assert_eq!(summary["summary"]["errored"], 10, "{summary}");
    let st = &summary["statistics"][0];
    assert_eq!(st["repetitions"], 3.0);
    // Row means: ten 1s and ten 2/3s; within-row variance 1/3 on the second ten.
    let means: Vec<f64> = (0..20)
        .map(|i| if i < 10 { 1.0 } else { 2.0 / 3.0 })
        .collect();
    let mean = means.iter().sum::<f64>() / 20.0;
    let var = means.iter().map(|m| (m - mean).powi(2)).sum::<f64>() / 19.0;
    let se = (var / 20.0).sqrt();
    let within = (10.0 * (1.0 / 3.0)) / 20.0;
    let se_one = ((var + within * (1.0 - 1.0 / 3.0)) / 20.0).sqrt();
    assert!(close(f(&st["pass_rate"]["se"]), se), "{st}");
    assert!(close(f(&st["pass_rate_se_one_repetition"]), se_one), "{st}");
    assert!(se_one > se);
    // A plan from this experiment weighs more answers a row against more rows: only the
    // within-row part shrinks with repetitions.
    let id = summary["experiment"]["id"].as_str().unwrap();
    let plan = env.json(&[
        "experiment",
        "plan",
        "--prompt",
        "ab",
        "--tag",
        "staging",
        "--dataset",
        data.to_str().unwrap(),
        "--eval",
        "icontains",
        "--detect",
        "0.1",
        "--experiment",
        id,
        "--json",
    ]);
    let e = &plan["evaluators"][0];
    let between = f(&e["between_variance"]);
    assert!(close(between, (var - within / 3.0).max(0.0)), "{e}");
    assert!(close(f(&e["within_variance"]), within), "{e}");
    let lines = e["lines"].as_array().unwrap();
    let ks: Vec<u64> = lines
        .iter()
        .map(|l| l["repetitions"].as_u64().unwrap())
        .collect();
    assert_eq!(ks, vec![1, 2, 3, 5, 10]);
    let needed: Vec<u64> = lines
        .iter()
        .map(|l| l["rows_needed"].as_u64().unwrap())
        .collect();
    assert!(needed.windows(2).all(|w| w[1] <= w[0]), "{needed:?}");
    assert!(needed[4] < needed[0], "{needed:?}");
    let z = 1.959_963_984_540_054 + 0.841_621_233_572_914_3;
    for (line, k) in lines.iter().zip([1.0, 2.0, 3.0, 5.0, 10.0]) {
        let variance = 2.0 * (between + within / k);
        let rows = (z * z * variance / 0.01 - 1e-9).ceil() as u64;
        assert_eq!(line["rows_needed"], rows, "{k} answers a row");
    }

    let text = env.ok(&["experiment", "show", "last"]);
    assert!(
        text.contains(&format!(
            "3 answers a row shrank the pass rate's SE from {:.1} pts (one answer a row) to {:.1} pts",
            se_one * 100.0,
            se * 100.0
        )),
        "{text}"
    );
}

#[test]
fn plan_counts_rows_and_repetitions_and_sends_nothing() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let values = floats(&r["miller"]["values"]);
    let data = dataset(&env, "miller.csv", &values, &values, None);
    let base = server.base_url();
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "experiment",
            "plan",
            "--prompt",
            "ab",
            "--tag",
            "staging",
            "--dataset",
            &data,
            "--eval",
            "icontains",
            "--base-url",
            &base,
            "--detect",
            "0.05",
            "--json",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    // The worst case: variance 0.5 a row, (1.96 + 0.84)² × 0.5 / 0.05² = 1569.8.
    let worst = plan(&[]);
    assert_eq!(worst["source"]["kind"], "worst_case");
    assert_eq!(worst["dataset_rows"], 164);
    assert_eq!(worst["evaluators"][0]["lines"][0]["rows_needed"], 1570);
    assert!(server.log().is_empty(), "a plan sent a request");

    // From an experiment: its own variance, the versions' rows taken as uncorrelated.
    env.ok(&[
        "experiment",
        "--prompt",
        "ab",
        "--tag",
        "production",
        "--dataset",
        &data,
        "--eval",
        "icontains",
        "--base-url",
        &base,
    ]);
    let id = env.json(&["experiment", "list", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let sent = server.log().len();
    let from = plan(&["--experiment", &id]);
    assert_eq!(server.log().len(), sent, "a plan sent a request");
    assert_eq!(from["source"]["kind"], "experiment");
    let p = f(&r["miller"]["mean"]);
    let variance = p * (1.0 - p) * 164.0 / 163.0;
    let z = 1.959_963_984_540_054 + 0.841_621_233_572_914_3;
    let expected = (z * z * 2.0 * variance / (0.05 * 0.05) - 1e-9).ceil() as u64;
    assert_eq!(from["evaluators"][0]["lines"][0]["rows_needed"], expected);
    assert!(close(
        f(&from["evaluators"][0]["between_variance"]),
        variance
    ));

    let text = env.ok(&[
        "experiment",
        "plan",
        "--prompt",
        "ab",
        "--tag",
        "staging",
        "--dataset",
        &data,
        "--eval",
        "icontains",
        "--base-url",
        &base,
        "--detect",
        "0.05",
    ]);
    assert!(text.contains("ROWS NEEDED"), "{text}");
    assert!(
        text.contains("the dataset's 164 rows are too few; at least 1570 rows are needed"),
        "{text}"
    );

    let err = env.fails(
        &[
            "experiment",
            "plan",
            "--prompt",
            "ab",
            "--tag",
            "staging",
            "--dataset",
            &data,
            "--detect",
            "0",
        ],
        2,
    );
    assert!(err.contains("--detect 0 is out of range"), "{err}");
    let err = env.fails(
        &[
            "experiment",
            "plan",
            "--prompt",
            "ab",
            "--tag",
            "nope",
            "--dataset",
            &data,
            "--detect",
            "0.05",
        ],
        2,
    );
    assert!(err.contains("no tag 'nope'"), "{err}");
}

#[test]
fn five_rows_passing_on_both_sides_are_no_proof_of_non_inferiority() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    // Every row passes on both sides: the differences are all 0, their SE is 0, and a
    // normal interval would be [0, 0], "proving" the candidate no worse by any margin.
    let data = dataset(&env, "five.csv", &[1.0; 5], &[1.0; 5], None);
    let base = server.base_url();
    let c = compare_json(&env, &data, &base, &[]);
    let side = &c["candidate"]["evaluators"][0];
    assert_eq!(side["pass_rate"], 1.0);
    let (low, high) = (f(&side["pass_rate_ci"][0]), f(&side["pass_rate_ci"][1]));
    assert!(
        low < 0.6 && high == 1.0,
        "Wilson: 5 of 5 is not 100 % for sure: {side}"
    );
    let d = &c["evaluators"][0]["pass_rate_difference"];
    assert_eq!(d["estimate"], 0.0);
    // Every row agrees: no standard error to show (null, with why), never a 0.
    assert!(d["se"].is_null(), "{d}");
    assert_eq!(d["se_note"], "no variation: every row agrees");
    assert!(
        d["minimum_detectable_effect"].as_f64().unwrap() > 0.0,
        "{d}"
    );
    assert!(f(&d["ci"][0]) < -0.25 && f(&d["ci"][1]) > 0.25, "{d}");
    let before = env.json(&["tag", "history", "ab", "--json"]);
    let out = promote(&env, &data, &base, &["--non-inferior", "0.05", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["moved"], false, "{json}");
    let criterion = &json["verdict"]["criteria"][0];
    assert_eq!(criterion["passed"], false, "{criterion}");
    assert_eq!(env.json(&["tag", "history", "ab", "--json"]), before);
}

#[test]
fn the_confidence_level_comes_from_the_flag_or_runner_toml() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let r = reference();
    let values = floats(&r["miller"]["values"]);
    let data = dataset(&env, "miller.csv", &values, &values, None);
    env.ok(&[
        "experiment",
        "--prompt",
        "ab",
        "--tag",
        "production",
        "--dataset",
        &data,
        "--eval",
        "icontains",
        "--base-url",
        &server.base_url(),
    ]);
    let at = |extra: &[&str]| {
        let mut args = vec!["experiment", "show", "last", "--json"];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let half = |v: &Value| {
        let ci = &v["statistics"][0]["pass_rate"]["ci"];
        (f(&ci[1]) - f(&ci[0])) / 2.0
    };
    // Wilson's half-width for 137 of 164 at the critical value z.
    let wilson = |z: f64| {
        let (n, p) = (164.0, 137.0 / 164.0);
        z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / (1.0 + z * z / n)
    };
    let default = at(&[]);
    assert!(close(half(&default), wilson(1.959_963_984_540_054)));
    let flag = at(&["--confidence", "0.99"]);
    assert_eq!(flag["confidence"], 0.99);
    assert!(close(half(&flag), wilson(2.575_829_303_548_900_4)));
    env.write("runner.toml", "confidence = 0.9\n");
    let file = at(&[]);
    assert_eq!(file["confidence"], 0.9);
    assert!(close(half(&file), wilson(1.644_853_626_951_472_2)));
    // The flag overrides the file.
    assert_eq!(at(&["--confidence", "0.99"])["confidence"], 0.99);

    let err = env.fails(&["experiment", "show", "last", "--confidence", "1.5"], 2);
    assert!(err.contains("--confidence 1.5 is out of range"), "{err}");
    env.write("runner.toml", "confidence = 95\n");
    let err = env.fails(&["experiment", "show", "last"], 2);
    assert!(
        err.contains("confidence in runner.toml 95 is out of range"),
        "{err}"
    );
}

#[test]
fn two_experiments_larger_than_the_stream_buffer_compare_by_id_on_a_read_only_store() {
    // Each side streams its rows to the comparison while the other is read: on a store opened
    // read-only both reads once shared one connection, and a side of more than the stream's
    // buffer (1,024 rows) waited forever for the other.
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    setup(&env);
    let rows = 3000;
    let a: Vec<f64> = (0..rows).map(|i| f64::from(u8::from(i % 3 != 0))).collect();
    let b: Vec<f64> = (0..rows).map(|i| f64::from(u8::from(i % 5 != 0))).collect();
    let data = dataset(&env, "large.csv", &a, &b, None);
    let first = compare_json(&env, &data, &server.base_url(), &[]);
    let (base, cand) = (
        first["baseline"]["experiment"]
            .as_str()
            .unwrap()
            .to_string(),
        first["candidate"]["experiment"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    let output = env
        .cmd()
        .args(["compare", &base, &cand, "--json"])
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{:?}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let again: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(again["candidate"]["rows"], rows);
    assert_eq!(again["evaluators"], first["evaluators"]);
    // Rows failing on exactly one side: i % 3 == 0 or i % 5 == 0, not both.
    let (regressed, improved) = (0..rows).fold((0, 0), |(r, i), n| {
        (
            r + u64::from(n % 3 != 0 && n % 5 == 0),
            i + u64::from(n % 3 == 0 && n % 5 != 0),
        )
    });
    assert_eq!(again["evaluators"][0]["regressed"], regressed);
    assert_eq!(again["evaluators"][0]["improved"], improved);
}
