//! `runner try`: one version (or two side by side) on one input, the answer streaming in.
//! Nothing is recorded: no experiment, no cache entry; `--save` alone writes, through the same
//! path as `runner prompt update`.

use super::{Context, check_prompt_name, out, out_json, version_ref};
use crate::cli::TryArgs;
use crate::client::Failure;
use crate::error::{Error, Result, exit};
use crate::input::{read_structured, read_text, split_assignment};
use crate::model::{JsonObject, Message, Template, VersionRef};
use crate::workflow::playground::{self, Trial, TryView, call, view};
use serde::Serialize;
use serde_json::Value;
use std::io::Write;

/// Two versions on the same input, and a word diff of their answers.
#[derive(Debug, Serialize)]
struct SideBySide {
    sides: Vec<TryView>,
    /// The answers' words: `equal`, `delete` (only in the first) or `insert` (only in the
    /// second), in order.
    diff: Vec<DiffPiece>,
}

#[derive(Debug, Serialize)]
struct DiffPiece {
    op: &'static str,
    text: String,
}

pub fn run(args: TryArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.name)?;
    if args.save && args.template_file.is_none() && args.messages_file.is_none() {
        return Err(
            Error::invalid("--save stores a tried template, and none was given").with_hint(
                "pass --template-file FILE or --messages-file FILE with the text to try",
            ),
        );
    }
    let references: Vec<(VersionRef, Option<String>)> = match args.tags.as_slice() {
        [] => {
            let reference = version_ref(&args.selector)?;
            let tag = match &reference {
                VersionRef::Tag(tag) => Some(tag.clone()),
                _ => None,
            };
            vec![(reference, tag)]
        }
        [a, b] => vec![
            (VersionRef::Tag(a.clone()), Some(a.clone())),
            (VersionRef::Tag(b.clone()), Some(b.clone())),
        ],
        _ => {
            return Err(
                Error::invalid("--tags takes two tags, e.g. production,staging")
                    .with_hint("runner try NAME --tags production,staging --var KEY=VALUE"),
            );
        }
    };
    if args.save && references.len() > 1 {
        return Err(Error::invalid(
            "--save stores one version; --tags tries two",
        ));
    }
    let vars = variables(&args)?;
    let edited = edited_template(&args)?;
    let defaults = ctx.config()?.for_prompt(&args.name);
    let store = ctx.store_for_reading()?;
    let mut sides = Vec::new();
    for (reference, tag) in references {
        let version = store.version(&args.name, &reference)?;
        let trial = Trial::prepare(
            version,
            tag,
            edited.as_ref(),
            &vars,
            args.model.as_deref(),
            &defaults,
        )
        .map_err(cli_hint)?;
        sides.push(trial);
    }
    let base_url = crate::workflow::settings::endpoint(args.base_url.as_deref(), &defaults)?;
    let client = crate::workflow::experiment::call_client(
        &base_url,
        args.timeout.or(defaults.timeout).unwrap_or(60.0),
        args.max_retries.or(defaults.max_retries).unwrap_or(3),
    )?;
    let runtime = crate::workflow::experiment::runtime()?;

    if sides.len() == 2 {
        let (a, b) = runtime.block_on(async {
            let mut quiet_a = |_: &str| {};
            let mut quiet_b = |_: &str| {};
            tokio::join!(
                call(&client, &sides[0], &mut quiet_a),
                call(&client, &sides[1], &mut quiet_b)
            )
        });
        let views = vec![
            view(&sides[0], a.map_err(|f| failed(&base_url, f))?),
            view(&sides[1], b.map_err(|f| failed(&base_url, f))?),
        ];
        let diff = word_diff(&views[0].output, &views[1].output);
        if args.json {
            out_json(&SideBySide { sides: views, diff })?;
        } else {
            out(&side_by_side_text(&views, &diff));
        }
        return Ok(exit::OK);
    }

    let side = &sides[0];
    let json = args.json;
    let mut stdout = std::io::stdout();
    let mut printed = false;
    let mut ends_line = true;
    let mut show = |piece: &str| {
        if !json && !piece.is_empty() {
            printed = true;
            ends_line = piece.ends_with('\n');
            // A closed stdout ends the printing, not the call.
            let _ = stdout.write_all(piece.as_bytes());
            let _ = stdout.flush();
        }
    };
    let answer = runtime.block_on(call(&client, side, &mut show));
    if printed && !ends_line {
        let _ = writeln!(std::io::stdout());
    }
    let mut view = view(side, answer.map_err(|f| failed(&base_url, f))?);
    if args.save
        && let Some(template) = edited
    {
        view.saved_version = Some(save(ctx, &args, side, template)?);
    }
    if json {
        out_json(&view)?;
    } else {
        crate::note!("{}", figures(&view));
        if let Some(seq) = view.saved_version {
            crate::note!("saved as {} v{seq}", args.name);
        }
    }
    Ok(exit::OK)
}

/// The workflow's hints, in the words of the command line.
fn cli_hint(e: Error) -> Error {
    let hint = e.hint();
    match hint.as_deref().and_then(|h| h.strip_prefix("give every variable ")) {
        Some(uses) => e.with_hint(format!(
            "give every variable: --var KEY=VALUE, --vars-file FILE or --dataset FILE --row ID {uses}"
        )),
        None if e.to_string().ends_with("names no model") => e.with_hint("pass --model MODEL"),
        None => e,
    }
}

fn failed(base_url: &str, failure: Failure) -> Error {
    Error::operational(format!(
        "the call to {base_url} failed: {}",
        failure.message
    ))
    .with_hint(match failure.http_status {
        Some(401 | 403) => "set OPENAI_API_KEY to a key this endpoint accepts",
        Some(404) => "check the model name (--model or the version's) and the base URL",
        None => "check that the server is up and --base-url / OPENAI_BASE_URL is right",
        _ => "the endpoint's own words are above; nothing was recorded",
    })
}

