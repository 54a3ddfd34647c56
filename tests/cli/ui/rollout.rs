//! The prompt page's Rollout section through the real `runner serve`: a rollout started by the
//! CLI, spans on each arm over OTLP, the panel's figures checked against `runner canary status`,
//! the advance and stop forms offered to write tokens only and refused without the page's CSRF
//! token, and a stopped rollout listed with its evidence while production stays.

use super::production::{llm_span, now_ms, text, version, wait_for_spans};
use super::{Env, READER, Server, WRITER, login};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde_json::Value;

/// Spans over OTLP/HTTP with the write token, as an exporter beside the application sends them.
fn export(server: &Server, spans: Vec<Span>) {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![text("service.name", "support-bot")],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let send = server
        .http
        .post(format!("{}/v1/traces", server.base))
        .header("authorization", format!("Bearer {WRITER}"))
        .header("content-type", "application/x-protobuf")
        .body(request.encode_to_vec());
    let status = server
        .runtime
        .block_on(async { send.send().await.expect("POST").status().as_u16() });
    assert_eq!(status, 200);
}

fn status(env: &Env) -> Value {
    env.json(&["canary", "status", "greet", "--json"])
}

/// The text of the page from `from` up to the next `</section>`.
fn section<'a>(page: &'a str, from: &str) -> &'a str {
    let at = page
        .find(from)
        .unwrap_or_else(|| panic!("no {from} in {page}"));
    let rest = &page[at..];
    &rest[..rest.find("</section>").unwrap()]
}

