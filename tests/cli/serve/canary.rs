//! Canary rollouts through a real `runner serve`: lookups split between the arms (sticky per
//! unit), traces credited to the version each lookup served, and the server's own decisions:
//! a worse candidate rolled back with production untouched, an equal one completed as a
//! promotion, with the evidence in the tag history.

use super::traces::{INGESTER, greet, now_ms, request, timed_span};
use super::{DEPLOYER, Env, READER, Server, WRITER, bearer};
use prost::Message;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Plays an application for `units` lookups of `production`: each unit fetches with its unit
/// header, then "calls the model" with the version it got; calls of `bad` fail at `bad_rate`
/// (every n-th), others never. Sends the spans over OTLP and returns the arms served.
fn traffic(
    server: &Server,
    units: std::ops::Range<u64>,
    bad: &str,
    fail_every: u64,
    span_base: u64,
) -> HashMap<u64, String> {
    let mut served = HashMap::new();
    let mut spans = Vec::new();
    let start = now_ms();
    for unit in units {
        let reply = server.call(
            "GET",
            "/v1/prompts/greet/tags/production",
            &[("x-runner-unit", &format!("user-{unit}"))],
            None,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.header("cache-control"), "private, no-store");
        let id = reply.json()["data"]["id"].as_str().unwrap().to_string();
        let arm = reply.header("x-runner-rollout").to_string();
        assert!(arm.contains("; arm="), "{arm}");
        let fails = id == bad && unit % fail_every == 0;
        // Ids from 1: an all-zero span id is not a span id.
        spans.push(timed_span(
            span_base + unit + 1,
            span_base + unit + 1,
            start + unit % 50,
            &id,
            fails,
            100,
        ));
        served.insert(unit, id);
    }
    for chunk in spans.chunks(500) {
        let reply = server.export(
            None,
            request(None, chunk.to_vec()).encode_to_vec(),
            "application/x-protobuf",
            false,
        );
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    served
}

fn status(env: &Env) -> Value {
    env.json(&["canary", "status", "greet", "--json"])
}

/// Waits (bounded) until the rollout's status JSON satisfies `done`.
fn wait_for(env: &Env, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = status(env);
        if done(&now) {
            return now;
        }
        assert!(Instant::now() < deadline, "never {what}: {now:#}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start(env: &Env, margin: &str, requests: &str) {
    env.ok(&[
        "canary",
        "start",
        "greet",
        "--tag",
        "production",
        "--candidate",
        "2",
        "--steps",
        "50,100",
        "--step-after",
        requests,
        "--unit-header",
        "X-Runner-Unit",
        "--metric",
        "error_rate",
        "--non-inferior",
        margin,
        "-m",
        "try v2",
    ]);
}

#[test]
fn a_worse_candidate_is_rolled_back_and_production_never_moves() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, v2) = greet(&server, &[]);
    start(&env, "0.02", "300requests");
    let started = status(&env);
    assert_eq!(started["rollout"]["status"], "running");
    assert_eq!(started["share"], 50);
    let tags = env.json(&["tag", "list", "greet", "--json"]);
    assert!(
        tags.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "canary" && t["version_id"] == v2.as_str()),
        "{tags}"
    );
    // One rollout per tag at a time.
    let again = env.run(&["canary", "start", "greet", "--candidate", "2"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already has a rollout"));

    // The candidate fails one call in three; the baseline never does.
    let served = traffic(&server, 0..600, &v2, 3, 0);
    let on_candidate = served.values().filter(|id| **id == v2).count();
    assert!(
        (200..400).contains(&on_candidate),
        "about half the units get the candidate: {on_candidate}"
    );
    let ended = wait_for(&env, "rolled back", |s| {
        s["rollout"]["status"] == "rolled_back"
    });
    assert_eq!(ended["share"], 0);
    // Production never moved, the canary tag is gone, and lookups are plain again.
    let production = server.get("/v1/prompts/greet/tags/production");
    assert_eq!(production.json()["data"]["id"], v1.as_str());
    assert!(production.headers.get("x-runner-rollout").is_none());
    let history = env.json(&["tag", "history", "greet", "--json"]);
    let canary: Vec<&Value> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tag"] == "canary")
        .collect();
    assert_eq!(canary.len(), 2, "{history}");
    let end = canary
        .iter()
        .find(|e| e["action"] == "delete")
        .expect("the canary tag deleted");
    assert_eq!(end["evidence"]["decision"], "roll_back");
    let metric = &end["evidence"]["metrics"][0];
    assert_eq!(metric["verdict"], "inferior");
    assert!(metric["worse_by"].as_f64().unwrap() > 0.2, "{metric}");
    assert!(metric["candidate_spans"].as_u64().unwrap() >= 30);
    // The traces credit each call to the version served: a split that always served one arm
    // would leave the other without spans.
    let report = env.json(&["production", "greet", "--since", "1h", "--json"]);
    let requests: HashMap<i64, i64> = report["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_i64().unwrap(),
                v["requests"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(requests[&2], on_candidate as i64);
    assert_eq!(requests[&1], 600 - on_candidate as i64);
}

#[test]
fn an_equal_candidate_completes_and_units_keep_their_arm() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, v2) = greet(&server, &[]);
    start(&env, "0.05", "300requests");
    let first = traffic(&server, 0..600, "none", 1, 0);
    // A unit keeps its arm across lookups. The server may step up as soon as the first 600
    // spans are in, even while these lookups run: then a unit on the candidate still keeps it,
    // and a unit on the baseline looked up after the step moves to the candidate (the share
    // went from 50 % to 100 %). Steps only grow, so a share still at 50 % after the lookups
    // means none happened before or during them, and once one unit has moved, every unit
    // looked up after it gets the candidate.
    let again = traffic(&server, 0..100, "none", 1, 10_000);
    let stepped_meanwhile = status(&env)["share"] != 50;
    let mut moved_at = None;
    for unit in 0..100 {
        let id = &again[&unit];
        if first[&unit] == v2 {
            assert_eq!(id, &v2, "unit {unit} left the candidate");
        } else if id != &first[&unit] {
            assert!(stepped_meanwhile, "unit {unit} changed arm without a step");
            assert_eq!(id, &v2, "unit {unit} left for another version");
            moved_at.get_or_insert(unit);
        } else if let Some(moved) = moved_at {
            panic!("unit {unit} kept the baseline after unit {moved} had moved to the candidate");
        }
    }
    let stepped = wait_for(&env, "stepped to 100%", |s| s["share"] == 100);
    assert_eq!(stepped["rollout"]["step"], 1);
    // Units on the candidate stay there as the share grows; now every unit gets it.
    let later = traffic(&server, 0..400, "none", 1, 20_000);
    assert!(later.values().all(|id| *id == v2));
    let done = wait_for(&env, "completed", |s| s["rollout"]["status"] == "completed");
    assert!(
        done["next"].as_str().unwrap().contains("moved to v2"),
        "{done}"
    );
    // The tag moved as a promotion, with the rollout's evidence; the canary tag is gone.
    let production = server.get("/v1/prompts/greet/tags/production");
    assert_eq!(production.json()["data"]["id"], v2.as_str());
    let history = env.json(&["tag", "history", "greet", "production", "--json"]);
    let promoted = history
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "promote")
        .expect("a promotion");
    assert_eq!(promoted["action"], "promote", "{history}");
    assert_eq!(promoted["evidence"]["decision"], "complete");
    assert_eq!(promoted["from_version_id"], v1.as_str());
    let tags = env.json(&["tag", "list", "greet", "--json"]);
    assert!(
        !tags
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "canary"),
        "{tags}"
    );
}

