//! The configuration tree: one typed structure mirroring the modules, loaded from a TOML file with
//! unknown keys refused, then validated. Every error names the key path and the line it came from.

mod load;
mod model;
pub mod secret;
mod validate;

#[cfg(test)]
mod defaults_tests;

pub use load::{ConfigError, Problem, load, load_with_warnings, parse};
pub use model::*;
