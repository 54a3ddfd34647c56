//! Production traffic, once for both backends: spans written in batches (a span already stored
//! is kept as it was, so an exporter's retry never doubles a count), annotations that replace
//! the one of the same target, name and identifier, the per-minute lookup roll-up, the reads
//! the production views make, and retention. It names no driver and must not decide what a
//! span is linked to: spans arrive linked by ingest.

use super::Backend;
use crate::store::sql::{Arg, Db, Row, all, args, corrupt, first};
use crate::store::{Result, StoreError, TraceStore};
use crate::trace::{Annotation, Link, LookupKey, ScoredSpan, Span, SpanFilter, SpanStatus, Target};

const SPAN_COLUMNS: &str = "s.trace_id, s.span_id, s.parent_id, s.project, s.experiment, \
     s.service, s.sender, s.name, s.kind, s.start_ms, s.end_ms, s.status, s.error, s.prompt, \
     s.version_id, s.version_number, s.tag, s.link, s.model, s.input_tokens, s.output_tokens, \
     s.variables, s.input, s.output, s.attributes";

const SPAN_INSERT_COLUMNS: &str = "INSERT INTO spans (trace_id, span_id, parent_id, project, \
     experiment, service, sender, name, kind, start_ms, end_ms, status, error, prompt, version_id, \
     version_number, tag, link, model, input_tokens, output_tokens, variables, input, output, \
     attributes, received_ms) VALUES ";
/// Values a span row takes.
const SPAN_FIELDS: usize = 26;
/// The most span rows one INSERT carries on any dialect (`Dialect::span_rows_per_insert`): the
/// prepared statements go up to it in powers of two.
const SPAN_CHUNK: usize = 256;

const ANNOTATION_UPSERT: &str = "INSERT INTO annotations (target, target_id, name, \
     annotator_kind, label, score, explanation, metadata, identifier, source, created_ms, \
     updated_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
     ON CONFLICT (target, target_id, name, identifier) DO UPDATE SET \
     annotator_kind = excluded.annotator_kind, label = excluded.label, score = excluded.score, \
     explanation = excluded.explanation, metadata = excluded.metadata, \
     source = excluded.source, updated_ms = excluded.updated_ms RETURNING id";

const ANNOTATION_COLUMNS: &str = "a.target, a.target_id, a.name, a.annotator_kind, a.label, \
     a.score, a.explanation, a.metadata, a.identifier, a.source, a.updated_ms";

const LOOKUP_UPSERT: &str = "INSERT INTO lookups (minute, prompt, tag, version_id, sender, \
     user_agent, count) VALUES ($1, $2, $3, $4, $5, $6, $7) \
     ON CONFLICT (prompt, minute, tag, version_id, sender, user_agent) \
     DO UPDATE SET count = lookups.count + excluded.count";

impl<B: Backend> TraceStore for B {
    fn write_spans(&self, spans: &[Span], annotations: &[Annotation]) -> Result<u64> {
        if spans.is_empty() && annotations.is_empty() {
            return Ok(0);
        }
        let received = crate::trace::now_ms();
        self.write(|db| {
            for setup in db.dialect().span_writer_setup() {
                db.each(setup, &[], &mut |_| Ok(()))?;
            }
            let added = insert_spans(db, spans, received)?;
            for annotation in annotations {
                upsert_annotation(db, annotation)?;
            }
            Ok(added)
        })
    }

    fn annotate(
        &self,
        annotations: &[Annotation],
    ) -> Result<std::result::Result<Vec<i64>, Vec<String>>> {
        self.write(|db| {
            let mut missing: Vec<String> = Vec::new();
            for annotation in annotations {
                let sql = match annotation.target {
                    Target::Span => "SELECT 1 FROM spans WHERE span_id = $1 LIMIT 1",
                    Target::Trace => "SELECT 1 FROM spans WHERE trace_id = $1 LIMIT 1",
                };
                let known = first(db, sql, args![&annotation.target_id], |r| r.int(0))?;
                if known.is_none() && !missing.contains(&annotation.target_id) {
                    missing.push(annotation.target_id.clone());
                }
            }
            if !missing.is_empty() {
                return Ok(Err(missing));
            }
            let mut ids = Vec::with_capacity(annotations.len());
            for annotation in annotations {
                ids.push(upsert_annotation(db, annotation)?);
            }
            Ok(Ok(ids))
        })
    }