/// The variables: the dataset row, then the variables file, then each `--var`.
fn variables(args: &TryArgs) -> Result<JsonObject> {
    let mut vars = JsonObject::new();
    if let (Some(path), Some(id)) = (&args.dataset, &args.row) {
        vars.extend(playground::dataset_row(path, id)?);
    }
    if let Some(path) = &args.vars_file {
        let file: JsonObject = read_structured(path, "variables file").map_err(|e| {
            e.with_hint(
                r#"a variables file holds one object, e.g. {"query": "Where is my order?"}"#,
            )
        })?;
        vars.extend(file);
    }
    for text in &args.vars {
        let (key, value) = split_assignment("--var", text)?;
        vars.insert(key.to_string(), Value::String(value.to_string()));
    }
    Ok(vars)
}

/// The template to try instead of the version's, if one was given.
fn edited_template(args: &TryArgs) -> Result<Option<Template>> {
    if let Some(path) = &args.template_file {
        return Ok(Some(Template::Str(read_text(path, "template file")?)));
    }
    if let Some(path) = &args.messages_file {
        let messages: Vec<Message> = read_structured(path, "messages file").map_err(|e| {
            e.with_hint(r#"a messages file is a list of messages: [{"role": "system", "content": "..."}, {"role": "user", "content": "{{query}}"}]"#)
        })?;
        return Ok(Some(Template::Chat(messages)));
    }
    Ok(None)
}

/// Stores the tried template as a new version, with the tried version's settings: the same
/// path and rules as `runner prompt update`.
/// `template` is the one tried, read once before the call.
fn save(ctx: &Context, args: &TryArgs, trial: &Trial, template: Template) -> Result<i64> {
    let store = ctx.store()?;
    let change = ctx.guarded_change(false, args.message.clone())?;
    let created = playground::save(
        &*store,
        &trial.version,
        template,
        args.message.clone(),
        &ctx.author,
        &change,
    )?;
    Ok(created.seq)
}

fn figures(v: &TryView) -> String {
    let tokens = match (v.prompt_tokens, v.completion_tokens) {
        (Some(p), Some(c)) => format!("{p} in / {c} out tokens"),
        _ => "tokens not reported".to_string(),
    };
    format!(
        "{} v{}{}{} · {} · {:.0} ms, first token {} · {} · finish: {}",
        v.prompt,
        v.version,
        v.tag
            .as_deref()
            .map(|t| format!(" ({t})"))
            .unwrap_or_default(),
        if v.edited { ", edited template" } else { "" },
        v.model,
        v.latency_ms,
        v.ttft_ms
            .map(|t| format!("{t:.0} ms"))
            .unwrap_or_else(|| "-".into()),
        tokens,
        v.finish_reason.as_deref().unwrap_or("-"),
    )
}

fn word_diff(a: &str, b: &str) -> Vec<DiffPiece> {
    let diff = similar::TextDiff::from_words(a, b);
    let mut pieces: Vec<DiffPiece> = Vec::new();
    for change in diff.iter_all_changes() {
        let op = match change.tag() {
            similar::ChangeTag::Equal => "equal",
            similar::ChangeTag::Delete => "delete",
            similar::ChangeTag::Insert => "insert",
        };
        match pieces.last_mut() {
            Some(last) if last.op == op => last.text.push_str(change.value()),
            _ => pieces.push(DiffPiece {
                op,
                text: change.value().to_string(),
            }),
        }
    }
    pieces
}

/// The two answers next to each other (stacked when the terminal is narrow), each side's
/// figures, and the word diff: `[-only in the first-]{+only in the second+}`.
fn side_by_side_text(views: &[TryView], diff: &[DiffPiece]) -> String {
    let label = |v: &TryView| {
        format!(
            "{} v{}{}",
            v.prompt,
            v.version,
            v.tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default()
        )
    };
    let wide = crate::report::terminal_width().is_none_or(|w| w >= 100);
    let mut text = if wide {
        crate::report::aligned_table(
            Some(views.iter().map(label).collect()),
            vec![views.iter().map(|v| v.output.clone()).collect()],
        )
    } else {
        views
            .iter()
            .map(|v| format!("── {} ──\n{}\n", label(v), v.output))
            .collect::<Vec<_>>()
            .join("\n")
    };
    text.push('\n');
    for v in views {
        text.push_str(&figures(v));
        text.push('\n');
    }
    let same = diff.iter().all(|p| p.op == "equal");
    text.push_str("\nword diff: ");
    if same {
        text.push_str("the answers are the same");
    } else {
        for piece in diff {
            match piece.op {
                "delete" => text.push_str(&format!("[-{}-]", piece.text)),
                "insert" => text.push_str(&format!("{{+{}+}}", piece.text)),
                _ => text.push_str(&piece.text),
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_diff_keeps_every_word_once_in_order() {
        let diff = word_diff("Your order ships today.", "Your parcel ships today!");
        let first: String = diff
            .iter()
            .filter(|p| p.op != "insert")
            .map(|p| p.text.as_str())
            .collect();
        let second: String = diff
            .iter()
            .filter(|p| p.op != "delete")
            .map(|p| p.text.as_str())
            .collect();
        assert_eq!(first, "Your order ships today.");
        assert_eq!(second, "Your parcel ships today!");
        assert!(
            diff.iter()
                .any(|p| p.op == "delete" && p.text.contains("order"))
        );
        assert!(
            diff.iter()
                .any(|p| p.op == "insert" && p.text.contains("parcel"))
        );
        assert!(word_diff("same", "same").iter().all(|p| p.op == "equal"));
    }
}
