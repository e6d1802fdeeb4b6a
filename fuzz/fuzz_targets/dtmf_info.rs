//! A SIP INFO `application/dtmf-relay` body through the objection-key parser.
//!
//! Property: the parser only yields DTMF keys, and the key it yields is the one the body's
//! `Signal=` line names (so upper- and lower-case bodies agree).
#![no_main]

use calltrackd::media::dtmf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(key) = dtmf::parse_info(data) else {
        return;
    };
    assert!(
        matches!(key, '0'..='9' | '*' | '#' | 'A'..='D'),
        "not a DTMF key"
    );
    if let Ok(text) = std::str::from_utf8(data) {
        let upper = text.to_ascii_uppercase();
        assert_eq!(
            dtmf::parse_info(upper.as_bytes()),
            Some(key),
            "case changed the key"
        );
    }
});