    fn record_lookups(&self, counts: &[(LookupKey, i64)]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        self.write(|db| {
            for (key, count) in counts {
                db.exec(
                    LOOKUP_UPSERT,
                    args![
                        key.minute,
                        &key.prompt,
                        &key.tag,
                        &key.version_id,
                        &key.sender,
                        &key.user_agent,
                        *count
                    ],
                )?;
            }
            Ok(())
        })
    }

    fn visit_spans(
        &self,
        filter: &SpanFilter,
        visit: &mut dyn FnMut(Span) -> Result<()>,
    ) -> Result<()> {
        let (conditions, args) = conditions(filter);
        let Some(limit) = filter.newest else {
            let sql = format!(
                "SELECT {SPAN_COLUMNS} FROM spans s WHERE {conditions} \
                 ORDER BY s.start_ms, s.span_id"
            );
            return self.read(|db| db.each(&sql, &args, &mut |row| visit(span_of(row)?)));
        };
        // Newest first, stopping after `limit` rows.
        let sql = format!(
            "SELECT {SPAN_COLUMNS} FROM spans s WHERE {conditions} \
             ORDER BY s.start_ms DESC, s.span_id"
        );
        let mut seen = 0;
        let read = self.read(|db| {
            db.each(&sql, &args, &mut |row| {
                if seen == limit {
                    return Err(StoreError::Abandoned);
                }
                seen += 1;
                visit(span_of(row)?)
            })
        });
        match read {
            Err(StoreError::Abandoned) if seen == limit => Ok(()),
            other => other,
        }
    }

    fn span(&self, span_id: &str) -> Result<Option<Span>> {
        let sql = format!("SELECT {SPAN_COLUMNS} FROM spans s WHERE s.span_id = $1 LIMIT 1");
        self.read(|db| first(db, &sql, args![span_id], span_of))
    }

    fn scored_spans(&self, filter: &SpanFilter) -> Result<Vec<ScoredSpan>> {
        let (conditions, args) = conditions(filter);
        // A span annotation scores its span, or, on a span that names no version (the
        // application's own span around the call), the linked spans of its trace; a trace
        // annotation scores every linked span of the trace. The first and the last are one
        // indexed probe per span of the window; the middle one is read from the annotations'
        // side (every annotation on an unlinked span, by its span's key) and matched to the
        // window's linked spans here, which no planner gets wrong.
        let direct = format!(
            "SELECT s.span_id, s.version_id, {ANNOTATION_COLUMNS} FROM spans s \
             JOIN annotations a ON a.target = 'span' AND a.target_id = s.span_id \
             WHERE s.version_id IS NOT NULL AND {conditions} \
             UNION ALL \
             SELECT s.span_id, s.version_id, {ANNOTATION_COLUMNS} FROM spans s \
             JOIN annotations a ON a.target = 'trace' AND a.target_id = s.trace_id \
             WHERE s.version_id IS NOT NULL AND {conditions}"
        );
        let around = format!(
            "SELECT u.trace_id, {ANNOTATION_COLUMNS} FROM annotations a \
             JOIN spans u ON u.span_id = a.target_id \
             WHERE a.target = 'span' AND u.version_id IS NULL"
        );
        let linked = format!(
            "SELECT s.span_id, s.version_id, s.trace_id FROM spans s \
             WHERE s.version_id IS NOT NULL AND {conditions}"
        );
        self.read(|db| {
            let mut scored = all(db, &direct, &args, |row| {
                Ok(ScoredSpan {
                    span_id: row.text(0)?,
                    version_id: row.opt_text(1)?,
                    annotation: annotation_of(row, 2)?,
                })
            })?;
            let mut by_trace: std::collections::HashMap<String, Vec<Annotation>> =
                std::collections::HashMap::new();
            db.each(&around, &[], &mut |row| {
                by_trace
                    .entry(row.text(0)?)
                    .or_default()
                    .push(annotation_of(row, 1)?);
                Ok(())
            })?;
            if by_trace.is_empty() {
                return Ok(scored);
            }
            db.each(&linked, &args, &mut |row| {
                if let Some(annotations) = by_trace.get(&row.text(2)?) {
                    let (span_id, version_id) = (row.text(0)?, row.opt_text(1)?);
                    for annotation in annotations {
                        scored.push(ScoredSpan {
                            span_id: span_id.clone(),
                            version_id: version_id.clone(),
                            annotation: annotation.clone(),
                        });
                    }
                }
                Ok(())
            })?;
            Ok(scored)
        })
    }