#[test]
fn rollouts_refuse_bad_plans_and_stop_on_rollback() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, _) = greet(&server, &[]);
    for (args, says) in [
        (vec!["--steps", "50,20,100"], "--steps must rise"),
        (vec!["--steps", "10,50"], "end at 100"),
        (vec!["--step-after", "soon"], "--step-after"),
        (vec!["--metric", "cost"], "unknown metric"),
        (vec!["--non-inferior", "2"], "--non-inferior"),
    ] {
        let mut all = vec!["canary", "start", "greet", "--candidate", "2"];
        all.extend(args.iter());
        let stderr = env.fails(&all, 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
    }
    let same = env.fails(&["canary", "start", "greet", "--candidate", "1"], 2);
    assert!(same.contains("same version"), "{same}");
    let none = env.fails(&["canary", "status", "greet"], 2);
    assert!(none.contains("no rollout"), "{none}");

    start(&env, "0.02", "30m");
    // A rollback of the tag ends its rollout: the candidate is withdrawn.
    env.ok(&[
        "tag",
        "set",
        "greet",
        "production",
        "--version",
        "2",
        "--force",
    ]);
    env.ok(&["rollback", "greet", "production", "--force", "-m", "back"]);
    let ended = status(&env);
    assert_eq!(ended["rollout"]["status"], "stopped", "{ended}");
    let production = server.get("/v1/prompts/greet/tags/production");
    assert_eq!(production.json()["data"]["id"], v1.as_str());
    // A stopped rollout frees the tag for the next one, which `stop` ends by hand.
    start(&env, "0.02", "30m");
    let stopped = env.ok(&["canary", "stop", "greet", "-m", "not today"]);
    assert!(stopped.contains("stopped"), "{stopped}");
    assert_eq!(status(&env)["rollout"]["status"], "stopped");
}

