//! Config text through TOML parsing, the typed tree and validation (`check-config`'s path).
//!
//! Property: every problem reported names a line that exists in the text.
#![no_main]

use calltrackd::config::{self, ConfigError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count().max(1);
    match config::parse(text) {
        Ok(_) | Err(ConfigError::Read { .. }) => {}
        Err(ConfigError::Invalid(problems)) => {
            assert!(!problems.is_empty(), "an invalid config without a problem");
            for problem in problems {
                if let Some(line) = problem.line {
                    assert!(
                        (1..=lines + 1).contains(&line),
                        "problem on a line not in the text"
                    );
                }
            }
        }
    }
});
