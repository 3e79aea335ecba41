//! The fixed-size identifiers: chunk ids (hash of a chunk's stored bytes), key ids (hash of a
//! key's name, which is what a manifest's file is named after, so a key never becomes a path)
//! and node ids (random, made once per storage root).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::crypto;

macro_rules! hex_id {
    ($name:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            pub fn from_hex(s: &str) -> Option<Self> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s.trim(), &mut out).ok()?;
                Some(Self(out))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}..)", stringify!($name), &self.to_hex()[..12])
            }
        }
    };
}

hex_id!(
    ChunkId,
    "A chunk's id: the 256-bit BLAKE3 hash of the bytes stored for it (see DESIGN.md §2)."
);
hex_id!(
    KeyId,
    "The hash of a key's name; names the key's manifest on disk."
);
hex_id!(
    NodeId,
    "A node's random 32-byte identity, kept in its storage root."
);

impl ChunkId {
    pub fn of(stored: &[u8]) -> Self {
        Self(crypto::chunk_hash(stored))
    }
}

impl KeyId {
    pub fn of(key: &str) -> Self {
        Self(crypto::key_hash(key))
    }
}

impl NodeId {
    pub fn random() -> Self {
        Self(crypto::random_bytes())
    }
}
