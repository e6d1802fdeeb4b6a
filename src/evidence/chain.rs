//! The hash chain of a day file: each line's `chain` is SHA-256(previous chain ‖ the line's
//! canonical bytes), so changing, dropping or reordering any line changes every later link.

use sha2::{Digest, Sha256};

/// What the first line of a day chains from.
pub const GENESIS: [u8; 32] = [0; 32];

/// The link after `prev` for a line whose canonical bytes are `canonical`.
pub fn link(prev: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(prev)
        .chain_update(canonical)
        .finalize()
        .into()
}

/// How many lines a day holds and the link of the last one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub count: u64,
    pub head: [u8; 32],
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            count: 0,
            head: GENESIS,
        }
    }
}

impl Chain {
    /// Extends the chain by one line; returns the new head.
    pub fn push(&mut self, canonical: &[u8]) -> [u8; 32] {
        self.head = link(&self.head, canonical);
        self.count += 1;
        self.head
    }

    pub fn head_hex(&self) -> String {
        hex::encode(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_link_hashes_the_previous_link_and_the_line() {
        let mut chain = Chain::default();
        let first = chain.push(b"a");
        assert_eq!(
            first,
            <[u8; 32]>::from(Sha256::digest([&[0u8; 32][..], b"a"].concat()))
        );
        let second = chain.push(b"b");
        assert_eq!(second, link(&first, b"b"));
        assert_eq!(chain.count, 2);
        assert_ne!(
            link(&GENESIS, b"ab"),
            second,
            "not a hash of the concatenated lines"
        );
    }
}
