//! Keyed pseudonyms: HMAC-SHA256 (RFC 2104, FIPS 180-4) over a purpose label and the input.
//!
//! A keyed hash, not a plain hash: phone numbers are a small space, so an unkeyed hash is
//! reversed by enumeration. The purpose label gives domain separation, so a caller pseudonym can
//! never be matched against a call key or a record id even when the inputs are equal. Output is
//! truncated to 128 bits (RFC 2104 §5 allows truncation to at least half the hash length), which
//! is collision-safe for any call volume one trunk sees.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a pseudonym is for; each purpose has its own label in the HMAC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The caller's E.164 number.
    Caller,
    /// The SIP Call-ID, to correlate the events of one call.
    CallKey,
    /// A record key, e.g. a CDR row id.
    Record,
    /// A number on the suppression list (objection, restriction), under the standing key.
    Suppression,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::Caller => b"caller",
            Self::CallKey => b"call-key",
            Self::Record => b"record",
            Self::Suppression => b"suppression",
        }
    }
}

/// A pseudonym and the key epoch that made it (needed to know what a shred erases).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pseudonym {
    pub key_id: String,
    /// 32 lowercase hex characters.
    pub value: String,
}

/// `hex(HMAC-SHA256(key, label || 0x00 || input)[..16])`. The zero byte ends the label so that
/// no label is a prefix of another label plus input.
#[cfg(test)]
pub(super) fn derive(key: &[u8; 32], purpose: Purpose, input: &[u8]) -> String {
    Keyed::new(key).derive(purpose, input)
}

/// An HMAC already keyed: its inner and outer pads are computed once per key, not per call
/// (two of the four SHA-256 blocks a short pseudonym costs).
#[derive(Clone)]
pub(super) struct Keyed(Hmac<Sha256>);

impl Keyed {
    pub(super) fn new(key: &[u8; 32]) -> Self {
        #[allow(clippy::expect_used)]
        Self(Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length"))
    }

    pub(super) fn derive(&self, purpose: Purpose, input: &[u8]) -> String {
        let mut mac = self.0.clone();
        mac.update(purpose.label());
        mac.update(&[0]);
        mac.update(input);
        let tag = mac.finalize().into_bytes();
        hex::encode(&tag[..16])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn derive_is_sixteen_bytes_of_lowercase_hex() {
        let v = derive(&[7; 32], Purpose::Caller, b"+4930123456");
        assert_eq!(v.len(), 32);
        assert!(
            v.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
    }

    #[test]
    fn derive_matches_hmac_of_label_zero_input() {
        let mut mac = Hmac::<Sha256>::new_from_slice(&[1; 32]).unwrap();
        mac.update(b"call-key\0abc@host");
        let want = hex::encode(&mac.finalize().into_bytes()[..16]);
        assert_eq!(derive(&[1; 32], Purpose::CallKey, b"abc@host"), want);
    }

    #[test]
    fn purposes_separate_domains() {
        let key = [9; 32];
        let a = derive(&key, Purpose::Caller, b"x");
        let b = derive(&key, Purpose::CallKey, b"x");
        let c = derive(&key, Purpose::Record, b"x");
        assert!(a != b && b != c && a != c);
    }
}
