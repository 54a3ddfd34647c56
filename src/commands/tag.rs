//! `runner tag …` and `runner rollback`: move tags, list them, read their history. It holds no rule
//! of its own: the tag policy is checked inside the store's tag write, with the change
//! `Context::guarded_change` builds, and the tables are `report`'s.

use super::{Context, check_prompt_name, check_tag_name, out, out_json};
use crate::cli::{NameArgs, RollbackArgs, TagCommand, TagDeleteArgs, TagHistoryArgs, TagSetArgs};
use crate::error::{Error, Result};
use crate::model::VersionRef;
use crate::report;
use crate::store::TagOutcome;

pub fn run(command: TagCommand, ctx: &Context) -> Result<()> {
    match command {
        TagCommand::Set(args) => set(args, ctx),
        TagCommand::List(args) => list(args, ctx),
        TagCommand::Delete(args) => delete(args, ctx),
        TagCommand::History(args) => history(args, ctx),
    }
}

fn set(args: TagSetArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    check_tag_name(&args.tag)?;
    let target = match (args.version, args.version_id) {
        (Some(seq), _) if seq < 1 => {
            return Err(Error::invalid(format!(
                "invalid version number {seq}: versions are numbered from 1"
            )));
        }
        (Some(seq), _) => VersionRef::Seq(seq),
        (None, Some(id)) => VersionRef::Id(id),
        (None, None) => {
            return Err(Error::invalid(
                "tag set needs --version N or --version-id ID",
            ));
        }
    };
    let change = ctx.guarded_change(args.force, args.message)?;
    let store = ctx.store()?;
    let outcome = store.set_tag(&args.name, &args.tag, &target, &change)?;
    out(&match outcome {
        TagOutcome::Changed(event) => report::tag_event_line(&event),
        TagOutcome::Unchanged(tag) => format!(
            "{} {} already points at v{} (nothing changed)",
            tag.prompt, tag.name, tag.version_seq
        ),
    });
    Ok(())
}

fn list(args: NameArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let store = ctx.store_for_reading()?;
    let tags = store.tags(&args.name)?;
    if args.json {
        out_json(&tags)
    } else {
        out(&report::tags_table(&tags));
        Ok(())
    }
}

fn delete(args: TagDeleteArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    check_tag_name(&args.tag)?;
    let change = ctx.guarded_change(args.force, args.message)?;
    let store = ctx.store()?;
    let event = store.delete_tag(&args.name, &args.tag, &change)?;
    out(&report::tag_event_line(&event));
    Ok(())
}

fn history(args: TagHistoryArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    if let Some(tag) = &args.tag {
        check_tag_name(tag)?;
    }
    let store = ctx.store_for_reading()?;
    let events = store.history(&args.name, args.tag.as_deref())?;
    if args.json {
        out_json(&events)
    } else {
        out(&report::history_table(&events));
        Ok(())
    }
}

pub fn rollback(args: RollbackArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    check_tag_name(&args.tag)?;
    let change = ctx.guarded_change(args.force, args.message)?;
    let store = ctx.store()?;
    let event = store.rollback_tag(&args.name, &args.tag, &change)?;
    out(&report::tag_event_line(&event));
    Ok(())
}
