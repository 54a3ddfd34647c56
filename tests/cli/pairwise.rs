//! A versus B: `compare --eval pairwise` and `promote --eval pairwise --min-win-rate`, offline
//! against the mock: a judge that prefers the candidate in both orders, one that always picks
//! the answer shown first (every row a tie), judgments read back from the cache, and the gate
//! and the tag history that follow.

use crate::{Env, Mock};

/// Two versions whose answers the mock echoes: `Thanks: …` (production) and `Order: …`
/// (staging); six rows.
fn setup(env: &Env) -> String {
    env.ok(&[
        "prompt",
        "create",
        "support",
        "--template",
        "Thanks: {{query}}",
        "--model",
        "mock",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "support",
        "--template",
        "Order: {{query}}",
        "--tag",
        "staging",
    ]);
    let data = env.write(
        "q.csv",
        "id,query\n1,where is my order\n2,refund please\n3,hello\n4,cancel it\n5,status\n6,help\n",
    );
    data.to_str().unwrap().to_string()
}

/// Both tags' experiments, answered by the echoing mock.
fn answers(env: &Env, data: &str) {
    let echo = Mock::start(env, &[]);
    for tag in ["production", "staging"] {
        env.ok(&[
            "experiment",
            "--prompt",
            "support",
            "--tag",
            tag,
            "--dataset",
            data,
            "--base-url",
            &echo.url,
        ]);
    }
}

/// A judge that prefers the answer naming the order, whichever order it sees them in.
const FAIR: &str = r#"
- pattern: '(?s)<answer_a>\nOrder.*<answer_b>\nThanks'
  reply: '{"winner": "A", "reason": "A names the order"}'
- pattern: '(?s)<answer_a>\nThanks.*<answer_b>\nOrder'
  reply: '{"winner": "B", "reason": "B names the order"}'
"#;

/// A judge that always picks the answer shown first.
const FIRST: &str = r#"
- pattern: '(?s)<answer_a>'
  reply: '{"winner": "A", "reason": "the first one"}'
"#;

fn mock(env: &Env, rules: &str, name: &str) -> Mock {
    let path = env.write(name, rules);
    Mock::start(env, &["--responses", path.to_str().unwrap()])
}

#[test]
fn a_judge_that_prefers_the_candidate_in_both_orders_gives_it_every_row() {
    let env = Env::new();
    let data = setup(&env);
    let fair = mock(&env, FAIR, "fair.yaml");
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--prompt",
            "support",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--run",
            "--base-url",
            &fair.url,
            "--eval",
            "pairwise",
            "--json",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let json = compare(&["--min-win-rate", "0.5"]);
    let p = &json["pairwise"][0];
    assert_eq!(p["evaluator"], "pairwise");
    assert_eq!(
        (p["wins"].as_u64(), p["ties"].as_u64(), p["losses"].as_u64()),
        (Some(6), Some(0), Some(0))
    );
    assert_eq!(p["win_rate"], 1.0);
    // Wilson's interval at 95 % for 6 of 6, and the sign test's 2 × ½⁶.
    assert!(
        (p["ci"][0].as_f64().unwrap() - 0.6096657120978346).abs() < 1e-9,
        "{p}"
    );
    assert!(
        (p["sign_test_p"].as_f64().unwrap() - 0.03125).abs() < 1e-12,
        "{p}"
    );
    let row = &p["judged"][0];
    assert_eq!(row["candidate_first"], "A");
    assert_eq!(row["baseline_first"], "B");
    assert_eq!(row["outcome"], "win");
    assert_eq!(row["candidate_first_reason"], "A names the order");
    assert_eq!(json["gate"]["passed"], true, "{}", json["gate"]);
    // Both orders of six rows were asked once: a second comparison reads them back.
    let asked = fair.requests();
    compare(&[]);
    assert_eq!(fair.requests(), asked, "judgments come from the cache");
    // promote gates on it and records the criterion with the evidence.
    let out = env.ok(&[
        "promote",
        "--prompt",
        "support",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &fair.url,
        "--eval",
        "pairwise",
        "--min-win-rate",
        "0.5",
    ]);
    assert!(
        out.contains("the candidate wins 6, ties 0, loses 0 of 6 rows"),
        "{out}"
    );
    let history = env.json(&["tag", "history", "support", "--json"]);
    let last = history.as_array().unwrap().last().unwrap();
    assert_eq!(last["action"], "promote");
    let criteria: Vec<&str> = last["evidence"]["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        criteria.contains(&"min win rate [pairwise]"),
        "{criteria:?}"
    );
}