#[test]
fn the_prompt_page_shows_a_rollout_and_write_tokens_advance_and_stop_it() {
    let env = Env::new();
    super::store(&env);
    env.write("writers.txt", &format!("ci:{WRITER}\n"));
    env.write("readers.txt", &format!("{READER}\n"));
    let server = Server::start(
        &env,
        &[
            "--token-file",
            "writers.txt",
            "--read-token-file",
            "readers.txt",
        ],
    );
    let writer = login(&server, WRITER);
    let reader = login(&server, READER);
    // No rollout yet: no section.
    let before = server.get_as("/prompts/greet", &writer);
    assert!(!before.text.contains("id=\"rollout\""));

    env.ok(&[
        "canary",
        "start",
        "greet",
        "--tag",
        "production",
        "--candidate",
        "staging",
        "--steps",
        "5,50,100",
        "--step-after",
        "30m",
        "--metric",
        "error_rate",
        "--non-inferior",
        "0.02",
    ]);
    // 40 calls on each arm; one in ten on the candidate fails.
    let start = now_ms();
    let mut spans = Vec::new();
    for i in 0..40u64 {
        spans.push(llm_span(i + 1, start + i, 100, vec![version(1)], false));
        spans.push(llm_span(
            i + 101,
            start + i,
            100,
            vec![version(2)],
            i % 10 == 0,
        ));
    }
    export(&server, spans);
    wait_for_spans(&env, 80);

    let page = server.get_as("/prompts/greet", &writer);
    assert_eq!(page.status, 200);
    let panel = section(&page.text, "<section id=\"rollout\">");
    let now = status(&env);
    assert_eq!(now["rollout"]["status"], "running");
    let metric = &now["now"]["metrics"][0];
    assert_eq!(metric["baseline_spans"], 40);
    assert_eq!(metric["candidate_spans"], 40);
    let [lo, hi] = [0, 1].map(|i| metric["interval"][i].as_f64().unwrap());
    for shown in [
        "Step 1 of 3: 5% of lookups get v2".to_string(),
        "<progress max=\"100\" value=\"5\">".into(),
        "0.0000 (40 spans)".into(),
        "0.1000 (40 spans)".into(),
        format!("+0.1000 [{lo:+.4}, {hi:+.4}]"),
        "0.0200".into(),
        format!(
            ">{}<",
            match metric["verdict"].as_str().unwrap() {
                "non_inferior" => "non-inferior",
                "inferior" => "INFERIOR",
                _ => "inconclusive",
            }
        ),
        "Decision so far:".into(),
        "steps to 50%".into(),
        "5% → 50% → 100%".into(),
    ] {
        assert!(panel.contains(&shown), "{shown} not in {panel}");
    }
    assert!(panel.contains("Advance") && panel.contains("/prompts/greet/rollouts/stop"));

    // A read-only token sees the panel, no form, and may not act.
    let read = server.get_as("/prompts/greet", &reader);
    let read_panel = section(&read.text, "<section id=\"rollout\">");
    assert!(read_panel.contains("0.1000 (40 spans)"));
    assert!(!read_panel.contains("<form"), "{read_panel}");
    let csrf = page.csrf();
    let refused = server.post(
        "/prompts/greet/rollouts/advance",
        Some(&reader),
        &[("csrf", &read.csrf()), ("tag", "production")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    // Without the page's CSRF token, or with another session's, nothing moves.
    for bad in ["", "0", read.csrf().as_str()] {
        let refused = server.post(
            "/prompts/greet/rollouts/advance",
            Some(&writer),
            &[("csrf", bad), ("tag", "production")],
        );
        assert_eq!(refused.status, 403, "{bad:?}: {}", refused.text);
        let refused = server.post(
            "/prompts/greet/rollouts/stop",
            Some(&writer),
            &[("csrf", bad), ("tag", "production")],
        );
        assert_eq!(refused.status, 403, "{bad:?}: {}", refused.text);
    }
    assert_eq!(status(&env)["rollout"]["step"], 0);
    assert_eq!(status(&env)["rollout"]["status"], "running");

    // Advance moves to the next step, recorded as the writer's.
    let advanced = server.post(
        "/prompts/greet/rollouts/advance",
        Some(&writer),
        &[("csrf", &csrf), ("tag", "production")],
    );
    assert_eq!(advanced.status, 303, "{}", advanced.text);
    assert_eq!(advanced.header("location"), "/prompts/greet#rollout");
    let now = status(&env);
    assert_eq!(now["rollout"]["step"], 1);
    assert_eq!(now["share"], 50);
    let page = server.get_as("/prompts/greet", &writer);
    assert!(page.text.contains("Step 2 of 3: 50% of lookups get v2"));
    // To the last step too; but completing it by hand would move production, which is
    // protected: a write token's session is refused and the rollout stays at 100%.
    let advanced = server.post(
        "/prompts/greet/rollouts/advance",
        Some(&writer),
        &[("csrf", &csrf), ("tag", "production")],
    );
    assert_eq!(advanced.status, 303, "{}", advanced.text);
    assert_eq!(status(&env)["share"], 100);
    let refused = server.post(
        "/prompts/greet/rollouts/advance",
        Some(&writer),
        &[("csrf", &csrf), ("tag", "production")],
    );
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("needs a deploy token"),
        "{}",
        refused.text
    );
    assert_eq!(status(&env)["rollout"]["status"], "running");

    // Stop ends it: production stays on v1, the canary tag is gone, the message is kept.
    let stopped = server.post(
        "/prompts/greet/rollouts/stop",
        Some(&writer),
        &[
            ("csrf", &csrf),
            ("tag", "production"),
            ("message", "not <today>"),
        ],
    );
    assert_eq!(stopped.status, 303, "{}", stopped.text);
    let ended = status(&env);
    assert_eq!(ended["rollout"]["status"], "stopped");
    let tags = env.json(&["tag", "list", "greet", "--json"]);
    let production = tags
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "production")
        .unwrap();
    assert_eq!(production["version_seq"], 1, "{tags}");
    assert!(
        !tags
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "canary")
    );
    let history = super::history(&env);
    let withdrawn = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tag"] == "canary" && e["action"] == "delete")
        .expect("the canary tag deleted");
    assert_eq!(withdrawn["actor"], "ui:ci");
    // A second stop finds nothing running and says so.
    let again = server.post(
        "/prompts/greet/rollouts/stop",
        Some(&writer),
        &[("csrf", &csrf), ("tag", "production")],
    );
    assert_eq!(again.status, 409, "{}", again.text);
    assert!(again.text.contains("no running rollout"));

    // The finished rollout is listed with its evidence, the message escaped; no form remains.
    let page = server.get_as("/prompts/greet", &writer);
    let panel = section(&page.text, "<section id=\"rollout\">");
    let id = ended["rollout"]["id"].as_str().unwrap();
    for shown in [
        "no rollout running",
        "Finished rollouts",
        id,
        ">stopped<",
        "at step 3 (100% of lookups): not &lt;today&gt;",
    ] {
        assert!(panel.contains(shown), "{shown} not in {panel}");
    }
    assert!(!panel.contains("<form"), "{panel}");
}
