//! Serialization of everything dstore writes to disk (and, later, to the wire). This is the
//! only module that names bincode: bincode 1.3.3 is pinned and flagged unmaintained
//! (RUSTSEC-2025-0141, no known vulnerability), so keeping it behind two functions makes it
//! cheap to replace. Every decode is bounded: a length prefix that claims more than
//! `MAX_DECODE` bytes is an error, never an allocation.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

use crate::error::{Error, Result};

/// The largest encoded object accepted: a 1 GiB value's manifest is ~33 KiB, a 10 TiB one
/// ~330 MiB, so 512 MiB leaves room without letting garbage allocate without bound.
pub const MAX_DECODE: u64 = 512 << 20;

fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_limit(MAX_DECODE)
        .with_little_endian()
        .with_varint_encoding()
        .reject_trailing_bytes()
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own types into a Vec cannot fail: no maps with non-string keys, no
    // sequences of unknown length, and everything we encode is far below the limit.
    options()
        .serialize(value)
        .expect("encoding an in-memory dstore type cannot fail")
}

/// `encode`, leaving `spare` bytes of capacity after the encoding (room for a tag appended
/// in place, so a 1 MiB frame is not copied to grow by 16 bytes).
pub fn encode_with_spare<T: Serialize>(value: &T, spare: usize) -> Vec<u8> {
    let len = options()
        .serialized_size(value)
        .expect("sizing an in-memory dstore type cannot fail");
    let mut out = Vec::with_capacity(len as usize + spare);
    options()
        .serialize_into(&mut out, value)
        .expect("encoding an in-memory dstore type cannot fail");
    out
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    options()
        .deserialize(bytes)
        .map_err(|e| Error::Integrity(format!("{what} does not decode: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_trailing_bytes() {
        let v: (u32, String, Vec<u8>) = (7, "k".into(), vec![1, 2, 3]);
        let mut bytes = encode(&v);
        assert_eq!(decode::<(u32, String, Vec<u8>)>(&bytes, "t").unwrap(), v);
        bytes.push(0);
        assert!(decode::<(u32, String, Vec<u8>)>(&bytes, "t").is_err());
    }

    #[test]
    fn huge_length_prefix_is_an_error_not_an_allocation() {
        // A Vec<u8> whose varint length claims 2^62 bytes.
        let bytes = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0x40];
        assert!(matches!(
            decode::<Vec<u8>>(&bytes, "t"),
            Err(Error::Integrity(_))
        ));
    }
}
