//! `runner store copy`: a whole store into an empty one, between any two backends. It holds no step
//! of the copy: what is copied and in what order is `store::copy`'s; this file only opens both
//! stores and says what was copied.

use super::out;
use crate::cli::{StoreCommand, StoreCopyArgs};
use crate::error::{Error, Result};
use crate::store;

pub fn run(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Copy(args) => copy(args),
    }
}

fn copy(args: StoreCopyArgs) -> Result<()> {
    if store::display_location(&args.from) == store::display_location(&args.to) {
        return Err(Error::invalid("--from and --to name the same store")
            .with_hint("copy into a new file or an empty database"));
    }
    let from = store::open_for_reading(&args.from)?;
    let to = store::open(&args.to)?;
    let copied = store::copy::copy(&*from, &*to)?;
    out(&format!(
        "copied {} prompt(s), {} version(s), {} tag event(s), {} experiment(s), {} result(s), \
         {} cached answer(s), {} span(s), {} annotation(s), {} lookup count(s), {} dataset \
         version(s) and {} experiment(s) of the Phoenix client from {} to {}",
        copied.prompts,
        copied.versions,
        copied.events,
        copied.experiments,
        copied.results,
        copied.cached,
        copied.spans,
        copied.annotations,
        copied.lookups,
        copied.dataset_versions,
        copied.task_experiments,
        from.location(),
        to.location()
    ));
    Ok(())
}
