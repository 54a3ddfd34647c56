//! `runner export` / `runner import`: prompts as reviewable files and back (the format is
//! `workflow::archive`'s). It holds no rule of its own: the layout and its checks are
//! `workflow::archive`'s and the all-or-none import the store's; this file opens the store and says
//! what was done.

use super::{Context, check_prompt_name, out};
use crate::cli::{ExportArgs, ImportArgs};
use crate::error::Result;
use crate::workflow::archive;

pub fn export(args: ExportArgs, ctx: &Context) -> Result<()> {
    for name in &args.names {
        check_prompt_name(name)?;
    }
    let store = ctx.store_for_reading()?;
    let names: Vec<String> = if args.names.is_empty() {
        // Archived prompts too: an export keeps everything the store holds.
        let mut names: Vec<String> = store.prompts()?.into_iter().map(|(p, _)| p.name).collect();
        names.extend(store.archived_prompts()?);
        names
    } else {
        args.names.clone()
    };
    // Read everything first, so an unknown name fails before any file is written.
    let archives = names
        .iter()
        .map(|name| store.archive(name))
        .collect::<Result<Vec<_>, _>>()?;
    archive::write(&args.dir, &archives)?;
    let versions: usize = archives.iter().map(|a| a.versions.len()).sum();
    out(&format!(
        "exported {} prompt(s), {versions} version(s) to {}",
        archives.len(),
        args.dir.display()
    ));
    Ok(())
}

pub fn import(args: ImportArgs, ctx: &Context) -> Result<()> {
    // Every file is read and checked before the store is opened: a bad export writes nothing.
    let mut archives = archive::read(&args.dir, &ctx.config()?.tag_policy())?;
    // Oldest first, so the store lists them newest first as the exporting one did.
    archives.sort_by(|a, b| (&a.created_at, &a.name).cmp(&(&b.created_at, &b.name)));
    let store = ctx.store()?;
    store.import(&archives)?;
    let versions: usize = archives.iter().map(|a| a.versions.len()).sum();
    out(&format!(
        "imported {} prompt(s), {versions} version(s) from {}",
        archives.len(),
        args.dir.display()
    ));
    Ok(())
}
