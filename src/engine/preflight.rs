//! The check made before a run is planned: every template variable has a column, a dotted
//! field, a `--column` rename or a `--var` to come from. It is pure: it reads the dataset's
//! description, never the dataset itself, the store or the endpoint.

use crate::dataset;
use crate::template::CompiledTemplate;

/// Template variables no column or constant supplies.
#[derive(Debug, Clone, PartialEq)]
pub struct Missing {
    pub variables: Vec<String>,
    pub available: Vec<String>,
}

/// Checks, before any request, that every template variable has a source: a column (or a
/// dotted field of a JSONL row), a `--column` rename of an existing column, or a `--var`.
pub fn preflight(
    template: &CompiledTemplate,
    info: &dataset::DatasetInfo,
    settings: &crate::model::RunSettings,
) -> Result<(), Missing> {
    let has_column = |name: &str| info.columns.iter().chain(&info.fields).any(|c| c == name);
    let variables: Vec<String> = template
        .variables()
        .iter()
        .filter(|var| {
            let constant = settings.vars.contains_key(var.as_str());
            let renamed = settings
                .columns
                .iter()
                .any(|(v, column)| v == *var && has_column(column));
            !(constant || renamed || has_column(var))
        })
        .cloned()
        .collect();
    if variables.is_empty() {
        Ok(())
    } else {
        Err(Missing {
            variables,
            available: info.columns.clone(),
        })
    }
}

/// A template variable read from a column some rows leave empty: those rows render it as
/// nothing, which is rarely what was meant.
#[derive(Debug, Clone, PartialEq)]
pub struct EmptyInput {
    pub variable: String,
    pub column: String,
    pub rows: usize,
}

/// The variables that come from a column with empty cells (a `--var` constant is never empty).
pub fn empty_inputs(
    template: &CompiledTemplate,
    info: &dataset::DatasetInfo,
    settings: &crate::model::RunSettings,
) -> Vec<EmptyInput> {
    template
        .variables()
        .iter()
        .filter(|var| !settings.vars.contains_key(var.as_str()))
        .filter_map(|var| {
            let column = settings
                .columns
                .iter()
                .find(|(v, _)| v == var)
                .map_or(var.as_str(), |(_, column)| column.as_str());
            let (_, rows) = info.empty_cells.iter().find(|(c, _)| c == column)?;
            Some(EmptyInput {
                variable: var.clone(),
                column: column.to_string(),
                rows: *rows,
            })
        })
        .collect()
}