#[test]
fn two_servers_on_one_store_decide_once_and_a_restart_resumes() {
    let env = Env::new();
    let first = Server::start(&env, &[]);
    let (_, v2) = greet(&first, &[]);
    let second = Server::start(&env, &[]);
    start(&env, "0.05", "300requests");
    // Both servers serve the rollout, and agree on each unit's arm.
    let a = traffic(&first, 0..400, "none", 1, 0);
    let b = traffic(&second, 0..400, "none", 1, 1_000);
    assert_eq!(a, b, "two servers gave a unit different arms");
    wait_for(&env, "stepped to 100%", |s| s["share"] == 100);
    // A server restart in the middle of the rollout: the state is in the store.
    drop(first);
    let third = Server::start(&env, &[]);
    let later = traffic(&third, 0..400, "none", 1, 2_000);
    assert!(later.values().all(|id| *id == v2));
    wait_for(&env, "completed", |s| s["rollout"]["status"] == "completed");
    // Each decision was recorded once: one promotion, one start and one end of the canary tag.
    let history = env.json(&["tag", "history", "greet", "--json"]);
    let count = |tag: &str, action: &str| {
        history
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["tag"] == tag && e["action"] == action)
            .count()
    };
    assert_eq!(count("production", "promote"), 1, "{history}");
    assert_eq!(count("canary", "set"), 1);
    assert_eq!(count("canary", "delete"), 1);
    drop(second);
    drop(third);
}

#[test]
fn runner_toml_gives_the_plan_and_flags_override_it() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    greet(&server, &[]);
    env.write(
        "runner.toml",
        "[canary]\nsteps = [20, 100]\nstep_after = \"2h\"\nunit_header = \"X-User\"\n\
         metrics = [\"error_rate\", \"score:helpful\"]\nnon_inferior = 0.03\n",
    );
    env.ok(&["canary", "start", "greet", "--candidate", "2"]);
    let plan = status(&env)["rollout"].clone();
    assert_eq!(plan["steps"], serde_json::json!([20, 100]));
    assert_eq!(plan["step_after"], serde_json::json!({"millis": 7_200_000}));
    assert_eq!(plan["unit_header"], "X-User");
    assert_eq!(plan["metrics"][0]["margin"], 0.03);
    assert_eq!(plan["metrics"][1]["name"], "helpful");
    env.ok(&["canary", "stop", "greet"]);
    env.ok(&[
        "canary",
        "start",
        "greet",
        "--candidate",
        "2",
        "--steps",
        "50,100",
    ]);
    assert_eq!(
        status(&env)["rollout"]["steps"],
        serde_json::json!([50, 100])
    );
    env.ok(&["canary", "stop", "greet"]);
    env.write("runner.toml", "[canary]\nstep = [20, 100]\n");
    let stderr = env.fails(&["canary", "start", "greet", "--candidate", "2"], 2);
    assert!(stderr.contains("step"), "{stderr}");
}

