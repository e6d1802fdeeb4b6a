//! Coarse caller region: the country code and a few leading digits of the national significant
//! number (ITU-T E.164 §6: the leading NSN digits are the national destination code, usually a
//! city or network).
//!
//! The region is capped at the NSN's length minus three digits. Without the cap, a configured
//! depth of, say, 8 digits on a short number would publish all but the last digit or two, and a
//! "region" that narrows a caller to a hundred numbers is a thinly veiled number. Keeping at
//! least three digits hidden leaves at least a thousand candidates, and for real area codes the
//! cap never bites.

use super::number::E164;

/// Digits of the national significant number always left out of a region.
const HIDDEN_DIGITS: usize = 3;

/// `"+49"` for 0 digits, `"+49 30"` for 2, never more than the NSN length minus three digits.
pub fn region(number: &E164, national_digits: u8) -> String {
    let nsn = number.national_number();
    let shown = usize::from(national_digits).min(nsn.len().saturating_sub(HIDDEN_DIGITS));
    match nsn.get(..shown) {
        Some(prefix) if !prefix.is_empty() => format!("+{} {prefix}", number.country_code()),
        _ => format!("+{}", number.country_code()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn n(s: &str) -> E164 {
        s.parse().unwrap()
    }

    #[test]
    fn region_shows_country_code_and_leading_digits() {
        let berlin = n("+4930123456");
        assert_eq!(region(&berlin, 0), "+49");
        assert_eq!(region(&berlin, 2), "+49 30");
        assert_eq!(region(&n("+16502530000"), 3), "+1 650");
    }

    #[test]
    fn region_is_capped_to_hide_at_least_three_digits() {
        let berlin = n("+4930123456"); // NSN 30123456, 8 digits
        assert_eq!(region(&berlin, 5), "+49 30123");
        assert_eq!(region(&berlin, 6), "+49 30123");
        assert_eq!(region(&berlin, u8::MAX), "+49 30123");
    }
}
