//! `runner try`: one version on one input, the answer streaming in (SSE from the mock, a whole
//! answer from an endpoint that does not stream), two versions side by side, an edited template
//! saved as a version; nothing recorded otherwise.

use crate::fault_server::FaultServer;
use crate::{Env, Mock, dump};
use std::io::Read;
use std::time::Duration;

fn greet(env: &Env) {
    env.ok(&[
        "prompt",
        "create",
        "greet",
        "--template",
        "Hello {{name}}, how can we help with {{topic}} today?",
        "--model",
        "gpt-4o-mini",
        "--param",
        "temperature=0.2",
        "--tag",
        "production",
    ]);
    env.ok(&[
        "prompt",
        "update",
        "greet",
        "--template",
        "Hi {{name}}! Tell us about {{topic}}.",
        "--tag",
        "staging",
    ]);
}

#[test]
fn the_answer_streams_in_and_nothing_is_recorded() {
    let env = Env::new();
    // Twelve words, 150 ms apart: the answer takes almost two seconds to arrive.
    let mock = Mock::start(&env, &["--chunk-ms", "150"]);
    let url = mock.url.clone();
    greet(&env);
    let before = dump(&env.db);
    let mut child = env
        .std_cmd()
        .args([
            "try",
            "greet",
            "--tag",
            "production",
            "--var",
            "name=Ann Lee",
            "--var",
            "topic=billing and invoices",
            "--base-url",
            &url,
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 5];
    stdout.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"Hello");
    // The first words are out while the rest are still coming: the process is still running.
    assert!(
        child.try_wait().unwrap().is_none(),
        "the whole answer arrived at once"
    );
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        format!("Hello{rest}"),
        "Hello Ann Lee, how can we help with billing and invoices today?\n"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("greet v1 (production)"), "{stderr}");
    assert!(stderr.contains("first token"), "{stderr}");
    assert!(stderr.contains("12 in / 12 out tokens"), "{stderr}");
    assert!(stderr.contains("finish: stop"), "{stderr}");
    // No experiment, no cache entry, no version: the store is as it was.
    assert_eq!(dump(&env.db), before);

    let json = env.json(&[
        "try",
        "greet",
        "--tag",
        "staging",
        "--var",
        "name=Ann",
        "--var",
        "topic=refunds",
        "--base-url",
        &url,
        "--json",
    ]);
    assert_eq!(json["output"], "Hi Ann! Tell us about refunds.");
    assert_eq!(json["version"], 2);
    assert_eq!(json["tag"], "staging");
    assert_eq!(json["finish_reason"], "stop");
    assert_eq!(json["prompt_tokens"], 6);
    assert_eq!(json["completion_tokens"], 6);
    let (ttft, latency) = (
        json["ttft_ms"].as_f64().unwrap(),
        json["latency_ms"].as_f64().unwrap(),
    );
    // Six words 150 ms apart: the first comes well before the last.
    assert!(ttft < latency && latency >= 600.0, "{json}");
    assert_eq!(dump(&env.db), before);
}

#[test]
fn an_endpoint_that_does_not_stream_is_answered_whole_after_retries() {
    let env = Env::new();
    let server = FaultServer::start(Duration::ZERO);
    env.ok(&[
        "prompt",
        "create",
        "p",
        "--template",
        "{{q}}",
        "--model",
        "m",
    ]);
    // The first attempt is refused with a 429; the retry is answered with a plain JSON body.
    let json = env.json(&[
        "try",
        "p",
        "--var",
        "q=fault=429:1:0 hello",
        "--base-url",
        &server.base_url(),
        "--json",
    ]);
    assert_eq!(json["output"], "fault=429:1:0 hello");
    assert_eq!(json["attempts"], 2);
    assert_eq!(server.requests_for("hello").len(), 2);
    let out = env.ok(&[
        "try",
        "p",
        "--var",
        "q=plain answer",
        "--base-url",
        &server.base_url(),
    ]);
    assert_eq!(out, "plain answer\n");
}

