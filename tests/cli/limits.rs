//! Hosted APIs at their limits: `runner mock-server --rpm/--tpm` answers like one, and
//! `runner experiment` paces itself to the limits it is given or reads from the answers.

use crate::{Env, Mock, echo_dataset, echo_prompt};
use serde_json::Value;

mod reqwest {
    /// A plain HTTP/1.1 request over loopback, without a client library's runtime: the body of
    /// a GET, the whole response (status line and headers too) otherwise.
    pub fn get_with(url: &str, method: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        write!(
            stream,
            "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (_, body) = response.split_once("\r\n\r\n").unwrap_or(("", ""));
        if method == "GET" {
            body.to_string()
        } else {
            response
        }
    }
}

#[test]
fn the_mock_enforces_its_limits_like_a_hosted_api() {
    let env = Env::new();
    let mock = Mock::start(&env, &["--rpm", "60"]);
    let url = mock.url.clone();
    let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
    let first = reqwest::get_with(&format!("{url}/chat/completions"), "POST", chat);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let lower = first.to_ascii_lowercase();
    assert!(lower.contains("x-ratelimit-limit-requests: 60"), "{first}");
    assert!(
        lower.contains("x-ratelimit-remaining-requests: 0"),
        "{first}"
    );
    assert!(lower.contains("x-ratelimit-reset-requests: "), "{first}");
    // A minute's 60 allow one a second: the next at once is refused with a wait.
    let second = reqwest::get_with(&format!("{url}/chat/completions"), "POST", chat);
    let lower = second.to_ascii_lowercase();
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
    assert!(lower.contains("retry-after: 1"), "{second}");
    assert!(lower.contains("rate_limit_exceeded"), "{second}");
    assert_eq!(mock.stats()["rate_limited"], 1);
    // Limits must be positive numbers.
    let err = env.fails(&["mock-server", "--rpm", "0"], 2);
    assert!(err.contains("--rpm must be a positive number"), "{err}");
}

fn run(env: &Env, url: &str, data: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        data,
        "--base-url",
        url,
        "--no-cache",
        "--json",
    ];
    args.extend_from_slice(extra);
    env.json(&args)
}

#[test]
fn a_run_learns_the_limit_from_the_headers_and_paces_itself() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: Vec<String> = (0..40).map(|i| format!("q{i}")).collect();
    let data = echo_dataset(&env, "rows.csv", &queries);
    // 600 a minute: 10 a second, a burst of 10.
    let mock = Mock::start(&env, &["--rpm", "600"]);
    let url = mock.url.clone();

    // No limit given: the first burst meets 429s, then the headers set the pace.
    let out = run(&env, &url, &data, &["--concurrency", "16"]);
    assert_eq!(out["summary"]["ok"], 40, "{out}");
    let run_stats = &out["run"];
    let limited = run_stats["rate_limited"].as_u64().unwrap();
    assert!(
        limited <= 16,
        "only the first burst is refused: {run_stats}"
    );
    // Held back by what the headers said, whether or not the first burst met 429s: on a
    // loaded machine the first requests may not all land within the endpoint's first second.
    assert!(run_stats["throttled_secs"].as_f64().unwrap() > 0.0);
    if limited > 0 {
        // A 429 halves the requests in flight (AIMD).
        assert!(
            run_stats["concurrency"].as_u64().unwrap() < 16,
            "{run_stats}"
        );
    }
    assert_eq!(run_stats["max_concurrency"], 16);
    assert_eq!(
        mock.stats()["rate_limited"].as_u64().unwrap(),
        limited,
        "runner counts every 429 the endpoint sent"
    );

    // Given the limit up front, no request is refused at all (a fresh endpoint, whose
    // bucket the first run did not drain).
    let mock = Mock::start(&env, &["--rpm", "600"]);
    let url = mock.url.clone();
    let before = mock.stats()["rate_limited"].as_u64().unwrap();
    let out = run(
        &env,
        &url,
        &data,
        &["--concurrency", "16", "--max-rpm", "600"],
    );
    assert_eq!(out["summary"]["ok"], 40, "{out}");
    assert_eq!(out["run"]["rate_limited"], 0, "{}", out["run"]);
    assert_eq!(mock.stats()["rate_limited"].as_u64().unwrap(), before);
    // The text summary says what the limits did.
    let text = env.ok(&[
        "experiment",
        "--prompt",
        "echo",
        "--dataset",
        &data,
        "--base-url",
        &url,
        "--no-cache",
        "--concurrency",
        "16",
        "--limit",
        "12",
    ]);
    assert!(text.contains("rate limits"), "{text}");
    assert!(text.contains("× 429, held back"), "{text}");
}

#[test]
fn token_limits_pace_by_estimated_cost_and_bad_limits_are_refused() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: Vec<String> = (0..12).map(|i| format!("q{i}")).collect();
    let data = echo_dataset(&env, "rows.csv", &queries);
    // Each request: 1 word of prompt + max_tokens 20 = 21 tokens; 2,520 a minute allows two
    // a second.
    env.ok(&["prompt", "update", "echo", "--param", "max_tokens=20"]);
    let mock = Mock::start(&env, &["--tpm", "2520"]);
    let url = mock.url.clone();
    let out = run(
        &env,
        &url,
        &data,
        &["--concurrency", "8", "--max-tpm", "2520"],
    );
    assert_eq!(out["summary"]["ok"], 12, "{out}");
    assert_eq!(out["run"]["rate_limited"], 0, "{}", out["run"]);
    assert!(out["run"]["throttled_secs"].as_f64().unwrap() > 0.0);
    for bad in ["0", "-5", "nan"] {
        let err = env.fails(
            &[
                "experiment",
                "--prompt",
                "echo",
                "--dataset",
                &data,
                "--base-url",
                &url,
                &format!("--max-rpm={bad}"),
            ],
            2,
        );
        assert!(err.contains("--max-rpm must be a positive number"), "{err}");
    }
}

#[test]
fn the_endpoints_advertised_burst_is_used_from_its_first_answer_without_a_429() {
    let env = Env::new();
    echo_prompt(&env);
    let queries: Vec<String> = (0..60).map(|i| format!("q{i}")).collect();
    let data = echo_dataset(&env, "rows.csv", &queries);
    for extra in [&[][..], &["--max-rpm", "600"][..]] {
        // 600 a minute with a 10-second burst: 100 requests at once, then 10 a second. The
        // first answer's headers say so (99 left, full again in 0.1 s).
        let mock = Mock::start(
            &env,
            &["--rpm", "600", "--burst-secs", "10", "--latency-ms", "200"],
        );
        let mut args = vec!["--concurrency", "48"];
        args.extend_from_slice(extra);
        let out = run(&env, &mock.url, &data, &args);
        assert_eq!(out["summary"]["ok"], 60, "{out}");
        let stats = mock.stats();
        assert_eq!(stats["rate_limited"], 0, "{extra:?}: {stats}");
        // The burst was used: far more than a quarter second's worth (the client's own
        // burst) was in flight at once. Paced without it, at most a few would be.
        assert!(
            stats["max_in_flight"].as_u64().unwrap() >= 24,
            "{extra:?}: {stats}"
        );
    }
    let refused = env.fails(&["mock-server", "--rpm", "600", "--burst-secs", "0"], 2);
    assert!(refused.contains("--burst-secs must be"), "{refused}");
}
