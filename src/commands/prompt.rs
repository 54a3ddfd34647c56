//! `runner prompt …`: create, update, show, list, versions, diff, render. It holds no rule of its
//! own: values are checked by `input`, templates by `template`, version numbers and the tag policy
//! by the store, and the tables are `report`'s.

use super::{
    Context, apply_assignments, check_prompt_name, check_tag_name, out, out_json, parse_value,
    read_structured, read_text, split_assignment, version_ref,
};
use crate::cli::{
    CreateArgs, DiffArgs, ListArgs, NameArgs, PromptCommand, RenderArgs, ShowArgs, UpdateArgs,
    VersionOptions,
};
use crate::error::{Error, Result};
use crate::model::{
    JsonObject, Message, NewVersion, PromptVersion, Template, TemplateFormat, VersionRef,
};
use crate::report;
use crate::template::CompiledTemplate;
use serde_json::Value;

pub fn run(command: PromptCommand, ctx: &Context) -> Result<()> {
    match command {
        PromptCommand::Create(args) => create(args, ctx),
        PromptCommand::Update(args) => update(args, ctx),
        PromptCommand::Show(args) => show(args, ctx),
        PromptCommand::List(args) => list(args, ctx),
        PromptCommand::Versions(args) => versions(args, ctx),
        PromptCommand::Restore(args) => restore(args, ctx),
        PromptCommand::Diff(args) => diff(args, ctx),
        PromptCommand::Render(args) => render(args, ctx),
    }
}

/// The parts of a version given on the command line, read and checked before the store opens.
struct Given {
    template: Option<Template>,
    format: Option<TemplateFormat>,
    options: VersionOptions,
}

