//! Criterion micro-benchmarks for the experiment runner's per-row hot paths: template render,
//! every pure evaluator, and the result writer's batched insert.
//!
//! `cargo bench --bench hot_paths` (add `-- --quick` or `-- --measurement-time 2` for a short run).
//! The write benchmark reports throughput in results/s; per-result time is its time ÷ 512.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use runner::eval::{EvalInput, Evaluator};
use runner::model::NewExperiment;
use runner::model::{
    DatasetRef, JsonObject, Message, NewVersion, ResultStatus, RunResult, RunSettings, Score,
    Template, TemplateFormat,
};
use runner::store::{ExperimentStore, PromptStore, ResultSink, SqliteStore, TagChange};
use runner::template::CompiledTemplate;
use serde_json::{Value, json};
use std::hint::black_box;

/// Rows per `write_results` call in the write benchmark (the writer's batch size order).
const BATCH: usize = 512;

const MUSTACHE: &str = "You are a customer support agent for {{company_name}}.\n\
Be professional, friendly, and concise. The customer is on the {{ tier }} plan.\n\
Customer query: {{query}}\nResponse:";

const FSTRING: &str = "You are a customer support agent for {company_name}.\n\
Be professional, friendly, and concise. The customer is on the {tier} plan.\n\
Customer query: {query}\nResponse:";

/// A typical answer: a few sentences that do contain the expected value.
const OUTPUT: &str = "Thanks for reaching out to Acme support! I checked ORDER 40213 for you: it \
left our warehouse this morning and should arrive within two business days. You will get a \
tracking e-mail shortly. Is there anything else I can help you with today?";

const EXPECTED: &str = "order 40213";

const JSON_OUTPUT: &str = "```json\n{\"answer\": \"Your order 40213 ships tomorrow.\", \
\"confidence\": 0.92, \"tags\": [\"shipping\", \"order\"], \"escalate\": false}\n```";

