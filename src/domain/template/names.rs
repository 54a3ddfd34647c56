//! Variable names: the spelling a placeholder's name must have (dotted identifiers) and how a
//! name is looked up in a row's values (an exact key first, then a walk through nested
//! objects). It must not parse template text or render anything.

use serde_json::Value;

use crate::model::JsonObject;

/// Looks a (possibly dotted) name up in vars.
///
/// An exact key wins because flat sources such as CSV columns may literally be named `a.b`;
/// only then is the name walked through nested objects.
pub fn lookup<'a>(vars: &'a JsonObject, name: &str) -> Option<&'a Value> {
    if let Some(value) = vars.get(name) {
        return Some(value);
    }
    let (first, rest) = name.split_once('.')?;
    let mut current = vars.get(first)?;
    for segment in rest.split('.') {
        current = current.as_object()?.get(segment)?;
    }
    Some(current)
}

/// Segments of `[A-Za-z_][A-Za-z0-9_-]*` joined by `.`.
pub(super) fn is_dotted_identifier(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|segment| {
            let mut bytes = segment.bytes();
            matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
                && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

pub(super) fn invalid_name(name: &str) -> String {
    format!("invalid variable name {name:?} (expected names like customer.name)")
}