fn read_given(options: VersionOptions) -> Result<Given> {
    for tag in &options.tags {
        check_tag_name(tag)?;
    }
    let template = if let Some(text) = &options.template {
        Some(Template::Str(text.clone()))
    } else if let Some(path) = &options.template_file {
        Some(Template::Str(read_text(path, "template file")?))
    } else if let Some(path) = &options.messages_file {
        let messages: Vec<Message> = read_structured(path, "messages file").map_err(|e| {
            e.with_hint(r#"a messages file is a list of messages: [{"role": "system", "content": "..."}, {"role": "user", "content": "{{query}}"}] (JSON, or YAML for .yaml / .yml)"#)
        })?;
        Some(Template::Chat(messages))
    } else {
        None
    };
    let format = options
        .format
        .as_deref()
        .map(|f| f.parse::<TemplateFormat>().map_err(Error::invalid))
        .transpose()?;
    // Parse every assignment now so a bad one fails before the store is touched.
    apply_assignments("--param", &mut JsonObject::new(), &options.params)?;
    apply_assignments("--meta", &mut JsonObject::new(), &options.meta)?;
    Ok(Given {
        template,
        format,
        options,
    })
}

/// Builds a version from what was given on top of `base` (the latest version, for update).
fn build(given: &Given, base: Option<&PromptVersion>, author: &str) -> Result<NewVersion> {
    let template = given
        .template
        .clone()
        .or_else(|| base.map(|b| b.template.clone()))
        .ok_or_else(|| {
            Error::invalid("a new prompt needs a template")
                .with_hint("pass --template TEXT, --template-file FILE or --messages-file FILE")
        })?;
    let format = given
        .format
        .or(base.map(|b| b.format))
        .unwrap_or(TemplateFormat::Mustache);
    CompiledTemplate::compile(format, &template)?;
    let mut params = base.map(|b| b.params.clone()).unwrap_or_default();
    apply_assignments("--param", &mut params, &given.options.params)?;
    let mut metadata = base.map(|b| b.metadata.clone()).unwrap_or_default();
    apply_assignments("--meta", &mut metadata, &given.options.meta)?;
    Ok(NewVersion {
        format,
        template,
        model: given
            .options
            .model
            .clone()
            .or_else(|| base.and_then(|b| b.model.clone())),
        provider: base.and_then(|b| b.provider.clone()),
        params,
        metadata,
        description: given
            .options
            .description
            .clone()
            .or_else(|| base.and_then(|b| b.description.clone())),
        message: given.options.message.clone(),
        author: author.to_string(),
    })
}

/// The change behind `--tag` on create / update, under the protected-tag rule.
fn tag_change(given: &Given, ctx: &Context) -> Result<crate::store::TagChange> {
    ctx.guarded_change(given.options.force, given.options.message.clone())
}

fn create(args: CreateArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let given = read_given(args.version)?;
    let version = build(&given, None, &ctx.author)?;
    let change = tag_change(&given, ctx)?;
    let store = ctx.store()?;
    let created = store.create_prompt(&args.name, version, &given.options.tags, &change)?;
    out(&report::version_created(
        "created",
        &created,
        &given.options.tags,
    ));
    Ok(())
}

fn restore(args: NameArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    ctx.store()?.restore_prompt(&args.name, &ctx.author)?;
    out(&format!("restored prompt '{}'", args.name));
    Ok(())
}

fn update(args: UpdateArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let given = read_given(args.version)?;
    let change = tag_change(&given, ctx)?;
    let store = ctx.store()?;
    let created = crate::store::append_version(
        &*store,
        &args.name,
        |latest| {
            let version = build(&given, Some(latest), &ctx.author)?;
            let hash = crate::model::content_hash(
                version.format,
                &version.template,
                version.model.as_deref(),
                &version.params,
                &version.metadata,
            );
            let same = hash == latest.content_hash
                && version.description == latest.description
                && version.provider == latest.provider;
            if same && !args.allow_same {
                return Err(Error::invalid(format!(
                    "{} v{} already holds this content: nothing to update",
                    args.name, latest.seq
                ))
                .with_hint(format!(
                    "to move a tag: runner tag set {} TAG --version {}; to record the same \
                     content again as a new version: --allow-same",
                    args.name, latest.seq
                )));
            }
            Ok(version)
        },
        &given.options.tags,
        &change,
    )?;
    out(&report::version_created(
        "updated",
        &created,
        &given.options.tags,
    ));
    Ok(())
}

fn show(args: ShowArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let reference = version_ref(&args.selector)?;
    let store = ctx.store_for_reading()?;
    let version = store.version(&args.name, &reference)?;
    let tags = store
        .tags_by_version(&args.name)?
        .remove(&version.id)
        .unwrap_or_default();
    let variables = variables_of(&version);
    if args.json {
        out_json(&report::version_json(&version, &tags, &variables))
    } else {
        out(&report::version_text(&version, &tags, &variables));
        Ok(())
    }
}

fn variables_of(version: &PromptVersion) -> Vec<String> {
    // Stored templates were checked when written; a failure here would mean a hand-edited store,
    // and showing the version matters more than listing its variables.
    CompiledTemplate::compile(version.format, &version.template)
        .map(|t| t.variables().to_vec())
        .unwrap_or_default()
}

fn list(args: ListArgs, ctx: &Context) -> Result<()> {
    if let Some(tag) = &args.tag {
        check_tag_name(tag)?;
    }
    let mut wanted_meta = Vec::new();
    for text in &args.meta {
        let (key, raw) = split_assignment("--meta", text)?;
        wanted_meta.push((key.to_string(), parse_value("--meta", key, raw)?));
    }
    let needle = args.search.as_deref().map(str::to_lowercase);
    let store = ctx.store_for_reading()?;
    let prompts: Vec<_> = store
        .prompts()?
        .into_iter()
        .filter(|(prompt, latest)| {
            let found = needle.as_ref().is_none_or(|n| {
                prompt.name.to_lowercase().contains(n)
                    || prompt
                        .description
                        .as_deref()
                        .is_some_and(|d| d.to_lowercase().contains(n))
            });
            let tagged = args.tag.as_ref().is_none_or(|t| prompt.tags.contains(t));
            let meta = wanted_meta
                .iter()
                .all(|(key, want)| latest.metadata.get(key) == Some(want));
            found && tagged && meta
        })
        .collect();
    if args.json {
        out_json(&report::prompts_json(&prompts))
    } else {
        out(&report::prompts_table(&prompts));
        Ok(())
    }
}

fn versions(args: NameArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let store = ctx.store_for_reading()?;
    let versions = store.versions(&args.name)?;
    let tags = store.tags_by_version(&args.name)?;
    if args.json {
        out_json(&report::versions_json(&versions, &tags))
    } else {
        out(&report::versions_table(&versions, &tags));
        Ok(())
    }
}

fn diff(args: DiffArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let store = ctx.store_for_reading()?;
    let from = store.version(&args.name, &VersionRef::Any(args.from.clone()))?;
    let to = store.version(&args.name, &VersionRef::Any(args.to.clone()))?;
    let diff = report::VersionDiff::between(&from, &to);
    if args.json {
        out_json(&diff)
    } else {
        out(&diff.text());
        Ok(())
    }
}

fn render(args: RenderArgs, ctx: &Context) -> Result<()> {
    check_prompt_name(&args.name)?;
    let reference = version_ref(&args.selector)?;
    let mut vars = match &args.vars_file {
        Some(path) => match crate::json::parse(&read_text(path, "variables file")?) {
            Ok(Value::Object(map)) => map,
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "variables file {} must hold one JSON object",
                    path.display()
                ))
                .with_hint(
                    r#"for example {"company_name": "Acme", "query": "Where is my order?"}"#,
                ));
            }
            Err(e) => {
                return Err(Error::invalid(format!(
                    "invalid JSON in variables file {}: {e}",
                    path.display()
                )));
            }
        },
        None => JsonObject::new(),
    };
    for text in &args.vars {
        let (key, value) = split_assignment("--var", text)?;
        vars.insert(key.to_string(), Value::String(value.to_string()));
    }
    let store = ctx.store_for_reading()?;
    let version = store.version(&args.name, &reference)?;
    let compiled = CompiledTemplate::compile(version.format, &version.template)?;
    let messages = compiled.render(&vars)?;
    // A variable given that the template does not use is a mistake that renders silently:
    // most often `{name}` written in a mustache template (or `{{name}}` in an f-string one).
    let unused: Vec<&String> = vars
        .keys()
        .filter(|k| !compiled.variables().contains(*k))
        .collect();
    if !unused.is_empty() {
        let text = serde_json::to_string(&version.template).unwrap_or_default();
        let other = match version.format {
            crate::model::TemplateFormat::Mustache => unused
                .iter()
                .any(|k| text.contains(&format!("{{{k}}}")))
                .then_some("it holds {NAME}, an f-string placeholder: an update with --format fstring reads it as one"),
            crate::model::TemplateFormat::FString => unused
                .iter()
                .any(|k| text.contains(&format!("{{{{{k}}}}}")))
                .then_some("it holds {{NAME}}, a mustache placeholder: an update with --format mustache reads it as one"),
            _ => None,
        };
        crate::note!(
            "warning: {} v{} uses no variable {} ({} template{}){}",
            args.name,
            version.seq,
            unused
                .iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", "),
            format!("{:?}", version.format).to_lowercase(),
            if compiled.variables().is_empty() {
                " without variables".to_string()
            } else {
                format!(": {}", compiled.variables().join(", "))
            },
            other.map(|o| format!("; {o}")).unwrap_or_default()
        );
    }
    if args.json {
        out_json(&report::rendered_json(&version, &messages))
    } else {
        out(&report::rendered_text(&version, &messages));
        Ok(())
    }
}
