//! Using runner as a library: open the store and render the `production` version of a prompt
//! through the same code the CLI uses. Under a canary rollout of `production` it gets the
//! version `runner serve` would serve: with `--unit U` the unit's arm (the same as the server
//! gives `X-Runner-Unit: U`), without one a fresh draw.
//!
//!     cargo run --example render_production -- runner.db customer_support_greeting company_name=Acme query=Hi
//!     cargo run --example render_production -- runner.db customer_support_greeting --unit user-7 query=Hi

use runner::model::JsonObject;
use runner::template::CompiledTemplate;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, name, rest @ ..] = args.as_slice() else {
        return Err("usage: render_production STORE PROMPT [--unit U] [KEY=VALUE]...".into());
    };
    let (unit, assignments) = match rest {
        [flag, unit, assignments @ ..] if flag == "--unit" => (Some(unit.as_str()), assignments),
        _ => (None, rest),
    };
    let store = runner::store::open_for_reading(Path::new(db))?;
    let served = runner::workflow::canary::lookup(&*store, name, "production", unit)?;
    if let Some((rollout, arm)) = &served.rollout {
        eprintln!(
            "rollout {rollout}: the {} arm, v{}",
            arm.as_str(),
            served.version.seq
        );
    }
    let version = served.version;
    let mut vars = JsonObject::new();
    for assignment in assignments {
        let (key, value) = assignment
            .split_once('=')
            .ok_or("variables are KEY=VALUE")?;
        vars.insert(key.into(), value.into());
    }
    let template = CompiledTemplate::compile(version.format, &version.template)?;
    for message in template.render(&vars)? {
        println!("[{}] {}", message.role, message.content);
    }
    Ok(())
}
