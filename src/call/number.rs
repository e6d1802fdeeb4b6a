//! E.164 numbers (ITU-T E.164) and the normalizer that turns what carriers write into them.
//!
//! Carriers put numbers in SIP user parts (RFC 3261 §19.1.1, `user=phone` per §19.1.6), in
//! `tel:` URIs (RFC 3966 §3, §5.1.5 `phone-context`) and in CDR columns, in national, `00`-prefixed
//! or `+` form and with visual separators. Everything downstream (pseudonyms, regions, events)
//! needs one canonical form, so it is decided here, once.
//!
//! We sanitize the text ourselves (only `+`, ASCII digits and visual separators survive) before
//! handing digits to the `phonenumber` crate: its parser then never sees letters or header text,
//! and our error messages can stay in fixed words that never echo the number.

use std::fmt;
use std::str::FromStr;

use phonenumber::country::{Id, Source};
use phonenumber::{Mode, PhoneNumber};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest raw text we look at. A `tel:` URI with a domain `phone-context` fits; anything longer is
/// not a number a carrier sends, and bounding it keeps the parser's work bounded.
const MAX_INPUT: usize = 96;
/// E.164 §6.1: at most 15 digits including the country code.
const MAX_E164_DIGITS: usize = 15;
/// 15 digits plus a two-digit international prefix such as `00`, or `011` with a one-digit code.
const MAX_RAW_DIGITS: usize = 18;

/// Why a number was refused. Messages are fixed words: they never contain the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NumberError {
    #[error("number is empty")]
    Empty,
    #[error("number is longer than any international number")]
    TooLong,
    #[error("number contains characters other than digits, a leading plus and separators")]
    InvalidCharacter,
    #[error("number contains no digits")]
    NoDigits,
    #[error("number could not be parsed")]
    Unparseable,
    #[error("number is not valid in its numbering plan")]
    Invalid,
    #[error("default region is not a known ISO 3166 alpha-2 region")]
    UnknownRegion,
    #[error("value is not a canonical international number")]
    NotE164,
}

/// A validated number in canonical E.164 form: `+`, country code, national significant number.
///
/// `Debug` shows only the country code, so a stray `{:?}` in a log line cannot leak a caller's
/// number. There is deliberately no `Display`: use [`E164::as_str`] where the digits are meant.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct E164 {
    text: String,
    cc: u16,
    cc_len: usize,
}

impl E164 {
    /// The canonical text, e.g. `+4930123456`.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The ITU country calling code, e.g. `49`.
    pub fn country_code(&self) -> u16 {
        self.cc
    }

    /// The national significant number (digits after the country code), e.g. `30123456`.
    pub fn national_number(&self) -> &str {
        self.text.get(1 + self.cc_len..).unwrap_or_default()
    }

    fn from_parsed(number: &PhoneNumber) -> Result<Self, NumberError> {
        let text = number.format().mode(Mode::E164).to_string();
        let cc = number.code().value();
        let cc_text = cc.to_string();
        let digits = text.strip_prefix('+').ok_or(NumberError::NotE164)?;
        let shape_ok = !digits.is_empty()
            && digits.len() <= MAX_E164_DIGITS
            && digits.len() > cc_text.len()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && digits.starts_with(&cc_text);
        if !shape_ok {
            return Err(NumberError::NotE164);
        }
        Ok(Self {
            cc_len: cc_text.len(),
            cc,
            text,
        })
    }
}

impl fmt::Debug for E164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "E164(+{} …)", self.cc)
    }
}

/// Parses text that is already canonical E.164 (stored events, config). It checks the shape and
/// the country code but not current numbering-plan validity, so events written under older
/// metadata still load.
impl FromStr for E164 {
    type Err = NumberError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('+').ok_or(NumberError::NotE164)?;
        if digits.is_empty()
            || digits.len() > MAX_E164_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(NumberError::NotE164);
        }
        let parsed = phonenumber::parse(None, s).map_err(|_| NumberError::NotE164)?;
        let number = Self::from_parsed(&parsed)?;
        if number.text != s {
            return Err(NumberError::NotE164);
        }
        Ok(number)
    }
}

