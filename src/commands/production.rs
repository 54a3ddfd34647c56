//! `runner production`: one prompt's production traffic per version, and `production compare`:
//! two versions' traffic side by side. It reads the window from the flags and hands it to
//! `workflow::production`; the numbers are `domain::production`'s and the text `report`'s.

use super::settings::instant;
use super::{Context, check_prompt_name, check_tag_name, confidence, out, out_json};
use crate::cli::{ProductionArgs, ProductionCommand, ProductionCompareArgs, WindowArgs};
use crate::error::{Error, Result, exit};
use crate::report;
use crate::workflow::production::{self, Window};

pub fn run(args: ProductionArgs, ctx: &Context) -> Result<u8> {
    if let Some(ProductionCommand::Compare(compare)) = args.command {
        return run_compare(compare, ctx);
    }
    let Some(prompt) = args.prompt else {
        return Err(Error::invalid("runner production needs a prompt name")
            .with_hint("runner production PROMPT [--since 24h], or runner production compare PROMPT --versions 3,4"));
    };
    check_prompt_name(&prompt)?;
    if let Some(tag) = &args.tag {
        check_tag_name(tag)?;
    }
    let (since_ms, until_ms) = window(&args.window)?;
    let confidence = confidence(args.window.confidence, ctx)?;
    let store = ctx.store_for_reading()?;
    let prices = ctx.config()?.prices();
    let report = production::gather(
        &*store,
        &prompt,
        &Window {
            since_ms,
            until_ms,
            tag: args.tag.clone(),
            experiments: args.window.experiments,
        },
        &prices,
        confidence,
    )?;
    if args.json {
        out_json(&report)?;
    } else {
        out(&report::production_text(&report, confidence));
    }
    Ok(exit::OK)
}

fn run_compare(args: ProductionCompareArgs, ctx: &Context) -> Result<u8> {
    check_prompt_name(&args.prompt)?;
    let [baseline, candidate] = args.versions.as_slice() else {
        return Err(Error::invalid(format!(
            "--versions takes two versions, baseline then candidate, not {}",
            args.versions.len()
        ))
        .with_hint("for example --versions 3,4 or --versions production,canary"));
    };
    let (since_ms, until_ms) = window(&args.window)?;
    let confidence = confidence(args.window.confidence, ctx)?;
    let store = ctx.store_for_reading()?;
    let comparison = production::compare(
        &*store,
        &args.prompt,
        (baseline.trim(), candidate.trim()),
        &Window {
            since_ms,
            until_ms,
            tag: None,
            experiments: args.window.experiments,
        },
        confidence,
    )?;
    if args.json {
        out_json(&comparison)?;
    } else {
        out(&report::traffic_comparison_text(&comparison));
    }
    Ok(exit::OK)
}

/// Two versions' production traffic from `since` until now, for `runner compare --production`.
pub fn beside(
    ctx: &Context,
    prompt: &str,
    [baseline, candidate]: [&String; 2],
    since: &str,
    confidence: f64,
) -> Result<crate::production::Beside> {
    let now = crate::trace::now_ms();
    let since_ms = instant("--production", since, now)?;
    if since_ms >= now {
        return Err(
            Error::invalid(format!("--production {since} is not in the past"))
                .with_hint("for example --production 7d"),
        );
    }
    let store = ctx.store_for_reading()?;
    let report = production::gather(
        &*store,
        prompt,
        &Window {
            since_ms,
            until_ms: now,
            tag: None,
            experiments: false,
        },
        &ctx.config()?.prices(),
        confidence,
    )?;
    let side = |id: &String| {
        report
            .versions
            .iter()
            .find(|v| &v.version_id == id)
            .cloned()
    };
    Ok(crate::production::Beside {
        since: report.since.clone(),
        until: report.until.clone(),
        baseline: side(baseline),
        candidate: side(candidate),
    })
}

/// `--since` and `--until` as milliseconds since the epoch.
fn window(args: &WindowArgs) -> Result<(i64, i64)> {
    let now = crate::trace::now_ms();
    let since = instant("--since", &args.since, now)?;
    let until = match &args.until {
        None => now,
        Some(text) => instant("--until", text, now)?,
    };
    if since >= until {
        return Err(Error::invalid(format!(
            "the window is empty: --since {} is not before --until {}",
            args.since,
            args.until.as_deref().unwrap_or("now")
        ))
        .with_hint("--since names the older end, for example --since 7d --until 1d"));
    }
    Ok((since, until))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_durations_back_or_times() {
        let now = 1_800_000_000_000;
        assert_eq!(instant("--since", "24h", now).unwrap(), now - 86_400_000);
        assert_eq!(instant("--since", "90", now).unwrap(), now - 90_000);
        assert_eq!(
            instant("--since", "2026-12-01T00:00:00Z", now).unwrap(),
            1_796_083_200_000
        );
        let e = instant("--until", "yesterday", now).unwrap_err();
        assert!(e.to_string().contains("--until 'yesterday'"), "{e}");
    }
}