#[test]
fn a_judge_that_follows_the_order_gives_only_ties_and_the_gate_refuses() {
    let env = Env::new();
    let data = setup(&env);
    // The answers first, from the echoing mock; then a judge that picks whatever comes first.
    answers(&env, &data);
    let first = mock(&env, FIRST, "first.yaml");
    let out = env.run(&[
        "compare",
        "--prompt",
        "support",
        "--tags",
        "production,staging",
        "--dataset",
        &data,
        "--base-url",
        &first.url,
        "--eval",
        "pairwise",
        "--min-win-rate",
        "0.5",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("the candidate wins 0, ties 6, loses 0 of 6 rows"),
        "{stdout}"
    );
    assert!(stdout.contains("min win rate [pairwise]"), "{stdout}");
    // promote refuses the same way and moves nothing.
    let before = env.json(&["tag", "history", "support", "--json"]);
    let out = env.run(&[
        "promote",
        "--prompt",
        "support",
        "--from",
        "staging",
        "--to",
        "production",
        "--dataset",
        &data,
        "--base-url",
        &first.url,
        "--eval",
        "pairwise",
        "--min-win-rate",
        "0.5",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(env.json(&["tag", "history", "support", "--json"]), before);
}

#[test]
fn named_experiments_from_elsewhere_are_gated_by_the_judge_too() {
    let env = Env::new();
    let data = setup(&env);
    let echo = Mock::start(&env, &[]);
    for (tag, name) in [("production", "base"), ("staging", "cand")] {
        env.ok(&[
            "experiment",
            "--prompt",
            "support",
            "--tag",
            tag,
            "--dataset",
            &data,
            "--base-url",
            &echo.url,
            "--name",
            name,
        ]);
    }
    let fair = mock(&env, FAIR, "fair.yaml");
    let named = [
        "promote",
        "--prompt",
        "support",
        "--from",
        "staging",
        "--to",
        "production",
        "--candidate-experiment",
        "cand",
        "--baseline-experiment",
        "base",
    ];
    // Only a pairwise judge may be added to experiments scored elsewhere.
    let err = env.fails(&[&named[..], &["--eval", "icontains"]].concat(), 2);
    assert!(err.contains("scored by their own evaluators"), "{err}");
    let out = env.ok(&[
        &named[..],
        &[
            "--base-url",
            &fair.url,
            "--eval",
            "pairwise",
            "--min-win-rate",
            "0.5",
        ],
    ]
    .concat());
    assert!(out.contains("the candidate wins 6"), "{out}");
    let history = env.json(&["tag", "history", "support", "--json"]);
    assert_eq!(
        history.as_array().unwrap().last().unwrap()["action"],
        "promote"
    );
}

#[test]
fn runner_toml_s_gate_asks_for_the_judge() {
    let env = Env::new();
    let data = setup(&env);
    let first = mock(&env, FIRST, "first.yaml");
    env.write("judge.md", "Prefer the answer that names the order.\n");
    env.write(
        "runner.toml",
        &format!(
            "base_url = \"{}\"\n\n[prompts.support]\ndataset = \"{data}\"\n\n[prompts.support.gate]\nmin_win_rate = 0.5\npairwise_rubric = \"judge.md\"\n",
            first.url
        ),
    );
    let out = env.run(&[
        "promote",
        "--prompt",
        "support",
        "--from",
        "staging",
        "--to",
        "production",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("min win rate [pairwise:judge.md]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("the candidate wins 0, ties 6, loses 0 of 6 rows"),
        "{stdout}"
    );
}

#[test]
fn an_errored_answer_loses_its_row_and_no_cache_asks_again() {
    let env = Env::new();
    let data = setup(&env);
    // The candidate's answer to "status" fails; the judge is fair on the rest.
    let rules = format!("- pattern: '^Order: status$'\n  reply: down\n  status: 500\n{FAIR}");
    let both = mock(&env, &rules, "both.yaml");
    let compare = |extra: &[&str]| {
        let mut args = vec![
            "compare",
            "--prompt",
            "support",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--run",
            "--base-url",
            &both.url,
            "--max-retries",
            "0",
            "--max-error-rate",
            "0.2",
            "--eval",
            "pairwise",
            "--json",
        ];
        args.extend_from_slice(extra);
        env.json(&args)
    };
    let json = compare(&[]);
    let p = &json["pairwise"][0];
    assert_eq!(
        (p["wins"].as_u64(), p["ties"].as_u64(), p["losses"].as_u64()),
        (Some(5), Some(0), Some(1)),
        "{p}"
    );
    let lost = p["judged"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["outcome"] == "loss")
        .unwrap();
    assert_eq!(lost["row_id"], "5");
    assert_eq!(
        lost["candidate_first_reason"],
        "the candidate's call errored"
    );
    assert_eq!(p["unpaired"], 0);
    // --no-cache asks the judge again: both orders of the five rows both answered.
    let asked = both.requests();
    compare(&["--no-cache"]);
    assert_eq!(both.requests(), asked + 10);
}

#[test]
fn an_unreadable_verdict_is_not_kept_and_is_asked_again() {
    let env = Env::new();
    let data = setup(&env);
    answers(&env, &data);
    let prose = env.write(
        "prose.yaml",
        "- pattern: '(?s)<answer_a>'\n  reply: 'I think A is better.'\n",
    );
    let bad = Mock::start(&env, &["--responses", prose.to_str().unwrap()]);
    let url = bad.url.clone();
    let port = url
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let compare = || {
        env.run(&[
            "compare",
            "--prompt",
            "support",
            "--tags",
            "production,staging",
            "--dataset",
            &data,
            "--base-url",
            &url,
            "--eval",
            "pairwise",
            "--min-win-rate",
            "0.5",
        ])
    };
    let out = compare();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("the judge failed on 6 row(s)"), "{stdout}");
    // No row judged: no rate of 0% over nothing, and no evaluator to test but the judge.
    assert!(
        stdout.contains("no row was judged, so there is no win rate"),
        "{stdout}"
    );
    assert!(!stdout.contains("win rate 0.0%"), "{stdout}");
    assert!(
        !stdout.contains("fewer than 2 rows on both sides"),
        "{stdout}"
    );
    drop(bad);
    // A judge that answers properly, where the first one was: asked again, and it passes.
    let rules = env.write("fair.yaml", FAIR);
    let _fair = Mock::start_on(&env, &port, &["--responses", rules.to_str().unwrap()]);
    let out = compare();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn pairwise_flags_are_checked_before_anything_runs() {
    let env = Env::new();
    let data = setup(&env);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "compare",
                "--prompt",
                "support",
                "--tags",
                "production,staging",
                "--dataset",
                &data,
                "--min-win-rate",
                "0.5",
            ],
            "--min-win-rate needs a pairwise judge",
        ),
        (
            &[
                "compare",
                "--prompt",
                "support",
                "--tags",
                "production,staging",
                "--dataset",
                &data,
                "--eval",
                "pairwise:missing.md",
            ],
            "cannot read rubric file 'missing.md'",
        ),
        (
            &[
                "promote",
                "--prompt",
                "support",
                "--from",
                "staging",
                "--to",
                "production",
                "--dataset",
                &data,
                "--eval",
                "pairwise",
            ],
            "needs --min-win-rate",
        ),
        (
            &[
                "promote",
                "--prompt",
                "support",
                "--from",
                "staging",
                "--to",
                "production",
                "--dataset",
                &data,
                "--eval",
                "pairwise",
                "--min-win-rate",
                "1.5",
            ],
            "between 0 and 1",
        ),
    ];
    for (args, needle) in cases {
        let err = env.fails(args, 2);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