impl Serialize for E164 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for E164 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Turns carrier-written numbers into [`E164`], interpreting national and `00` forms in the
/// numbering plan of one default region.
#[derive(Debug, Clone)]
pub struct Normalizer {
    region: Id,
    international_without_plus: bool,
}

impl Normalizer {
    /// `default_region` is an ISO 3166 alpha-2 code such as `DE`; it decides what the trunk
    /// prefix (`0`) and the international prefix (`00`, `011`, …) are.
    pub fn new(default_region: &str) -> Result<Self, NumberError> {
        let region = Id::from_str(&default_region.trim().to_ascii_uppercase())
            .map_err(|_| NumberError::UnknownRegion)?;
        // The parser indexes its metadata by region and would panic on a region it has no
        // metadata for, so refuse such a region here, at config time.
        if phonenumber::metadata::DATABASE
            .by_id(region.as_ref())
            .is_none()
        {
            return Err(NumberError::UnknownRegion);
        }
        Ok(Self {
            region,
            international_without_plus: false,
        })
    }

    /// Some carriers send international numbers without `+` or prefix (`4930123456`). That
    /// reading is ambiguous with national numbers, so it is off unless the trunk is known to do it.
    #[must_use]
    pub fn assume_international_without_plus(mut self, on: bool) -> Self {
        self.international_without_plus = on;
        self
    }

    /// Whether digits without `+` or prefix are read as international.
    pub fn assumes_international_without_plus(&self) -> bool {
        self.international_without_plus
    }

    /// Normalizes one number as found in a SIP user part, a `tel:` URI or a CDR column.
    pub fn normalize(&self, raw: &str) -> Result<E164, NumberError> {
        let (plus, digits) = sanitize(raw)?;
        // Without `+`, a leading 0 is a trunk or international prefix, never a country code.
        let international = plus || (self.international_without_plus && !digits.starts_with('0'));
        let parsed = if international {
            phonenumber::parse(None, format!("+{digits}"))
        } else {
            // National (`030…`) or international-prefix (`0049…`) form of the default region.
            phonenumber::parse(Some(self.region), &digits)
        }
        .map_err(|_| NumberError::Unparseable)?;
        // The parser strips a leading default-region country code from digits that are not a valid
        // national number. That is the international-without-plus reading, which only the flag
        // may enable: a national number that happens to start with `49` must not turn into one.
        if !plus && parsed.code().source() == Source::Number {
            return Err(NumberError::Invalid);
        }
        if parsed.extension().is_some() {
            return Err(NumberError::Unparseable);
        }
        if !parsed.is_valid() {
            return Err(NumberError::Invalid);
        }
        let number = E164::from_parsed(&parsed)?;
        // `phonenumber` reads some digits differently after `+` than after an international
        // prefix (it strips Russia's national prefix 8 from `+78…`, not from `0078…`). Only what
        // the `+` reading gives back is canonical; anything else would give one number two
        // identities (two pseudonyms) and text that `FromStr` refuses when read back.
        if !plus && number.as_str().parse::<E164>().as_ref() != Ok(&number) {
            return Err(NumberError::Invalid);
        }
        Ok(number)
    }
}