fn vars() -> JsonObject {
    let value = json!({
        "id": "row-40213",
        "company_name": "Acme Corporation",
        "tier": "premium",
        "query": "Where is my order 40213? I ordered it last Tuesday and it still says processing.",
        "expected": EXPECTED,
    });
    match value {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

fn render(c: &mut Criterion) {
    let vars = vars();
    let mut group = c.benchmark_group("render");
    let cases = [
        (
            "mustache_3_vars",
            TemplateFormat::Mustache,
            Template::Str(MUSTACHE.to_string()),
        ),
        (
            "fstring_3_vars",
            TemplateFormat::FString,
            Template::Str(FSTRING.to_string()),
        ),
        (
            "mustache_chat_3_messages",
            TemplateFormat::Mustache,
            Template::Chat(vec![
                message(
                    "system",
                    "You are a customer support agent for {{company_name}}. Be concise.",
                ),
                message("user", "Plan: {{tier}}. Question: {{query}}"),
                message("assistant", "Let me look that up for {{company_name}}."),
            ]),
        ),
    ];
    for (name, format, template) in cases {
        let compiled = CompiledTemplate::compile(format, &template).expect("template compiles");
        group.bench_function(name, |b| {
            b.iter(|| compiled.render(black_box(&vars)).expect("renders"))
        });
    }
    group.finish();
}

fn message(role: &str, content: &str) -> Message {
    Message::text(role, content)
}

fn evaluators(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let schema = dir.path().join("answer.schema.json");
    std::fs::write(
        &schema,
        json!({
            "type": "object",
            "required": ["answer", "confidence"],
            "properties": {
                "answer": {"type": "string", "minLength": 1},
                "confidence": {"type": "number", "minimum": 0, "maximum": 1},
                "tags": {"type": "array", "items": {"type": "string"}},
                "escalate": {"type": "boolean"}
            }
        })
        .to_string(),
    )
    .expect("write schema");

    let vars = vars();
    let specs = [
        ("exact", "exact".to_string(), OUTPUT),
        ("contains", "contains".to_string(), OUTPUT),
        ("icontains", "icontains".to_string(), OUTPUT),
        ("regex", r"regex:(?i)order \d{5}".to_string(), OUTPUT),
        ("json", "json".to_string(), JSON_OUTPUT),
        (
            "json_schema",
            format!("json-schema:{}", schema.display()),
            JSON_OUTPUT,
        ),
        ("similarity", "similarity:0.8".to_string(), OUTPUT),
        ("max_latency", "max-latency:500".to_string(), OUTPUT),
    ];
    let mut group = c.benchmark_group("eval");
    for (name, spec, output) in specs {
        let evaluator = Evaluator::prepare(&spec).expect("evaluator prepares");
        let input = EvalInput {
            vars: &vars,
            output,
            expected: Some(EXPECTED),
            latency_ms: 42.0,
            tool_calls: runner::eval::NO_CALLS,
            tools: None,
        };
        let score = evaluator.score(&input);
        assert!(!score.error, "{name} errored: {}", score.reason);
        group.bench_function(name, |b| b.iter(|| evaluator.score(black_box(&input))));
    }
    group.finish();
}

fn write_results(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("bench.db")).expect("store opens");
    let change = TagChange {
        actor: "bench".to_string(),
        message: None,
        ..TagChange::default()
    };
    let version = store
        .create_prompt(
            "support",
            NewVersion {
                format: TemplateFormat::Mustache,
                template: Template::Str(MUSTACHE.to_string()),
                model: Some("mock".to_string()),
                provider: None,
                params: JsonObject::new(),
                metadata: JsonObject::new(),
                description: None,
                message: None,
                author: "bench".to_string(),
            },
            &[],
            &change,
        )
        .expect("prompt created");
    let experiment = store
        .create_experiment(&NewExperiment {
            name: Some("hot_paths".to_string()),
            fingerprint: "hot_paths".to_string(),
            prompt: Some("support".to_string()),
            version_id: Some(version.id.clone()),
            tag: None,
            dataset: DatasetRef {
                path: "bench.csv".to_string(),
                hash: "0".repeat(64),
                rows: 0,
                columns: vec!["id".into(), "query".into(), "expected".into()],
            },
            model: "mock".to_string(),
            base_url: "http://127.0.0.1:9/v1".to_string(),
            evaluators: vec!["icontains".to_string()],
            settings: RunSettings {
                concurrency: 64,
                repetitions: 1,
                limit: None,
                timeout_secs: 60.0,
                max_retries: 3,
                vars: JsonObject::new(),
                columns: Vec::new(),
                expected_column: Some("expected".to_string()),
                no_cache: true,
                fresh: false,
                cache_ttl_secs: None,
                max_rpm: None,
                max_tpm: None,
                max_cost: None,
                judge_model: None,
                detached: None,
                shard: None,
                target: None,
                target_env: Vec::new(),
                mock: false,
            },
            planned: 0,
            author: "bench".to_string(),
        })
        .expect("experiment created");

    let compiled = CompiledTemplate::compile(
        TemplateFormat::Mustache,
        &Template::Str(MUSTACHE.to_string()),
    )
    .expect("template compiles");
    let vars = vars();
    let messages = compiled.render(&vars).expect("renders");
    let template_result = RunResult {
        row_index: 0,
        row_id: String::new(),
        repetition: 0,
        vars,
        expected: Some(EXPECTED.to_string()),
        messages,
        output: Some(OUTPUT.to_string()),
        finish_reason: Some("stop".to_string()),
        status: ResultStatus::Ok,
        error_kind: None,
        error_message: None,
        http_status: Some(200),
        attempts: 1,
        latency_ms: 51.3,
        prompt_tokens: Some(42),
        completion_tokens: Some(44),
        cached: false,
        started_at: "2025-01-01T00:00:00.000Z".to_string(),
        finished_at: "2025-01-01T00:00:00.051Z".to_string(),
        scores: vec![Score {
            evaluator: "icontains".to_string(),
            score: 1.0,
            pass: true,
            reason: "output contains expected (case-insensitive)".to_string(),
            error: false,
        }],
        cache_key: None,
        extra: None,
    };

    // Fresh row indices every iteration, so each batch is real inserts rather than the
    // "already ok, keep it" conflict path.
    let mut next_row: i64 = 0;
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("write_results_batch_512", |b| {
        b.iter_batched(
            || {
                (0..BATCH)
                    .map(|_| {
                        let mut r = template_result.clone();
                        r.row_index = next_row;
                        r.row_id = next_row.to_string();
                        next_row += 1;
                        r
                    })
                    .collect::<Vec<_>>()
            },
            |batch| {
                store
                    .write_results(&experiment.id, &batch)
                    .expect("batch written")
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(hot_paths, render, evaluators, write_results);
criterion_main!(hot_paths);
