//! runner: a prompt store, experiment runner, comparison and promotion gate in one library.

pub mod model;
pub mod store;
pub mod template;