#[test]
fn two_versions_side_by_side_with_a_word_diff() {
    let env = Env::new();
    let mock = Mock::start(&env, &[]);
    let url = mock.url.clone();
    greet(&env);
    let text = env.ok(&[
        "try",
        "greet",
        "--tags",
        "production,staging",
        "--var",
        "name=Ann",
        "--var",
        "topic=billing",
        "--base-url",
        &url,
    ]);
    assert!(text.contains("greet v1 (production)"), "{text}");
    assert!(text.contains("greet v2 (staging)"), "{text}");
    assert!(
        text.contains("Hello Ann, how can we help with billing today?"),
        "{text}"
    );
    assert!(text.contains("Hi Ann! Tell us about billing."), "{text}");
    assert!(text.contains("[-Hello-]{+Hi+}"), "{text}");
    assert_eq!(mock.requests(), 2);
    let json = env.json(&[
        "try",
        "greet",
        "--tags",
        "production,staging",
        "--var",
        "name=Ann",
        "--var",
        "topic=billing",
        "--base-url",
        &url,
        "--json",
    ]);
    let sides = json["sides"].as_array().unwrap();
    assert_eq!(sides.len(), 2);
    assert_eq!(sides[0]["version"], 1);
    assert_eq!(sides[1]["version"], 2);
    let first: String = json["diff"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["op"] != "insert")
        .map(|p| p["text"].as_str().unwrap())
        .collect();
    assert_eq!(first, sides[0]["output"].as_str().unwrap());
    // Stacked on a narrow terminal.
    let out = env
        .cmd()
        .env("COLUMNS", "60")
        .args([
            "try",
            "greet",
            "--tags",
            "production,staging",
            "--var",
            "name=Ann",
            "--var",
            "topic=billing",
            "--base-url",
            &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("── greet v1 (production) ──"), "{text}");
}

#[test]
fn an_edited_template_is_tried_and_saved_only_when_asked() {
    let env = Env::new();
    let mock = Mock::start(&env, &[]);
    let url = mock.url.clone();
    greet(&env);
    env.write("draft.txt", "Yo {{name}}, {{topic}}?");
    let tried = env.json(&[
        "try",
        "greet",
        "--tag",
        "staging",
        "--template-file",
        "draft.txt",
        "--var",
        "name=Ann",
        "--var",
        "topic=refunds",
        "--base-url",
        &url,
        "--json",
    ]);
    assert_eq!(tried["output"], "Yo Ann, refunds?");
    assert_eq!(tried["edited"], true);
    assert_eq!(
        env.json(&["prompt", "versions", "greet", "--json"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let saved = env.json(&[
        "try",
        "greet",
        "--tag",
        "staging",
        "--template-file",
        "draft.txt",
        "--var",
        "name=Ann",
        "--var",
        "topic=refunds",
        "--base-url",
        &url,
        "--save",
        "-m",
        "Shorter greeting",
        "--json",
    ]);
    assert_eq!(saved["saved_version"], 3);
    let v3 = env.json(&["prompt", "show", "greet", "--version", "3", "--json"]);
    let text = v3.to_string();
    assert!(text.contains("Yo {{name}}, {{topic}}?"), "{v3}");
    assert!(text.contains("Shorter greeting"), "{v3}");
    // The tried version's model and parameters come along.
    assert!(text.contains("gpt-4o-mini") && text.contains("0.2"), "{v3}");
    // The tags stay where they were.
    let staging = env.json(&["prompt", "show", "greet", "--tag", "staging", "--json"]);
    assert!(staging.to_string().contains("Tell us about"), "{staging}");
    let err = env.fails(
        &[
            "try",
            "greet",
            "--var",
            "name=a",
            "--var",
            "topic=b",
            "--base-url",
            &url,
            "--save",
            "-m",
            "x",
        ],
        2,
    );
    assert!(err.contains("--save stores a tried template"), "{err}");
}

#[test]
fn bad_input_sends_nothing_and_a_failed_call_exits_3() {
    let env = Env::new();
    let rules = env.write(
        "rules.yaml",
        "- pattern: \"broken\"\n  reply: \"The model `nope` does not exist\"\n  status: 404\n",
    );
    let mock = Mock::start(&env, &["--responses", rules.to_str().unwrap()]);
    let url = mock.url.clone();
    greet(&env);
    let err = env.fails(
        &["try", "greet", "--var", "name=Ann", "--base-url", &url],
        2,
    );
    assert!(err.contains("topic"), "{err}");
    assert!(err.contains("hint: give every variable"), "{err}");
    let err = env.fails(
        &[
            "try",
            "greet",
            "--tags",
            "production",
            "--var",
            "name=a",
            "--base-url",
            &url,
        ],
        2,
    );
    assert!(err.contains("--tags takes two tags"), "{err}");
    let data = env.write("d.csv", "id,name,topic\nr1,Bo,tea\n");
    let err = env.fails(
        &[
            "try",
            "greet",
            "--dataset",
            data.to_str().unwrap(),
            "--row",
            "r9",
            "--base-url",
            &url,
        ],
        2,
    );
    assert!(err.contains("no row with id 'r9'"), "{err}");
    assert_eq!(mock.requests(), 0, "nothing was sent");
    // A dataset row supplies the variables.
    let row = env.json(&[
        "try",
        "greet",
        "--dataset",
        data.to_str().unwrap(),
        "--row",
        "r1",
        "--base-url",
        &url,
        "--json",
    ]);
    assert_eq!(row["output"], "Hi Bo! Tell us about tea.");
    let err = env.fails(
        &[
            "try",
            "greet",
            "--var",
            "name=broken",
            "--var",
            "topic=x",
            "--base-url",
            &url,
        ],
        3,
    );
    assert!(
        err.contains("HTTP 404") && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains("hint: check the model name"), "{err}");
}
