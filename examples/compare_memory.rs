//! Builds a store holding two experiments of N rows each (the candidate wrong on every third
//! row), for measuring what `runner compare` holds in memory on large experiments:
//!
//!     cargo run --release --example compare_memory -- STORE ROWS
//!     /usr/bin/time -v runner --db STORE compare BASELINE_ID CANDIDATE_ID
//!
//! Prints the two experiment ids. `benches/compare_memory.sh` does both and reports peak RSS.

use runner::model::{
    DatasetRef, JsonObject, NewExperiment, NewVersion, ResultStatus, RunResult, RunSettings, Score,
    Template, TemplateFormat,
};
use runner::store::{ExperimentStore, PromptStore, ResultSink, SqliteStore, TagChange};
use std::path::Path;

const BATCH: usize = 10_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, rows] = args.as_slice() else {
        return Err("usage: compare_memory STORE ROWS".into());
    };
    let rows: usize = rows.parse()?;
    let store = SqliteStore::open(Path::new(path))?;
    let version = store.create_prompt(
        "support",
        NewVersion {
            format: TemplateFormat::Mustache,
            template: Template::Str("Answer {{query}}".into()),
            model: Some("mock".into()),
            provider: None,
            params: JsonObject::new(),
            metadata: JsonObject::new(),
            description: None,
            message: None,
            author: "bench".into(),
        },
        &[],
        &TagChange::default(),
    )?;
    let mut ids = Vec::new();
    for (name, wrong_every) in [("baseline", usize::MAX), ("candidate", 3)] {
        let experiment = store.create_experiment(&NewExperiment {
            name: Some(name.into()),
            prompt: Some("support".into()),
            version_id: Some(version.id.clone()),
            tag: None,
            dataset: DatasetRef {
                path: "rows.csv".into(),
                hash: "0".repeat(64),
                rows: rows as i64,
                columns: vec!["id".into(), "query".into(), "expected".into()],
            },
            model: "mock".into(),
            base_url: "http://127.0.0.1:9/v1".into(),
            evaluators: vec!["icontains".into()],
            settings: RunSettings {
                concurrency: 64,
                repetitions: 1,
                limit: None,
                timeout_secs: 60.0,
                max_retries: 3,
                vars: JsonObject::new(),
                columns: Vec::new(),
                expected_column: Some("expected".into()),
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
            planned: rows as i64,
            author: "bench".into(),
            fingerprint: name.into(),
        })?;
        let mut batch = Vec::with_capacity(BATCH);
        for row in 0..rows {
            let pass = (row + 1) % wrong_every != 0;
            batch.push(result(row, pass));
            if batch.len() == BATCH {
                store.write_results(&experiment.id, &batch)?;
                batch.clear();
            }
        }
        store.write_results(&experiment.id, &batch)?;
        store.finish_experiment(
            &experiment.id,
            runner::model::ExperimentStatus::Completed,
            0,
        )?;
        ids.push(experiment.id);
    }
    println!("{} {}", ids[0], ids[1]);
    Ok(())
}

fn result(row: usize, pass: bool) -> RunResult {
    let mut vars = JsonObject::new();
    vars.insert("id".into(), format!("row-{row:07}").into());
    vars.insert(
        "query".into(),
        format!("Where is order {row}? It was due last week.").into(),
    );
    vars.insert("expected".into(), "shipped".into());
    let output = if pass {
        "Your order has shipped and arrives tomorrow."
    } else {
        "I cannot help with that."
    };
    RunResult {
        row_index: row as i64,
        row_id: format!("row-{row:07}"),
        repetition: 0,
        vars,
        expected: Some("shipped".into()),
        messages: Vec::new(),
        output: Some(output.into()),
        finish_reason: Some("stop".into()),
        status: ResultStatus::Ok,
        error_kind: None,
        error_message: None,
        http_status: Some(200),
        attempts: 1,
        latency_ms: 20.0 + (row % 100) as f64,
        prompt_tokens: Some(12),
        completion_tokens: Some(9),
        cached: false,
        started_at: "2026-01-01T00:00:00.000Z".into(),
        finished_at: "2026-01-01T00:00:00.020Z".into(),
        scores: vec![Score {
            evaluator: "icontains".into(),
            score: if pass { 1.0 } else { 0.0 },
            pass,
            reason: "bench".into(),
            error: false,
        }],
        cache_key: None,
        extra: None,
    }
}