    fn visit_annotations(&self, visit: &mut dyn FnMut(Annotation) -> Result<()>) -> Result<()> {
        let sql = format!("SELECT {ANNOTATION_COLUMNS} FROM annotations a ORDER BY a.id");
        self.read(|db| db.each(&sql, &[], &mut |row| visit(annotation_of(row, 0)?)))
    }

    fn span_annotations(&self, span: &Span) -> Result<Vec<Annotation>> {
        let sql = format!(
            "SELECT {ANNOTATION_COLUMNS} FROM annotations a \
             WHERE (a.target = 'span' AND a.target_id = $1) \
             OR (a.target = 'trace' AND a.target_id = $2) ORDER BY a.updated_ms, a.id"
        );
        self.read(|db| {
            all(db, &sql, args![&span.span_id, &span.trace_id], |row| {
                annotation_of(row, 0)
            })
        })
    }

    fn count_spans(&self, filter: &SpanFilter) -> Result<i64> {
        let (conditions, args) = conditions(filter);
        let sql = format!("SELECT COUNT(*) FROM spans s WHERE s.kind = 'LLM' AND {conditions}");
        self.read(|db| Ok(first(db, &sql, &args, |r| r.int(0))?.unwrap_or(0)))
    }

    fn count_unlinked(&self, filter: &SpanFilter) -> Result<i64> {
        let unlinked = SpanFilter {
            prompt: None,
            version_ids: Vec::new(),
            ..filter.clone()
        };
        let (conditions, args) = conditions(&unlinked);
        let sql = format!(
            "SELECT COUNT(*) FROM spans s WHERE s.version_id IS NULL AND s.kind = 'LLM' \
             AND {conditions}"
        );
        self.read(|db| Ok(first(db, &sql, &args, |r| r.int(0))?.unwrap_or(0)))
    }

    fn lookups(
        &self,
        prompt: &str,
        since_ms: Option<i64>,
        until_ms: Option<i64>,
    ) -> Result<Vec<(LookupKey, i64)>> {
        let since = since_ms.map_or(i64::MIN, |ms| ms.div_euclid(60_000));
        let until = until_ms.map_or(i64::MAX, |ms| ms.div_euclid(60_000));
        self.read(|db| {
            all(
                db,
                "SELECT minute, prompt, tag, version_id, sender, user_agent, count FROM lookups \
                 WHERE prompt = $1 AND minute >= $2 AND minute <= $3 \
                 ORDER BY minute, tag, version_id, sender, user_agent",
                args![prompt, since, until],
                |row| {
                    Ok((
                        LookupKey {
                            minute: row.int(0)?,
                            prompt: row.text(1)?,
                            tag: row.text(2)?,
                            version_id: row.text(3)?,
                            sender: row.text(4)?,
                            user_agent: row.text(5)?,
                        },
                        row.int(6)?,
                    ))
                },
            )
        })
    }

    fn prune_traces(&self, before_ms: i64) -> Result<u64> {
        self.write(|db| {
            let spans = db.exec("DELETE FROM spans WHERE start_ms < $1", args![before_ms])?;
            db.exec(
                "DELETE FROM annotations WHERE updated_ms < $1",
                args![before_ms],
            )?;
            db.exec(
                "DELETE FROM lookups WHERE minute < $1",
                args![before_ms.div_euclid(60_000)],
            )?;
            Ok(spans)
        })
    }
}

/// The WHERE clause (on spans `s`) and its arguments for a filter.
fn conditions(filter: &SpanFilter) -> (String, Vec<Arg<'_>>) {
    let mut clauses = vec!["1 = 1".to_string()];
    let mut args: Vec<Arg<'_>> = Vec::new();
    let next = |args: &mut Vec<Arg<'_>>| format!("${}", args.len());
    if let Some(prompt) = &filter.prompt {
        args.push(prompt.as_str().into());
        clauses.push(format!("s.prompt = {}", next(&mut args)));
    }
    if !filter.version_ids.is_empty() {
        let mut marks = Vec::new();
        for id in &filter.version_ids {
            args.push(id.as_str().into());
            marks.push(next(&mut args));
        }
        clauses.push(format!("s.version_id IN ({})", marks.join(", ")));
    }
    if let Some(since) = filter.since_ms {
        args.push(since.into());
        clauses.push(format!("s.start_ms >= {}", next(&mut args)));
    }
    if let Some(until) = filter.until_ms {
        args.push(until.into());
        clauses.push(format!("s.start_ms < {}", next(&mut args)));
    }
    if !filter.experiments {
        args.push(false.into());
        clauses.push(format!("s.experiment = {}", next(&mut args)));
    }
    if filter.errors_only {
        clauses.push("s.status = 'error'".to_string());
    }
    (clauses.join(" AND "), args)
}

