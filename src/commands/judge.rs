//! `runner judge agreement`: an evaluator set against people's labels. The judging and the
//! statistics are `workflow::agreement`'s; this file reads the flags and prints.

use super::{Context, confidence, out, out_json};
use crate::cli::{JudgeAgreementArgs, JudgeCommand};
use crate::error::{Error, Result, exit};
use crate::report::{excerpt, table};
use crate::workflow::agreement::{Agreement, agreement, read_labels};

pub fn run(command: JudgeCommand, ctx: &Context) -> Result<u8> {
    match command {
        JudgeCommand::Agreement(args) => agreement_command(args, ctx),
    }
}

fn agreement_command(args: JudgeAgreementArgs, ctx: &Context) -> Result<u8> {
    let confidence = confidence(args.confidence, ctx)?;
    if args.concurrency == 0 {
        return Err(Error::invalid("--concurrency must be at least 1"));
    }
    let labels = read_labels(&args.labels)?;
    let experiment = {
        let store = ctx.store_for_reading()?;
        store.experiment(&super::experiment_named(&*store, &args.experiment)?)?
    };
    // The judge the experiment ran with, unless --judge-model names another; then the
    // prompt's settings in runner.toml.
    let defaults = ctx
        .config()?
        .for_prompt(experiment.prompt.as_deref().unwrap_or_default());
    let base_url = crate::workflow::settings::endpoint(args.base_url.as_deref(), &defaults)?;
    // An evaluator that calls no model (a regex, a program) needs no key for the endpoint.
    let calls_a_model = crate::eval::Evaluator::prepare(&args.eval).is_ok_and(|e| e.is_judge());
    let client = if calls_a_model {
        crate::workflow::experiment::call_client(&base_url, args.timeout, args.max_retries)?
    } else {
        crate::client::Client::new(crate::client::ClientConfig::new(&base_url))
            .map_err(crate::workflow::settings::endpoint_error)?
    };
    let judge = crate::workflow::pairwise::Judge {
        client,
        model: args
            .judge_model
            .clone()
            .or_else(|| experiment.settings.judge_model.clone())
            .or_else(|| defaults.judge_model.clone()),
        concurrency: args.concurrency,
        cache: crate::engine::CacheUse {
            read: !args.fresh,
            write: true,
            max_age: None,
        },
    };
    let experiment = experiment.id;
    let found = agreement(ctx, &experiment, &args.eval, &labels, &judge, confidence)?;
    if args.json {
        out_json(&found)?;
    } else {
        out(&text(&found, args.rows));
    }
    Ok(exit::OK)
}

fn text(a: &Agreement, rows: usize) -> String {
    let t = &a.table;
    let mut s = format!(
        "{} against people's labels on {} rows of {}\n",
        a.evaluator, a.rows, a.experiment
    );
    s.push_str(&table(
        &["", "PEOPLE PASS", "PEOPLE FAIL"],
        vec![
            vec![
                "evaluator pass".into(),
                t.both_pass.to_string(),
                t.evaluator_pass_people_fail.to_string(),
            ],
            vec![
                "evaluator fail".into(),
                t.evaluator_fail_people_pass.to_string(),
                t.both_fail.to_string(),
            ],
        ],
    ));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    match &a.kappa {
        Some(k) => s.push_str(&format!(
            "agreement {:.1}% (chance alone: {:.1}%); Cohen's kappa {:.3}, {} CI {:.3} to {:.3}\n",
            k.agreement * 100.0,
            k.chance_agreement * 100.0,
            k.kappa,
            crate::stats::confidence_text(a.confidence),
            k.ci[0],
            k.ci[1]
        )),
        None => s.push_str(
            "Cohen's kappa: undefined (the evaluator and people each gave every row the same verdict)\n",
        ),
    }
    if a.unjudged > 0 {
        s.push_str(&format!(
            "not counted: {} labelled row(s) the evaluator could not judge (an errored answer or a failed judge call)\n",
            a.unjudged
        ));
    }
    if a.unmatched_labels > 0 {
        s.push_str(&format!(
            "not counted: {} label(s) naming a row the experiment does not have\n",
            a.unmatched_labels
        ));
    }
    if !a.disagreements.is_empty() && rows > 0 {
        s.push_str(&format!("disagreements ({}):\n", a.disagreements.len()));
        let verdict = |pass: bool| if pass { "pass" } else { "fail" }.to_string();
        s.push_str(&table(
            &["ROW", "PEOPLE", "EVALUATOR", "EVALUATOR'S REASON"],
            a.disagreements
                .iter()
                .take(rows)
                .map(|d| {
                    vec![
                        d.row_id.clone(),
                        verdict(d.people),
                        verdict(d.evaluator),
                        excerpt(&d.reason, 60),
                    ]
                })
                .collect(),
        ));
        if !s.ends_with('\n') {
            s.push('\n');
        }
    }
    s
}
