//! Using runner as a library: open the store and render the `production` version of a prompt
//! through the same code the CLI uses.
//!
//!     cargo run --example render_production -- runner.db customer_support_greeting company_name=Acme query=Hi

use runner::model::{JsonObject, VersionRef};
use runner::template::CompiledTemplate;
use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [db, name, assignments @ ..] = args.as_slice() else {
        return Err("usage: render_production STORE PROMPT [KEY=VALUE]...".into());
    };
    let store = runner::store::open_for_reading(Path::new(db))?;
    let version = store.version(name, &VersionRef::Tag("production".into()))?;
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