/// The multi-row INSERT of `rows` spans (a power of two up to `SPAN_CHUNK`), built once: a
/// connection prepares at most one statement per size.
fn span_insert(rows: usize) -> &'static str {
    static STATEMENTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let statements = STATEMENTS.get_or_init(|| {
        (0..=SPAN_CHUNK.trailing_zeros())
            .map(|power| {
                let rows = 1usize << power;
                let mut sql = String::from(SPAN_INSERT_COLUMNS);
                for row in 0..rows {
                    sql.push_str(if row == 0 { "(" } else { ", (" });
                    for field in 0..SPAN_FIELDS {
                        if field > 0 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("${}", row * SPAN_FIELDS + field + 1));
                    }
                    sql.push(')');
                }
                sql.push_str(" ON CONFLICT (span_id, trace_id) DO NOTHING");
                sql
            })
            .collect()
    });
    &statements[rows.trailing_zeros() as usize]
}

/// Inserts spans, a span already stored left as it was; returns how many were new: in chunks
/// of the dialect's rows per INSERT (the rest in smaller powers of two).
fn insert_spans(db: &dyn Db, spans: &[Span], received: i64) -> Result<u64> {
    let chunk = db.dialect().span_rows_per_insert().min(SPAN_CHUNK);
    let mut added = 0;
    let mut rest = spans;
    let mut values: Vec<Arg<'_>> = Vec::with_capacity(chunk.min(spans.len()) * SPAN_FIELDS);
    while !rest.is_empty() {
        let rows = if rest.len() >= chunk {
            chunk
        } else {
            1 << rest.len().ilog2()
        };
        let (chunk, tail) = rest.split_at(rows);
        values.clear();
        for span in chunk {
            span_values(&mut values, span, received);
        }
        added += db.exec(span_insert(rows), &values)?;
        rest = tail;
    }
    Ok(added)
}

fn span_values<'a>(values: &mut Vec<Arg<'a>>, span: &'a Span, received: i64) {
    let link = span.link.as_ref();
    values.extend_from_slice(args![
        &span.trace_id,
        &span.span_id,
        &span.parent_id,
        &span.project,
        span.experiment,
        &span.service,
        &span.sender,
        &span.name,
        &span.kind,
        span.start_ms,
        span.end_ms,
        span.status.as_str(),
        &span.error,
        link.map(|l| l.prompt.as_str()),
        link.map(|l| l.version_id.as_str()),
        link.map(|l| l.version_number),
        link.and_then(|l| l.tag.as_deref()),
        link.map(|l| l.source),
        &span.model,
        span.input_tokens,
        span.output_tokens,
        &span.variables,
        &span.input,
        &span.output,
        &span.attributes,
        received
    ]);
}

fn upsert_annotation(db: &dyn Db, a: &Annotation) -> Result<i64> {
    let id = first(
        db,
        ANNOTATION_UPSERT,
        args![
            a.target.as_str(),
            &a.target_id,
            &a.name,
            &a.annotator_kind,
            &a.label,
            a.score,
            &a.explanation,
            &a.metadata,
            &a.identifier,
            &a.source,
            a.time_ms
        ],
        |row| row.int(0),
    )?;
    id.ok_or_else(|| corrupt("annotations.id", "the upsert returned no id"))
}

fn span_of(row: &dyn Row) -> Result<Span> {
    let status = row.text(11)?;
    let link = match (row.opt_text(13)?, row.opt_text(14)?, row.opt_int(15)?) {
        (Some(prompt), Some(version_id), Some(version_number)) => Some(Link {
            prompt,
            version_id,
            version_number,
            tag: row.opt_text(16)?,
            source: match row.opt_text(17)?.as_deref() {
                Some("openinference") => "openinference",
                Some("gen_ai") => "gen_ai",
                _ => "runner",
            },
        }),
        _ => None,
    };
    Ok(Span {
        trace_id: row.text(0)?,
        span_id: row.text(1)?,
        parent_id: row.opt_text(2)?,
        project: row.text(3)?,
        experiment: row.flag(4)?,
        service: row.opt_text(5)?,
        sender: row.opt_text(6)?,
        name: row.text(7)?,
        kind: row.opt_text(8)?,
        start_ms: row.int(9)?,
        end_ms: row.int(10)?,
        status: SpanStatus::parse(&status).ok_or_else(|| corrupt("spans.status", &status))?,
        error: row.opt_text(12)?,
        link,
        model: row.opt_text(18)?,
        input_tokens: row.opt_int(19)?,
        output_tokens: row.opt_int(20)?,
        variables: row.opt_text(21)?,
        input: row.opt_text(22)?,
        output: row.opt_text(23)?,
        attributes: row.text(24)?,
    })
}