#[test]
fn rollouts_over_http_start_steer_and_refuse_the_wrong_token() {
    let env = Env::new();
    env.write(
        "tokens.txt",
        &format!("ci:{WRITER}\ndeploy:release:{DEPLOYER}\ningest:app:{INGESTER}\n"),
    );
    env.write("readers.txt", &format!("{READER}\n"));
    let server = Server::start(
        &env,
        &[
            "--token-file",
            &env.path("tokens.txt").display().to_string(),
            "--read-token-file",
            &env.path("readers.txt").display().to_string(),
        ],
    );
    let (writer, deployer) = (bearer(WRITER), bearer(DEPLOYER));
    let (reader, ingester) = (bearer(READER), bearer(INGESTER));
    let as_writer = [("authorization", writer.as_str())];
    let (v1, v2) = greet(&server, &as_writer);
    let plan = json!({
        "tag": "production",
        "candidate": "2",
        "steps": [50, 100],
        "step_after": "300 requests",
        "unit_header": "X-Runner-Unit",
        "metrics": ["error_rate"],
        "non_inferior": 0.05,
        "message": "friendlier greeting"
    });
    let start = |auth: &str, body: &Value| {
        server.call(
            "POST",
            "/v1/prompts/greet/rollouts",
            &[("authorization", auth)],
            Some(body),
        )
    };

    // production is protected: a write token may not start its rollout, a read or ingest token
    // may not write at all, and a bad plan is 422 naming what is wrong; nothing is written.
    let before = crate::dump(&env.db);
    let refused = start(&writer, &plan);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(
        refused.text.contains("needs a deploy token"),
        "{}",
        refused.text
    );
    for token in [&reader, &ingester] {
        assert_eq!(start(token, &plan).status, 403);
    }
    for (field, value, says) in [
        ("steps", json!([50, 20, 100]), "--steps must rise"),
        ("step_after", json!("soon"), "--step-after"),
        ("metrics", json!(["cost"]), "unknown metric"),
        ("non_inferior", json!(2), "--non-inferior"),
        ("candidate", json!("1"), "same version"),
        ("candidate", json!("9"), "9"),
        ("unknown", json!(1), "unknown field"),
    ] {
        let mut bad = plan.clone();
        bad[field] = value;
        let reply = start(&deployer, &bad);
        assert!(
            reply.status == 422 || reply.status == 404,
            "{field}: {} {}",
            reply.status,
            reply.text
        );
        assert!(reply.text.contains(says), "{field}: {}", reply.text);
    }
    assert_eq!(
        crate::dump(&env.db),
        before,
        "a refused start wrote something"
    );

    // A deploy token starts it: 201 with the status, and lookups follow at once.
    let started = start(&deployer, &plan);
    assert_eq!(started.status, 201, "{}", started.text);
    let view = started.json()["data"].clone();
    assert_eq!(view["rollout"]["status"], "running");
    assert_eq!(view["rollout"]["actor"], "api:release");
    assert_eq!(view["share"], 50);
    let id = view["rollout"]["id"].as_str().unwrap().to_string();
    let lookup = server.call(
        "GET",
        "/v1/prompts/greet/tags/production",
        &[("authorization", &reader), ("x-runner-unit", "user-1")],
        None,
    );
    assert!(
        lookup
            .header("x-runner-rollout")
            .starts_with(&format!("{id}; arm=")),
        "{}",
        lookup.header("x-runner-rollout")
    );
    // One rollout per tag at a time: 409.
    let twice = start(&deployer, &plan);
    assert_eq!(twice.status, 409, "{}", twice.text);
    // The canary tag is the rollout's to set and withdraw: a protected one is refused, and
    // force is not a way around a deploy token here.
    let mut protected_canary = plan.clone();
    protected_canary["tag"] = json!("staging");
    protected_canary["canary_tag"] = json!("production");
    let refused = start(&deployer, &protected_canary);
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(refused.text.contains("is protected"), "{}", refused.text);
    let forced = server.call(
        "POST",
        "/v1/prompts/greet/rollouts?force=true",
        &[("authorization", &writer)],
        Some(&plan),
    );
    assert_eq!(forced.status, 403, "{}", forced.text);

    // Any token reads the status and the list; the CLI shows the same rollout.
    let read = |path: &str| {
        let reply = server.call("GET", path, &[("authorization", &ingester)], None);
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        reply.json()["data"].clone()
    };
    let shown = read("/v1/prompts/greet/rollouts/production");
    assert_eq!(shown["rollout"]["id"], id.as_str());
    assert_eq!(status(&env)["rollout"]["id"], id.as_str());
    let listed = read("/v1/prompts/greet/rollouts?running=true");
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let missing = server.call(
        "GET",
        "/v1/prompts/greet/rollouts/staging",
        &[("authorization", &reader)],
        None,
    );
    assert_eq!(missing.status, 404, "{}", missing.text);

    // A write token steps it up by hand, but completing it would move production: 403.
    let advance = |auth: &str| {
        server.call(
            "POST",
            "/v1/prompts/greet/rollouts/production/advance",
            &[("authorization", auth)],
            Some(&json!({})),
        )
    };
    // Read and ingest tokens may neither advance nor stop it.
    for token in [&reader, &ingester] {
        assert_eq!(advance(token).status, 403);
        let stop = server.call(
            "POST",
            "/v1/prompts/greet/rollouts/production/stop",
            &[("authorization", token)],
            Some(&json!({})),
        );
        assert_eq!(stop.status, 403);
    }
    let stepped = advance(&writer);
    assert_eq!(stepped.status, 200, "{}", stepped.text);
    assert_eq!(stepped.json()["data"]["look"]["share"], 50);
    assert_eq!(read("/v1/prompts/greet/rollouts/production")["share"], 100);
    let refused = advance(&writer);
    assert_eq!(refused.status, 403, "{}", refused.text);
    assert!(refused.text.contains("deploy token"), "{}", refused.text);

    // A write token stops it with a message: production stays on v1, v2 is served no more.
    let stopped = server.call(
        "POST",
        "/v1/prompts/greet/rollouts/production/stop",
        &as_writer,
        Some(&json!({"message": "not today"})),
    );
    assert_eq!(stopped.status, 200, "{}", stopped.text);
    let ended = read("/v1/prompts/greet/rollouts/production");
    assert_eq!(ended["rollout"]["status"], "stopped");
    let production = server.call(
        "GET",
        "/v1/prompts/greet/tags/production",
        &[("authorization", &reader), ("x-runner-unit", "user-1")],
        None,
    );
    assert_eq!(production.json()["data"]["id"], v1.as_str());
    assert!(production.headers.get("x-runner-rollout").is_none());
    let again = server.call(
        "POST",
        "/v1/prompts/greet/rollouts/production/stop",
        &as_writer,
        Some(&json!({})),
    );
    assert_eq!(again.status, 404, "{}", again.text);

    // A deploy token's rollout may complete by hand; the tag moves, recorded as a promotion.
    assert_eq!(start(&deployer, &plan).status, 201);
    assert_eq!(advance(&deployer).status, 200);
    let done = advance(&deployer);
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json()["data"]["look"]["decision"], "complete");
    let production = server.call(
        "GET",
        "/v1/prompts/greet/tags/production",
        &[("authorization", &reader)],
        None,
    );
    assert_eq!(production.json()["data"]["id"], v2.as_str());
}

