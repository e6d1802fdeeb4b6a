//! Number normalization (national, `00`, `+`, `tel:` phone-context forms) to E.164.
//!
//! Input: a region-choice byte, then the number text. Properties: a result is canonical
//! E.164 (`+`, 1–15 digits, round-trips through `FromStr`), and normalization is idempotent:
//! the result normalizes to itself under every region and reading.
#![no_main]

use calltrackd::call::{E164, Normalizer};
use libfuzzer_sys::fuzz_target;

const REGIONS: [&str; 6] = ["DE", "AT", "CH", "FR", "GB", "US"];

fuzz_target!(|data: &[u8]| {
    let Some((&choice, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    let region = REGIONS[usize::from(choice & 0x7F) % REGIONS.len()];
    let without_plus = choice & 0x80 != 0;
    let normalizer = Normalizer::new(region)
        .expect("a region with metadata")
        .assume_international_without_plus(without_plus);
    let Ok(number) = normalizer.normalize(text) else {
        return;
    };
    let canonical = number.as_str();
    let digits = canonical.strip_prefix('+').expect("E.164 starts with +");
    assert!(
        !digits.is_empty() && digits.len() <= 15 && digits.bytes().all(|b| b.is_ascii_digit()),
        "not E.164 digits"
    );
    assert_eq!(
        canonical.parse::<E164>().as_ref(),
        Ok(&number),
        "FromStr disagrees"
    );
    for other in REGIONS {
        let again = Normalizer::new(other)
            .expect("a region with metadata")
            .assume_international_without_plus(without_plus)
            .normalize(canonical);
        assert_eq!(
            again.as_ref(),
            Ok(&number),
            "normalization is not idempotent"
        );
    }
});
