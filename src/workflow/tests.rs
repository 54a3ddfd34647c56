//! The workflows driven in-process, as a library user would: a store in memory (through the
//! store traits only), the runner's own mock endpoint on a random loopback port.

use super::Context;
use super::experiment::{launch, prepare, resume};
use super::promotion::{self, EvidenceFrom, PromotionRequest};
use super::settings::{ExperimentSettings, ResumeSettings};
use crate::cli::RunOptions;
use crate::config::Config;
use crate::engine::Reporter;
use crate::engine::RunEvent;
use crate::gate::Policy;
use crate::mock::{MockConfig, Rule};
use crate::model::{
    ExperimentStatus, JsonObject, NewVersion, TagAction, Template, TemplateFormat, VersionRef,
};
use crate::store::{self, TagChange};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A mock endpoint on its own runtime thread; dropped, it stops.
struct Mock {
    base_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mock {
    fn start(rules: Vec<Rule>) -> Mock {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let config = MockConfig {
                    chunk: std::time::Duration::ZERO,
                    latency: Duration::ZERO,
                    rules,
                    ..Default::default()
                };
                crate::mock::serve(listener, config, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
            });
        });
        let address = ready_rx.recv().unwrap();
        Mock {
            base_url: format!("http://{address}/v1"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Remembers what a run reported (progress ticks apart: how many depends on the clock).
#[derive(Default)]
struct Recorder {
    events: RefCell<Vec<String>>,
    last_progress: RefCell<Option<crate::engine::Tally>>,
}

impl Reporter for Recorder {
    fn report(&self, event: RunEvent<'_>) {
        let line = match event {
            RunEvent::Progress(tally) => {
                *self.last_progress.borrow_mut() = Some(tally);
                return;
            }
            RunEvent::Interrupted { .. } => "interrupted".into(),
            RunEvent::Started {
                planned, already, ..
            } => format!("started {planned} {already}"),
            RunEvent::Stopped => "stopped".into(),
            RunEvent::Notice(text) => format!("notice {text}"),
            RunEvent::Ended { summary, .. } => format!("ended {}", summary.results),
        };
        self.events.borrow_mut().push(line);
    }
}

fn version(text: &str) -> NewVersion {
    NewVersion {
        format: TemplateFormat::Mustache,
        template: Template::Str(text.into()),
        model: Some("mock-model".into()),
        provider: None,
        params: JsonObject::new(),
        metadata: JsonObject::new(),
        description: None,
        message: None,
        author: "tests".into(),
    }
}

/// Ten rows; the expected answer is `good` on every row.
fn dataset(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("rows.csv");
    let mut text = String::from("id,query,expected\n");
    for i in 0..10 {
        text.push_str(&format!("r{i},question {i},good\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A run of prompt `p` over `data` against the mock, four calls at a time.
fn settings(data: &Path, mock: &Mock) -> ExperimentSettings {
    let options = RunOptions {
        base_url: Some(mock.base_url.clone()),
        concurrency: Some(4),
        ..RunOptions::default()
    };
    ExperimentSettings::new(&Config::default(), "p", Some(data), &options).unwrap()
}

/// A context over a fresh in-memory store holding prompt `p`: v1 answers well, v2 badly
/// (the mock replies by the version's words).
fn context() -> Context {
    let store = store::open_in_memory().unwrap();
    store
        .create_prompt(
            "p",
            version("careful {{query}}"),
            &["production".into()],
            &TagChange::default(),
        )
        .unwrap();
    store::append_version(
        &*store,
        "p",
        |_| Ok::<_, store::StoreError>(version("sloppy {{query}}")),
        &["staging".into()],
        &TagChange::default(),
    )
    .unwrap();
    Context::with_store(store, "tests", Config::default())
}

fn rules() -> Vec<Rule> {
    let rule = Rule::new;
    vec![
        rule("careful", "a good answer"),
        rule("sloppy", "a poor answer"),
    ]
}

#[test]
fn an_experiment_runs_to_its_end_and_is_stored_with_its_summary() {
    let mock = Mock::start(rules());
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(&dir);
    let ctx = context();
    let first = ExperimentSettings {
        name: Some("first".into()),
        ..settings(&data, &mock)
    };
    let prepared = prepare(&ctx, &first, &VersionRef::Tag("production".into())).unwrap();
    let recorder = Recorder::default();
    let finished = launch(prepared, &ctx, &recorder, std::future::pending()).unwrap();
    assert_eq!(finished.status, ExperimentStatus::Completed);
    assert_eq!((finished.summary.results, finished.summary.ok), (10, 10));
    // `expected` implies icontains: every answer contains "good".
    assert_eq!(finished.summary.evaluators[0].passed, 10);
    assert_eq!(finished.stats.processed, 10);
    assert_eq!(*recorder.events.borrow(), ["started 10 0", "stopped"]);
    let last = recorder
        .last_progress
        .borrow()
        .expect("a final progress event");
    assert_eq!((last.done, last.errors, last.cached), (10, 0, 0));

    // The store holds it, and a resume has nothing left to send.
    let store = ctx.store().unwrap();
    assert_eq!(store.experiments(Some("p")).unwrap().len(), 1);
    let resumed = Recorder::default();
    let again = resume(
        &ctx,
        &ResumeSettings {
            id: finished.experiment.id.clone(),
            max_cost: None,
        },
        &resumed,
        std::future::pending(),
    )
    .unwrap();
    assert_eq!(again.stats.processed, 0);
    assert_eq!(resumed.events.borrow()[0], "started 10 10");
    assert_eq!(again.summary.results, 10);
}

#[test]
fn bad_input_is_refused_before_anything_is_written() {
    let mock = Mock::start(rules());
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("rows.csv");
    std::fs::write(&data, "id,other\n1,x\n").unwrap();
    let ctx = context();
    let missing = prepare(&ctx, &settings(&data, &mock), &VersionRef::Latest)
        .err()
        .expect("a template variable no column supplies");
    assert!(missing.to_string().contains("query"), "{missing}");
    assert!(ctx.store().unwrap().experiments(None).unwrap().is_empty());
}

fn promotion_request<'a>(data: &'a std::path::Path, mock: &Mock) -> PromotionRequest<'a> {
    PromotionRequest {
        evidence: EvidenceFrom::Found(Box::new(settings(data, mock))),
        prompt: "p",
        from: "staging",
        to: "production",
        policy: Policy::no_regression(),
        inference: crate::compare::Inference::default(),
        dry_run: false,
        message: Some("ship it".into()),
        acceptance: Default::default(),
        pairwise: None,
    }
}

#[test]
fn a_promotion_that_fails_its_gate_moves_nothing() {
    let mock = Mock::start(rules());
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(&dir);
    let ctx = context();
    let store = ctx.store().unwrap();
    let candidate = store
        .version("p", &VersionRef::Tag("staging".into()))
        .unwrap();
    let baseline = store.tag("p", "production").unwrap();
    let recorder = Recorder::default();
    let decided = promotion::promote(
        &ctx,
        &promotion_request(&data, &mock),
        candidate,
        baseline.clone(),
        &recorder,
        std::future::pending,
    )
    .unwrap();
    assert!(!decided.verdict.passed);
    assert!(decided.moved.is_none());
    assert_eq!(store.tag("p", "production").unwrap(), baseline);
    // Both sides ran and said so.
    let events = recorder.events.borrow();
    assert_eq!(
        events.iter().filter(|e| e.starts_with("ended 10")).count(),
        2
    );
}

#[test]
fn a_promotion_that_passes_moves_the_tag_with_its_evidence() {
    // Both versions answer well: no regression, the gate passes.
    let rule = Rule::new(".", "good");
    let mock = Mock::start(vec![rule]);
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(&dir);
    let ctx = context();
    let store = ctx.store().unwrap();
    let candidate = store
        .version("p", &VersionRef::Tag("staging".into()))
        .unwrap();
    let baseline = store.tag("p", "production").unwrap();
    let decided = promotion::promote(
        &ctx,
        &promotion_request(&data, &mock),
        candidate.clone(),
        baseline,
        &Recorder::default(),
        std::future::pending,
    )
    .unwrap();
    assert!(decided.verdict.passed);
    let event = decided.moved.expect("the tag moved");
    assert_eq!(event.action, TagAction::Promote);
    assert!(!event.forced);
    let evidence = event.evidence.expect("evidence recorded");
    assert_eq!(evidence["verdict"], "pass");
    assert!(evidence["candidate_experiment"].is_string());
    assert_eq!(
        store.tag("p", "production").unwrap().unwrap().version_id,
        candidate.id
    );

    // Run again: the stored experiments stand as evidence; nothing is sent twice.
    let recorder = Recorder::default();
    let candidate = store.version("p", &VersionRef::Seq(1)).unwrap();
    store
        .set_tag("p", "staging", &VersionRef::Seq(1), &TagChange::default())
        .unwrap();
    let _ = promotion::promote(
        &ctx,
        &PromotionRequest {
            dry_run: true,
            ..promotion_request(&data, &mock)
        },
        candidate,
        store.tag("p", "production").unwrap(),
        &recorder,
        std::future::pending,
    )
    .unwrap();
    let events = recorder.events.borrow();
    assert!(
        events
            .iter()
            .all(|e| e.starts_with("notice using experiment")),
        "{events:?}"
    );
}

#[test]
fn a_comparison_in_memory_has_the_figures_of_the_streamed_one_and_every_row() {
    // v2 answers rows 0–4 well and 5–9 badly.
    let rule = Rule::new;
    let mock = Mock::start(vec![
        rule("careful", "a good answer"),
        rule("sloppy question [0-4]", "good"),
        rule("sloppy", "a poor answer"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(&dir);
    let ctx = context();
    let run = |tag: &str| {
        let prepared =
            prepare(&ctx, &settings(&data, &mock), &VersionRef::Tag(tag.into())).unwrap();
        launch(prepared, &ctx, &Recorder::default(), std::future::pending())
            .unwrap()
            .experiment
    };
    let (base, cand) = (run("production"), run("staging"));
    let inference = crate::compare::Inference::default();
    let mut streamed =
        promotion::comparison(&ctx, Some(&base), &cand, usize::MAX, &inference).unwrap();
    let (kept, rows) = promotion::comparison_in_memory(&ctx, &base, &cand, &inference).unwrap();
    assert_eq!(streamed.regressed_total, 5);
    assert!(!streamed.regressed[0].candidate.output.is_empty());
    // The same comparison, less the rows' texts, which a page reads for the rows it shows.
    for change in streamed.regressed.iter_mut().chain(&mut streamed.improved) {
        change.input.clear();
        change.baseline.output.clear();
        change.candidate.output.clear();
    }
    assert_eq!(kept, streamed);
    let listed: Vec<(String, Option<bool>, Option<bool>)> = rows
        .into_iter()
        .map(|r| (r.row_id, r.baseline, r.candidate))
        .collect();
    let want: Vec<(String, Option<bool>, Option<bool>)> = (0..10)
        .map(|i| (format!("r{i}"), Some(true), Some(i < 5)))
        .collect();
    assert_eq!(listed, want);
}