fn annotation_of(row: &dyn Row, at: usize) -> Result<Annotation> {
    let target = match row.text(at)?.as_str() {
        "span" => Target::Span,
        "trace" => Target::Trace,
        other => return Err(corrupt("annotations.target", other)),
    };
    Ok(Annotation {
        target,
        target_id: row.text(at + 1)?,
        name: row.text(at + 2)?,
        annotator_kind: row.text(at + 3)?,
        label: row.opt_text(at + 4)?,
        score: row.opt_real(at + 5)?,
        explanation: row.opt_text(at + 6)?,
        metadata: row.text(at + 7)?,
        identifier: row.text(at + 8)?,
        source: row.text(at + 9)?,
        time_ms: row.int(at + 10)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::Fixture;

    fn span(n: usize) -> Span {
        Span {
            trace_id: format!("{:032x}", n * 7919 + 1),
            span_id: format!("{:016x}", n * 104_729 + 3),
            parent_id: n.is_multiple_of(2).then(|| format!("{:016x}", n + 1)),
            project: "default".into(),
            experiment: n.is_multiple_of(50),
            service: Some("app".into()),
            sender: Some("api:app".into()),
            name: "ChatCompletion".into(),
            kind: Some("LLM".into()),
            start_ms: 1_000 + n as i64,
            end_ms: 1_100 + n as i64,
            status: if n.is_multiple_of(9) {
                SpanStatus::Error
            } else {
                SpanStatus::Ok
            },
            error: n.is_multiple_of(9).then(|| "boom".to_string()),
            link: (!n.is_multiple_of(3)).then(|| Link {
                prompt: "greet".into(),
                version_id: "0190d0a8-0000-7000-8000-000000000001".into(),
                version_number: 1,
                tag: n.is_multiple_of(2).then(|| "production".to_string()),
                source: "openinference",
            }),
            model: Some("gpt-4o-mini".into()),
            input_tokens: Some(n as i64),
            output_tokens: (!n.is_multiple_of(4)).then_some(5),
            variables: None,
            input: Some(format!("question {n}")),
            output: Some(format!("answer {n}")),
            attributes: format!(r#"{{"n":{n}}}"#),
        }
    }

    #[test]
    fn each_insert_names_its_rows_parameters_in_order() {
        for rows in [1, 2, 64, SPAN_CHUNK] {
            let sql = span_insert(rows);
            assert_eq!(sql.matches('(').count(), rows + 2, "{rows} rows");
            assert!(sql.contains(&format!("${}) ON CONFLICT", rows * SPAN_FIELDS)));
            assert!(!sql.contains(&format!("${}", rows * SPAN_FIELDS + 1)));
        }
    }

    /// 600 spans are 256 + 256 + 64 + 16 + 8 rows on PostgreSQL, 600 statements on SQLite;
    /// a retry that repeats some of them (and one twice in the same batch) adds only the new.
    fn a_large_batch_goes_in_whole_and_once(fx: &Fixture) {
        let store = fx.open();
        let first: Vec<Span> = (0..600).map(span).collect();
        assert_eq!(store.write_spans(&first, &[]).unwrap(), 600);
        let mut retry: Vec<Span> = (500..700).map(span).collect();
        retry.push(span(650));
        assert_eq!(store.write_spans(&retry, &[]).unwrap(), 100);
        let mut seen = Vec::new();
        let everything = SpanFilter {
            experiments: true,
            ..SpanFilter::default()
        };
        store
            .visit_spans(&everything, &mut |s| {
                seen.push(s);
                Ok(())
            })
            .unwrap();
        let sent: Vec<Span> = (0..700).map(span).collect();
        assert_eq!(seen, sent);
    }

    mod sqlite {
        #[test]
        fn a_large_batch_goes_in_whole_and_once() {
            super::a_large_batch_goes_in_whole_and_once(&super::Fixture::sqlite())
        }
    }

    mod postgres {
        #[test]
        fn a_large_batch_goes_in_whole_and_once() {
            super::a_large_batch_goes_in_whole_and_once(&super::Fixture::postgres())
        }
    }
}
