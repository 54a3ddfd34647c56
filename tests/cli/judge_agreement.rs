//! `runner judge agreement`: an LLM judge (the mock, with rules) run on an experiment's stored
//! answers and set against people's labels: the table, Cohen's kappa with its interval, the
//! disagreements, the judge's answers read back from the cache, and bad labels refused.

use crate::{Env, Mock};

const JUDGE: &str = r#"
- pattern: '(?s)<answer>\nOrder: (refund|cancel)'
  reply: '{"score": 0, "pass": false, "reason": "promises what policy forbids"}'
- pattern: '(?s)<answer>'
  reply: '{"score": 1, "pass": true, "reason": "answers the question"}'
"#;

/// An experiment of six answers (`Order: …`, echoed by the mock), a judge and a rubric.
fn setup(env: &Env) -> (Mock, String) {
    env.ok(&[
        "prompt",
        "create",
        "support",
        "--template",
        "Order: {{query}}",
        "--model",
        "mock",
    ]);
    let data = env.write(
        "q.csv",
        "id,query\n1,where is my order\n2,refund please\n3,hello\n4,cancel it\n5,status\n6,help\n",
    );
    let echo = Mock::start(env, &[]);
    env.ok(&[
        "experiment",
        "--prompt",
        "support",
        "--dataset",
        data.to_str().unwrap(),
        "--base-url",
        &echo.url,
        "--name",
        "answers",
    ]);
    env.write(
        "rubric.md",
        "Pass when the reply answers the question within policy.\n",
    );
    let rules = env.write("judge.yaml", JUDGE);
    let judge = Mock::start(env, &["--responses", rules.to_str().unwrap()]);
    let url = judge.url.clone();
    (judge, url)
}

#[test]
fn a_judge_is_set_against_people_s_labels() {
    let env = Env::new();
    let (judge, url) = setup(&env);
    // People fail the refund, the cancellation and the bare hello; 7 names no row.
    env.write(
        "labels.csv",
        "id,label\n1,pass\n2,fail\n3,fail\n4,fail\n5,yes\n6,1\n7,pass\n",
    );
    let args = [
        "judge",
        "agreement",
        "--experiment",
        "answers",
        "--eval",
        "judge:rubric.md",
        "--labels",
        "labels.csv",
        "--base-url",
        &url,
        "--json",
    ];
    let found = env.json(&args);
    let table = &found["table"];
    assert_eq!(table["both_pass"], 3);
    assert_eq!(table["evaluator_pass_people_fail"], 1);
    assert_eq!(table["evaluator_fail_people_pass"], 0);
    assert_eq!(table["both_fail"], 2);
    assert_eq!(found["rows"], 6);
    assert_eq!(found["unmatched_labels"], 1);
    // 5 of 6 agree where chance alone gives 1/2: kappa 2/3 (statsmodels' cohens_kappa).
    let kappa = &found["kappa"];
    assert!(
        (kappa["kappa"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-12,
        "{kappa}"
    );
    assert!(
        (kappa["se"].as_f64().unwrap() - 0.2868876552746235).abs() < 1e-9,
        "{kappa}"
    );
    assert_eq!(kappa["ci"][1], 1.0, "the interval is cut at 1");
    assert_eq!(found["disagreements"][0]["row_id"], "3");
    assert_eq!(found["disagreements"][0]["reason"], "answers the question");
    // Asked once: the second check reads the judge's answers from the cache.
    let asked = judge.requests();
    assert_eq!(asked, 6);
    let text = env.ok(&args[..args.len() - 1]);
    assert!(text.contains("Cohen's kappa 0.667"), "{text}");
    assert!(
        text.contains("agreement 83.3% (chance alone: 50.0%)"),
        "{text}"
    );
    assert_eq!(judge.requests(), asked);
}

#[test]
fn bad_labels_and_specs_are_refused_before_any_call() {
    let env = Env::new();
    let (judge, url) = setup(&env);
    env.write("maybe.csv", "id,label\n1,pass\n2,maybe\n");
    env.write("noid.csv", "row,label\n1,pass\n");
    env.write("nolabel.csv", "id,verdict\n1,pass\n");
    env.write("twice.csv", "id,label\n1,pass\n1,fail\n");
    env.write("labels.csv", "id,score\n1,0.9\n2,0.1\n");
    let cases: &[(&str, &str, &str)] = &[
        (
            "maybe.csv",
            "judge:rubric.md",
            "row 2: cannot read \"maybe\" as pass or fail",
        ),
        ("noid.csv", "judge:rubric.md", "there is no id column"),
        (
            "nolabel.csv",
            "judge:rubric.md",
            "there is no label or score column",
        ),
        ("twice.csv", "judge:rubric.md", "duplicate id \"1\""),
        ("labels.csv", "pairwise", "a pairwise judge compares two"),
        ("labels.csv", "judge:missing.md", "cannot read rubric file"),
        // The experiment recorded no expected answers and no expected tool calls.
        (
            "labels.csv",
            "icontains",
            "compares with an expected answer",
        ),
        (
            "labels.csv",
            "tool-name",
            "compares with an expected_tool_calls column",
        ),
    ];
    for (labels, spec, needle) in cases {
        let err = env.fails(
            &[
                "judge",
                "agreement",
                "--experiment",
                "answers",
                "--eval",
                spec,
                "--labels",
                labels,
                "--base-url",
                &url,
            ],
            2,
        );
        assert!(err.contains(needle), "{labels} {spec}: {err}");
        if *labels == "maybe.csv" {
            assert!(err.contains("hint: label: pass/fail"), "{err}");
        }
    }
    assert_eq!(judge.requests(), 0);
}

/// An evaluator that calls no model runs without a key for the endpoint, and one that cannot
/// judge any row is an error, not an agreement of no rows.
#[test]
fn an_evaluator_that_calls_no_model_needs_no_key_and_judging_nothing_is_an_error() {
    let env = Env::new();
    let (judge, _url) = setup(&env);
    env.write("labels.csv", "id,label\n1,pass\n2,fail\n3,fail\n");
    let base = [
        "judge",
        "agreement",
        "--experiment",
        "answers",
        "--labels",
        "labels.csv",
    ];
    // No --base-url and no OPENAI_API_KEY: the default endpoint, never called.
    let found = env.json(&[&base[..], &["--eval", "regex:(?i)refund|cancel", "--json"]].concat());
    assert_eq!(found["rows"], 3, "{found}");
    // A program evaluator that cannot score any row (it exits without a verdict).
    let err = env.fails(&[&base[..], &["--eval", "cmd:false"]].concat(), 2);
    assert!(err.contains("judged none of the 3 labelled rows"), "{err}");
    assert_eq!(judge.requests(), 0);
}