/// Reduces raw text to (has leading plus, ASCII digits), refusing anything that is not a number.
fn sanitize(raw: &str) -> Result<(bool, String), NumberError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(NumberError::Empty);
    }
    if text.len() > MAX_INPUT {
        return Err(NumberError::TooLong);
    }
    let text = strip_prefix_ci(text, "tel:").unwrap_or(text);
    // RFC 3966 §3 and RFC 3261 §19.1.1: parameters follow the number after `;`.
    let (number, params) = text.split_once(';').unwrap_or((text, ""));
    let number = number.trim();
    // Some gateways percent-encode the plus in user parts (RFC 3261 §25.1 allows escaping).
    let number =
        strip_prefix_ci(number, "%2B").map_or_else(|| number.to_owned(), |rest| format!("+{rest}"));

    let (mut plus, mut digits) = digits_of(&number)?;
    if !plus {
        // RFC 3966 §5.1.5: a local number with a global-number `phone-context` is that context's
        // digits followed by the local digits. Domain-name contexts say nothing about digits.
        if let Some(context) = params
            .split(';')
            .find_map(|p| strip_prefix_ci(p.trim(), "phone-context="))
            && let Ok((true, prefix)) = digits_of(context)
        {
            plus = true;
            digits.insert_str(0, &prefix);
        }
    }
    if digits.is_empty() {
        return Err(NumberError::NoDigits);
    }
    if digits.len() > MAX_RAW_DIGITS {
        return Err(NumberError::TooLong);
    }
    Ok((plus, digits))
}

/// Splits `+`-prefixed or plain digit text with visual separators (RFC 3966 §5.1.1) into
/// (plus, digits).
fn digits_of(text: &str) -> Result<(bool, String), NumberError> {
    let (plus, rest) = match text.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '-' | '.' | ' ' | '(' | ')' | '/' => {}
            _ => return Err(NumberError::InvalidCharacter),
        }
    }
    Ok((plus, digits))
}

