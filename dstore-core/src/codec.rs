//! Serialization of everything dstore writes to disk and to the wire. This is the only module
//! that names bincode. bincode is the codec the project was given; 1.3.3 is pinned, and
//! RUSTSEC-2025-0141 flags every bincode release unmaintained (2.x included, so moving to it
//! gains nothing; its authors call 1.3.3 complete, and no vulnerability is known). Keeping it
//! behind these functions, with a format version on disk and the protocol version on the
//! wire, keeps a later change of codec one file and unambiguous.
//!
//! Every decode is bounded twice: a length prefix that claims more than `MAX_DECODE` bytes is
//! an error, never an allocation; and every sequence read from a peer or a disk has an item
//! bound (`bounded`), checked against its length prefix before the first item is read.

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

/// The version of the format of what dstore keeps on disk (manifests, whether in their files
/// or in the journal). Its first byte; a reader refuses any other with a clear error rather
/// than guess. The wire has its own: `handshake::PROTOCOL_VERSION`, agreed in the hello.
/// 2: a manifest may hold a small value inline. Manifests of format 1 are still read
/// (`Manifest::from_bytes`).
pub const DISK_FORMAT: u8 = 2;

/// `encode`, after the disk format's version byte.
pub fn encode_stored<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![DISK_FORMAT];
    options()
        .serialize_into(&mut out, value)
        .expect("encoding an in-memory dstore type cannot fail");
    out
}

/// Decodes what `encode_stored` made, refusing another format version.
pub fn decode_stored<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    match bytes.split_first() {
        Some((&DISK_FORMAT, rest)) => decode(rest, what),
        Some((other, _)) => Err(Error::Integrity(format!(
            "{what} is in disk format {other}, and this dstore reads format {DISK_FORMAT} \
             (written by another version of dstore?)"
        ))),
        None => Err(Error::Integrity(format!("{what} is empty"))),
    }
}

/// For `#[serde(deserialize_with = "codec::bounded::<N, _, _>")]` on a `Vec` read from a peer
/// or a disk: more than `N` items is an error, found from the length prefix before anything
/// is allocated (and counted as items arrive, for formats without a prefix). A byte limit
/// alone does not bound memory: an empty string costs one byte on the wire and 24 in a `Vec`.
pub fn bounded<'de, const N: usize, D, T>(d: D) -> std::result::Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct Bounded<T, const N: usize>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>, const N: usize> serde::de::Visitor<'de> for Bounded<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "at most {N} items")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> std::result::Result<Vec<T>, A::Error> {
            use serde::de::Error as _;
            let claimed = seq.size_hint().unwrap_or(0);
            if claimed > N {
                return Err(A::Error::invalid_length(claimed, &self));
            }
            let mut out = Vec::with_capacity(claimed.min(1024));
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(A::Error::invalid_length(N + 1, &self));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Bounded::<T, N>(std::marker::PhantomData))
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

    #[derive(Debug, serde::Deserialize, serde::Serialize)]
    struct Few {
        #[serde(deserialize_with = "bounded::<3, _, _>")]
        items: Vec<String>,
    }

    #[test]
    fn bounded_sequences_refuse_more_items_before_reading_them() {
        let three = encode(&Few {
            items: vec![String::new(); 3],
        });
        assert_eq!(decode::<Few>(&three, "t").unwrap().items.len(), 3);
        let four = encode(&Few {
            items: vec![String::new(); 4],
        });
        assert!(decode::<Few>(&four, "t").is_err());
        // A length prefix claiming 2^40 empty strings, with none of them there.
        let claim = [0xfd, 0, 0, 0, 0, 0, 0x01, 0, 0];
        let err = decode::<Few>(&claim, "t").unwrap_err().to_string();
        assert!(err.contains("at most 3"), "{err}");
    }

    #[test]
    fn stored_bytes_carry_their_format() {
        let bytes = encode_stored(&7u32);
        assert_eq!(bytes[0], DISK_FORMAT);
        assert_eq!(decode_stored::<u32>(&bytes, "t").unwrap(), 7);
        let mut other = bytes.clone();
        other[0] = DISK_FORMAT + 1;
        let err = decode_stored::<u32>(&other, "t").unwrap_err().to_string();
        assert!(err.contains("disk format"), "{err}");
        assert!(decode_stored::<u32>(&[], "t").is_err());
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
