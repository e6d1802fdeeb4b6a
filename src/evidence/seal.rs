//! The seal of a day file: its line count and chain head, signed with Ed25519 (RFC 8032) over a
//! fixed text, so a verifier needs no JSON canonicalization to check the signature.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use super::Chain;
use super::key::fingerprint;

/// The first line of every signed message: the format and its version.
pub const DOMAIN: &str = "calltrackd-evidence-v1";

/// The text the signature covers: `calltrackd-evidence-v1\n<day>\n<count>\n<chain_head>`, no
/// final newline.
pub fn message(day: &str, count: u64, chain_head: &str) -> String {
    format!("{DOMAIN}\n{day}\n{count}\n{chain_head}")
}

/// `<day>.seal`, one JSON object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seal {
    pub day: String,
    pub count: u64,
    /// Hex link of line `count` (32 zero bytes for no line).
    pub chain_head: String,
    /// `fingerprint` of the public key that verifies `signature`.
    pub key_id: String,
    /// Hex of the 64-byte Ed25519 signature of `message`.
    pub signature: String,
}

impl Seal {
    pub fn sign(day: &str, chain: &Chain, key: &SigningKey) -> Seal {
        let chain_head = chain.head_hex();
        let signature = key.sign(message(day, chain.count, &chain_head).as_bytes());
        Seal {
            day: day.to_owned(),
            count: chain.count,
            chain_head,
            key_id: fingerprint(&key.verifying_key()),
            signature: hex::encode(signature.to_bytes()),
        }
    }

    /// The file content: one line of JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Strings and an integer: serde_json cannot fail on these.
        #[allow(clippy::expect_used)]
        let mut bytes = serde_json::to_vec(self).expect("seals always serialize");
        bytes.push(b'\n');
        bytes
    }

    pub fn parse(bytes: &[u8]) -> Option<Seal> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether `key` signed exactly this day, count and head. Strict verification (RFC 8032
    /// §5.1.7 with canonical encodings) so one seal has one valid signature.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let mut bytes = [0; 64];
        if hex::decode_to_slice(&self.signature, &mut bytes).is_err() {
            return false;
        }
        let signature = Signature::from_bytes(&bytes);
        let text = message(&self.day, self.count, &self.chain_head);
        key.verify_strict(text.as_bytes(), &signature).is_ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn signed_message_text_is_frozen() {
        assert_eq!(
            message("2026-11-24", 3, &"0f".repeat(32)),
            format!("calltrackd-evidence-v1\n2026-11-24\n3\n{}", "0f".repeat(32))
        );
    }

    #[test]
    fn a_seal_verifies_only_for_its_key_and_its_fields() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut chain = Chain::default();
        chain.push(b"x");
        let seal = Seal::sign("2026-11-24", &chain, &key);
        assert!(seal.signed_by(&key.verifying_key()));
        assert_eq!(Seal::parse(&seal.to_bytes()), Some(seal.clone()));
        let other = SigningKey::from_bytes(&[8; 32]).verifying_key();
        assert!(!seal.signed_by(&other));
        let edits: [fn(&mut Seal); 4] = [
            |s| s.count += 1,
            |s| s.day = "2026-11-25".to_owned(),
            |s| s.chain_head = "00".repeat(32),
            |s| s.signature = "zz".to_owned(),
        ];
        for edit in edits {
            let mut forged = seal.clone();
            edit(&mut forged);
            assert!(!forged.signed_by(&key.verifying_key()), "{forged:?}");
        }
    }
}