fn strip_prefix_ci<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| text.get(prefix.len()..))
        .flatten()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn de() -> Normalizer {
        Normalizer::new("DE").unwrap()
    }

    #[test]
    fn a_number_read_differently_after_plus_than_after_00_is_refused_in_both_forms() {
        // Found by fuzz/ (cdr_row): `0078355512000` became +78355512000, which the `+` reading
        // (and so `FromStr`, when stored values are read back) refuses: `phonenumber` strips
        // Russia's national prefix 8 after `+7` but not after `007`.
        for raw in ["0078355512000", "+78355512000"] {
            assert_eq!(de().normalize(raw), Err(NumberError::Invalid), "{raw}");
        }
        // Prefix forms of a number both readings agree on still meet in one value.
        for raw in ["0073512345678", "+73512345678"] {
            assert_eq!(
                de().normalize(raw).unwrap().as_str(),
                "+73512345678",
                "{raw}"
            );
        }
    }

    #[test]
    fn normalization_table_accepts_carrier_forms() {
        let table = [
            ("+4930123456", "+4930123456"),
            ("004930123456", "+4930123456"),
            ("030123456", "+4930123456"),
            ("+49-30-123456", "+4930123456"),
            ("+49 (30) 123 456", "+4930123456"),
            ("0049 30 123456", "+4930123456"),
            ("(030) 123456", "+4930123456"),
            ("030/123456", "+4930123456"),
            (
                "tel:+49-30-1234567;phone-context=example.com",
                "+49301234567",
            ),
            ("TEL:+4930123456", "+4930123456"),
            ("+4930123456;user=phone", "+4930123456"),
            ("tel:30123456;phone-context=+49", "+4930123456"),
            ("  +49 30 123456  ", "+4930123456"),
            ("%2B4930123456", "+4930123456"),
            ("+44 20 7946 0018", "+442079460018"),
            ("00442079460018", "+442079460018"),
            ("+1 650-253-0000", "+16502530000"),
            ("+39 06 1234 5678", "+390612345678"),
        ];
        let n = de();
        for (raw, want) in table {
            let got = n.normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(got.as_str(), want, "{raw}");
        }
    }

    #[test]
    fn normalization_table_rejects_garbage() {
        let table = [
            ("", NumberError::Empty),
            ("   ", NumberError::Empty),
            ("anonymous", NumberError::InvalidCharacter),
            ("+49 30 12345x", NumberError::InvalidCharacter),
            ("sip:+4930123456", NumberError::InvalidCharacter),
            ("+49\u{0}30123456", NumberError::InvalidCharacter),
            ("+４９30123456", NumberError::InvalidCharacter),
            ("30+123456", NumberError::InvalidCharacter),
            ("+", NumberError::NoDigits),
            ("tel:;phone-context=example.com", NumberError::NoDigits),
            ("1234567890123456789012", NumberError::TooLong),
            (&"1".repeat(200), NumberError::TooLong),
            ("+999123456", NumberError::Unparseable),
            ("+4912", NumberError::Invalid),
        ];
        let n = de();
        for (raw, want) in table {
            assert_eq!(n.normalize(raw), Err(want), "{raw:?}");
        }
    }

    #[test]
    fn international_without_plus_needs_the_flag() {
        let off = de();
        assert!(!off.assumes_international_without_plus());
        // Read as a German national number, it is not the US number the carrier meant.
        assert_ne!(
            off.normalize("16502530000").map(|e| e.as_str().to_owned()),
            Ok("+16502530000".to_owned())
        );
        assert_eq!(off.normalize("4930123456"), Err(NumberError::Invalid));
        let on = de().assume_international_without_plus(true);
        assert_eq!(on.normalize("4930123456").unwrap().as_str(), "+4930123456");
        assert_eq!(
            on.normalize("16502530000").unwrap().as_str(),
            "+16502530000"
        );
        // A trunk prefix still means national with the flag on.
        assert_eq!(on.normalize("030123456").unwrap().as_str(), "+4930123456");
    }

    #[test]
    fn error_display_never_contains_the_input() {
        let n = de();
        for raw in [
            "+999123456",
            "+49 30 12345x",
            "123456789012345678901234",
            "+4912",
        ] {
            let err = n.normalize(raw).unwrap_err().to_string();
            let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
            assert!(!err.contains(&digits), "{err}");
            assert!(!err.chars().any(|c| c.is_ascii_digit()), "{err}");
        }
    }

    #[test]
    fn parts_and_serde_round_trip() {
        let e = de().normalize("030123456").unwrap();
        assert_eq!(e.country_code(), 49);
        assert_eq!(e.national_number(), "30123456");
        assert_eq!(serde_json::to_string(&e).unwrap(), "\"+4930123456\"");
        let back: E164 = serde_json::from_str("\"+4930123456\"").unwrap();
        assert_eq!(back, e);
        assert_eq!(format!("{e:?}"), "E164(+49 …)");
        let us = "+16502530000".parse::<E164>().unwrap();
        assert_eq!((us.country_code(), us.national_number()), (1, "6502530000"));
    }

    #[test]
    fn from_str_refuses_non_canonical_text() {
        for bad in [
            "4930123456",
            "+49 30 123456",
            "+",
            "+0049",
            "+4930123456;user=phone",
        ] {
            assert_eq!(bad.parse::<E164>(), Err(NumberError::NotE164), "{bad}");
        }
    }

    #[test]
    fn unknown_region_is_refused() {
        assert_eq!(
            Normalizer::new("XX").err(),
            Some(NumberError::UnknownRegion)
        );
        assert_eq!(Normalizer::new("").err(), Some(NumberError::UnknownRegion));
        assert!(Normalizer::new("de").is_ok());
    }

    #[test]
    fn digit_soup_never_panics() {
        // Bounded, deterministic sweep of prefixes and lengths the parser might trip over.
        let n = de();
        let on = de().assume_international_without_plus(true);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut accepted = 0;
        for len in 0..=20 {
            for _ in 0..40 {
                let mut s = String::new();
                for _ in 0..len {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    s.push(char::from(b'0' + u8::try_from((seed >> 33) % 10).unwrap()));
                }
                for raw in [
                    s.clone(),
                    format!("+{s}"),
                    format!("00{s}"),
                    format!("0{s}"),
                ] {
                    accepted += usize::from(n.normalize(&raw).is_ok());
                    let _ = on.normalize(&raw);
                }
            }
        }
        assert!(accepted > 0);
    }
}