#[test]
fn the_library_serves_each_unit_the_arm_the_server_gives_it() {
    let env = Env::new();
    let server = Server::start(&env, &[]);
    let (v1, v2) = greet(&server, &[]);
    let store = runner::store::open(&env.db).unwrap();
    let lookup = |unit: Option<&str>| {
        runner::workflow::canary::lookup(&*store, "greet", "production", unit).unwrap()
    };
    // No rollout: the tag's version, no arm.
    let plain = lookup(Some("user-1"));
    assert_eq!(plain.version.id, v1);
    assert!(plain.rollout.is_none());

    start(&env, "0.05", "30m");
    let id = status(&env)["rollout"]["id"].as_str().unwrap().to_string();
    let mut arms = HashMap::new();
    for unit in 0..200 {
        let unit = format!("user-{unit}");
        let served = lookup(Some(&unit));
        let (rollout, arm) = served.rollout.clone().expect("under the rollout");
        assert_eq!(rollout, id);
        let reply = server.call(
            "GET",
            "/v1/prompts/greet/tags/production",
            &[("x-runner-unit", &unit)],
            None,
        );
        assert_eq!(
            reply.json()["data"]["id"],
            served.version.id.as_str(),
            "{unit}"
        );
        assert_eq!(
            reply.header("x-runner-rollout"),
            format!("{id}; arm={}", arm.as_str())
        );
        assert_eq!(
            lookup(Some(&unit)).version.id,
            served.version.id,
            "{unit} moved"
        );
        *arms.entry(served.version.id).or_insert(0) += 1;
    }
    // At 50 %, both arms among 200 units.
    assert!(arms.get(&v1).is_some_and(|n| *n > 50), "{arms:?}");
    assert!(arms.get(&v2).is_some_and(|n| *n > 50), "{arms:?}");

    // Once it stops, the library follows at once: the tag's version again.
    env.ok(&["canary", "stop", "greet"]);
    let after = lookup(Some("user-1"));
    assert_eq!(after.version.id, v1);
    assert!(after.rollout.is_none());

    // A prompt archived while its rollout runs is not served by either arm.
    start(&env, "0.05", "30m");
    let served = server.call(
        "GET",
        "/v1/prompts/greet/tags/production",
        &[("x-runner-unit", "user-1")],
        None,
    );
    assert_eq!(served.status, 200);
    let archived = server.call("DELETE", "/v1/prompts/greet?force=true", &[], None);
    assert!(archived.status < 300, "{}", archived.text);
    for unit in ["user-1", "user-2", "user-3"] {
        let gone = server.call(
            "GET",
            "/v1/prompts/greet/tags/production",
            &[("x-runner-unit", unit)],
            None,
        );
        assert_eq!(gone.status, 404, "{unit}: {}", gone.text);
    }
}
