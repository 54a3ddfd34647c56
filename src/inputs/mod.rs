//! What people write, read with runner's rules: values typed on the command line (`input`),
//! the project file `runner.toml` (`config`), prompt files (`prompt_file`) and datasets in CSV
//! or JSONL (`dataset`). Every failure is an input error that names the flag, file, line or row.
//!
//! These modules read files and check them; they send nothing over the network and write
//! nothing to the store.

pub mod config;
pub mod dataset;
pub mod input;
pub mod prompt_file;
