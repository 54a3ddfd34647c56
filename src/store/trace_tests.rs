//! The trace store's contract on both backends: spans written once whatever the retries,
//! annotations that replace their namesake and refuse unknown targets without writing, the
//! lookup roll-up, the filters the production views use, and retention.

use super::tests::Fixture;
use crate::trace::{Annotation, Link, LookupKey, Span, SpanFilter, SpanStatus, Target};

fn span(id: u32, trace: u32, version: Option<(&str, i64)>, start_ms: i64, error: bool) -> Span {
    Span {
        trace_id: format!("{trace:032x}"),
        span_id: format!("{id:016x}"),
        parent_id: None,
        project: "default".into(),
        experiment: false,
        service: Some("app".into()),
        sender: Some("api:app".into()),
        name: "ChatCompletion".into(),
        kind: Some("LLM".into()),
        start_ms,
        end_ms: start_ms + 120,
        status: if error {
            SpanStatus::Error
        } else {
            SpanStatus::Ok
        },
        error: error.then(|| "boom".to_string()),
        link: version.map(|(id, number)| Link {
            prompt: "greet".into(),
            version_id: id.into(),
            version_number: number,
            tag: Some("production".into()),
            source: "openinference",
        }),
        model: Some("gpt-4o-mini".into()),
        input_tokens: Some(10),
        output_tokens: Some(5),
        variables: Some(r#"{"name":"Ada"}"#.into()),
        input: Some("hi".into()),
        output: Some("hello".into()),
        attributes: "{}".into(),
    }
}

fn annotation(target: Target, id: &str, name: &str, score: f64) -> Annotation {
    Annotation {
        target,
        target_id: id.into(),
        name: name.into(),
        annotator_kind: "HUMAN".into(),
        label: Some("good".into()),
        score: Some(score),
        explanation: None,
        metadata: "{}".into(),
        identifier: String::new(),
        source: "api".into(),
        time_ms: 1_000,
    }
}

const V1: &str = "0190d0a8-0000-7000-8000-000000000001";
const V2: &str = "0190d0a8-0000-7000-8000-000000000002";

fn spans_written_once_and_read_back(fx: &Fixture) {
    let store = fx.open();
    let batch = vec![
        span(1, 1, Some((V1, 1)), 1_000, false),
        span(2, 2, Some((V2, 2)), 2_000, true),
        span(3, 3, None, 3_000, false),
    ];
    assert_eq!(store.write_spans(&batch, &[]).unwrap(), 3);
    // An exporter's retry sends the same spans again: nothing doubles.
    assert_eq!(store.write_spans(&batch, &[]).unwrap(), 0);
    let mut seen = Vec::new();
    store
        .visit_spans(&SpanFilter::default(), &mut |s| {
            seen.push(s);
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, batch);
    assert_eq!(
        store.span(&batch[1].span_id).unwrap().as_ref(),
        Some(&batch[1])
    );
    assert_eq!(store.span("ffffffffffffffff").unwrap(), None);

    let only_v2 = SpanFilter {
        prompt: Some("greet".into()),
        version_ids: vec![V2.into()],
        ..SpanFilter::default()
    };
    let mut ids = Vec::new();
    store
        .visit_spans(&only_v2, &mut |s| {
            ids.push(s.span_id);
            Ok(())
        })
        .unwrap();
    assert_eq!(ids, [batch[1].span_id.clone()]);
    let window = SpanFilter {
        since_ms: Some(1_500),
        until_ms: Some(3_000),
        newest: Some(10),
        ..SpanFilter::default()
    };
    let mut ids = Vec::new();
    store
        .visit_spans(&window, &mut |s| {
            ids.push(s.span_id);
            Ok(())
        })
        .unwrap();
    assert_eq!(ids, [batch[1].span_id.clone()]);
    assert_eq!(store.count_unlinked(&SpanFilter::default()).unwrap(), 1);
    assert_eq!(store.count_spans(&SpanFilter::default()).unwrap(), 3);
    assert_eq!(store.count_spans(&only_v2).unwrap(), 1);

    // Experiment traffic is read only when asked for.
    let mut run = span(4, 4, Some((V1, 1)), 4_000, false);
    run.experiment = true;
    run.project = "Experiment-abc".into();
    store.write_spans(&[run], &[]).unwrap();
    let count = |filter: &SpanFilter| {
        let mut n = 0;
        store
            .visit_spans(filter, &mut |_| {
                n += 1;
                Ok(())
            })
            .unwrap();
        n
    };
    assert_eq!(count(&SpanFilter::default()), 3);
    let with = SpanFilter {
        experiments: true,
        ..SpanFilter::default()
    };
    assert_eq!(count(&with), 4);
    let errors = SpanFilter {
        errors_only: true,
        ..SpanFilter::default()
    };
    assert_eq!(count(&errors), 1);
}

fn annotations_replace_their_namesake_and_refuse_unknown_targets(fx: &Fixture) {
    let store = fx.open();
    let linked = span(1, 1, Some((V1, 1)), 1_000, false);
    let mut wrapper = span(2, 1, None, 900, false);
    wrapper.kind = Some("CHAIN".into());
    let other = span(3, 2, Some((V2, 2)), 2_000, false);
    store
        .write_spans(&[linked.clone(), wrapper.clone(), other.clone()], &[])
        .unwrap();

    let first = store
        .annotate(&[annotation(Target::Span, &linked.span_id, "helpful", 0.2)])
        .unwrap()
        .unwrap();
    let again = store
        .annotate(&[annotation(Target::Span, &linked.span_id, "helpful", 0.9)])
        .unwrap()
        .unwrap();
    assert_eq!(
        first, again,
        "the same name on the same span is one annotation"
    );

    // One unknown target: nothing of the batch is written.
    let unknown = store
        .annotate(&[
            annotation(Target::Span, &other.span_id, "helpful", 1.0),
            annotation(Target::Span, "00000000000000ff", "helpful", 1.0),
            annotation(Target::Trace, &format!("{:032x}", 99), "thumbs", 1.0),
        ])
        .unwrap()
        .unwrap_err();
    assert_eq!(
        unknown,
        ["00000000000000ff".to_string(), format!("{:032x}", 99)]
    );
    assert_eq!(store.span_annotations(&other).unwrap(), []);

    // An annotation on the application's own span, and one on the trace, score the linked
    // span of that trace.
    store
        .annotate(&[
            annotation(Target::Span, &wrapper.span_id, "thumbs", 1.0),
            annotation(Target::Trace, &linked.trace_id, "resolved", 0.0),
        ])
        .unwrap()
        .unwrap();
    let mut scored: Vec<(String, String, Option<f64>)> = store
        .scored_spans(&SpanFilter {
            prompt: Some("greet".into()),
            ..SpanFilter::default()
        })
        .unwrap()
        .into_iter()
        .map(|s| (s.span_id, s.annotation.name, s.annotation.score))
        .collect();
    scored.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(
        scored,
        [
            (linked.span_id.clone(), "helpful".to_string(), Some(0.9)),
            (linked.span_id.clone(), "resolved".to_string(), Some(0.0)),
            (linked.span_id.clone(), "thumbs".to_string(), Some(1.0)),
        ]
    );
    let names: Vec<String> = store
        .span_annotations(&linked)
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["helpful", "resolved"]);

    // Evaluation events arrive with their spans and need no check.
    let fresh = span(5, 5, Some((V1, 1)), 5_000, false);
    let event = Annotation {
        source: "otlp".into(),
        ..annotation(Target::Span, &fresh.span_id, "relevance", 0.5)
    };
    store
        .write_spans(std::slice::from_ref(&fresh), &[event])
        .unwrap();
    assert_eq!(store.span_annotations(&fresh).unwrap()[0].source, "otlp");
}

fn lookups_roll_up_per_minute_and_retention_prunes(fx: &Fixture) {
    let store = fx.open();
    let key = |minute: i64, tag: &str| LookupKey {
        minute,
        prompt: "greet".into(),
        tag: tag.into(),
        version_id: V1.into(),
        sender: "api:app".into(),
        user_agent: "python-httpx/0.28".into(),
    };
    store
        .record_lookups(&[(key(10, "production"), 3), (key(11, "production"), 1)])
        .unwrap();
    store.record_lookups(&[(key(10, "production"), 2)]).unwrap();
    assert_eq!(
        store.lookups("greet", None, None).unwrap(),
        [(key(10, "production"), 5), (key(11, "production"), 1)]
    );
    assert_eq!(
        store.lookups("greet", Some(11 * 60_000), None).unwrap(),
        [(key(11, "production"), 1)]
    );
    assert_eq!(store.lookups("other", None, None).unwrap(), []);

    let old = span(1, 1, Some((V1, 1)), 1_000, false);
    let new = span(2, 2, Some((V1, 1)), 700_000, false);
    store.write_spans(&[old.clone(), new.clone()], &[]).unwrap();
    assert_eq!(store.prune_traces(700_000).unwrap(), 1);
    assert_eq!(store.span(&old.span_id).unwrap(), None);
    assert!(store.span(&new.span_id).unwrap().is_some());
    assert_eq!(
        store.lookups("greet", None, None).unwrap(),
        [(key(11, "production"), 1)]
    );
}

mod sqlite {
    use super::*;
    #[test]
    fn spans_written_once_and_read_back() {
        super::spans_written_once_and_read_back(&Fixture::sqlite())
    }
    #[test]
    fn annotations_replace_their_namesake_and_refuse_unknown_targets() {
        super::annotations_replace_their_namesake_and_refuse_unknown_targets(&Fixture::sqlite())
    }
    #[test]
    fn lookups_roll_up_per_minute_and_retention_prunes() {
        super::lookups_roll_up_per_minute_and_retention_prunes(&Fixture::sqlite())
    }
}

mod postgres {
    use super::*;
    #[test]
    fn spans_written_once_and_read_back() {
        super::spans_written_once_and_read_back(&Fixture::postgres())
    }
    #[test]
    fn annotations_replace_their_namesake_and_refuse_unknown_targets() {
        super::annotations_replace_their_namesake_and_refuse_unknown_targets(&Fixture::postgres())
    }
    #[test]
    fn lookups_roll_up_per_minute_and_retention_prunes() {
        super::lookups_roll_up_per_minute_and_retention_prunes(&Fixture::postgres())
    }
}
