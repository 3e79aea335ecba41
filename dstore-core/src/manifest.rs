//! Manifests: one version of one key. A manifest names the value's chunks in order and is
//! authenticated twice: `mac` under the cluster secret, which every node can check (storage
//! nodes without the data key included), and `seal` under the data key of the writer, so that
//! only holders of the data key can make or alter what a key points to. Every manifest a
//! holder of a data key writes is sealed (plain values and tombstones too): a reader that
//! holds the key refuses one that is not, or a holder of only the cluster secret could
//! replace or delete any value (see `check_seal`).
//!
//! A value of at most `INLINE_MAX` bytes that fits in one chunk is kept inside its manifest
//! (`Manifest::inline`) instead of in a chunk: one object and one round of requests to
//! write it, one request to read it. The inline bytes are authenticated with the body; a
//! manifest without them is authenticated exactly as disk format 1 was, so manifests written
//! before inline values existed still check, and are read as they are (`ManifestV1`).

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::crypto::{self, ClusterKey, DataKey};
use crate::error::{Error, Result};
use crate::ids::ChunkId;
use crate::version::Version;

/// The longest key, in bytes of UTF-8.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a key: 1 to 1024 bytes of UTF-8 (guaranteed by `&str`), no NUL.
pub fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::InvalidArgument(format!(
            "a key is 1 to {MAX_KEY_LEN} bytes long, not {}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::InvalidArgument("a key may not contain NUL".into()));
    }
    Ok(())
}

/// The largest value kept inside its manifest. Garage inlines under 3 KiB, iroh-blobs up to
/// 16 KiB; past a few KiB a separate chunk costs a file and a round trip that the bytes no
/// longer dwarf, and a manifest stays cheap to copy between owners (repair, hand-off).
pub const INLINE_MAX: usize = 16 << 10;

/// How a value is kept across the cluster. A new variant keeps the encoding of the older
/// ones (bincode numbers variants in order), so manifests written before it read as they were.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    /// n full copies of every chunk.
    Replicas(u8),
    /// Every chunk cut into `data` + `parity` shards (`crate::erasure`), any `data` of which
    /// give it back. `shards` lists the ids of each chunk's shards, chunk by chunk, data
    /// shards first; the shards are what nodes keep, and `chunks` names the chunks they make
    /// (where each chunk's shards are placed, and the check once one is put back together).
    Erasure {
        data: u8,
        parity: u8,
        shards: Vec<ChunkId>,
    },
}

/// What the MACs cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    pub key: String,
    pub version: Version,
    /// Length of the plaintext value in bytes.
    pub size: u64,
    /// Plaintext bytes per chunk; every chunk but the last is exactly this long.
    pub chunk_size: u32,
    pub encrypted: bool,
    pub policy: Policy,
    pub chunks: Vec<ChunkId>,
    /// A tombstone: the key was deleted at `version`.
    pub deleted: bool,
}

/// The data-key authentication of a manifest: a signature over its body by a key derived
/// from the writer's data key. A reader holding the data key checks it is its own key's; any
/// node can check the signature against `key`, so a member without the data key refuses to
/// replace a sealed manifest with one that key did not sign (`may_replace`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// The public key of the data key that sealed it (`DataKey::seal_public`): a reader with
    /// another key is told "wrong key".
    pub key: [u8; 32],
    /// Ed25519, 64 bytes.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// A manifest as kept on disk (disk format 2) and sent to peers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub body: ManifestBody,
    /// The stored bytes of a small value (ciphertext when encrypted, as a chunk would hold
    /// them), when it is kept here instead of in a chunk; `body.chunks` is empty then.
    #[serde(with = "serde_bytes")]
    pub inline: Option<Vec<u8>>,
    pub seal: Option<Seal>,
    pub mac: [u8; 32],
}

/// A manifest of disk format 1, before inline values: read, and kept, as it is.
#[derive(Deserialize)]
struct ManifestV1 {
    body: ManifestBody,
    seal: Option<Seal>,
    mac: [u8; 32],
}

impl Manifest {
    /// Authenticates `body`, sealing it when the writer holds a data key (an encrypted body
    /// needs one).
    pub fn new(body: ManifestBody, data_key: Option<&DataKey>, cluster: &ClusterKey) -> Self {
        Self::authenticate(body, None, data_key, cluster)
    }

    /// A manifest holding a small value's stored bytes itself (see `INLINE_MAX`).
    pub fn with_inline(
        body: ManifestBody,
        stored: Vec<u8>,
        data_key: Option<&DataKey>,
        cluster: &ClusterKey,
    ) -> Self {
        Self::authenticate(body, Some(stored), data_key, cluster)
    }

    fn authenticate(
        body: ManifestBody,
        inline: Option<Vec<u8>>,
        data_key: Option<&DataKey>,
        cluster: &ClusterKey,
    ) -> Self {
        assert!(
            data_key.is_some() || !body.encrypted,
            "an encrypted manifest is sealed with the data key"
        );
        let mut m = Self {
            body,
            inline,
            seal: None,
            mac: [0; 32],
        };
        m.seal = data_key.map(|key| Seal {
            key: key.seal_public(),
            signature: key.sign_manifest(&m.signed_bytes()).to_vec(),
        });
        m.mac = cluster.manifest_mac(&m.mac_bytes());
        m
    }

    /// What the seal signs: the body, and the inline bytes if any. Without inline bytes this
    /// is the body alone, as in disk format 1. (bincode encodings of one type are prefix-free,
    /// so no body encodes to another body followed by inline bytes.)
    fn signed_bytes(&self) -> Vec<u8> {
        match &self.inline {
            None => codec::encode(&self.body),
            Some(d) => codec::encode(&(&self.body, serde_bytes::Bytes::new(d))),
        }
    }

    /// What the cluster MAC covers: the seal too.
    fn mac_bytes(&self) -> Vec<u8> {
        match &self.inline {
            None => codec::encode(&(&self.body, &self.seal)),
            Some(d) => codec::encode(&(&self.body, &self.seal, serde_bytes::Bytes::new(d))),
        }
    }

    /// Recomputes the cluster MAC after a test or fuzz target changed a field.
    #[doc(hidden)]
    pub fn remac(&mut self, cluster: &ClusterKey) {
        self.mac = cluster.manifest_mac(&self.mac_bytes());
    }

    pub fn tombstone(
        key: &str,
        version: Version,
        data_key: Option<&DataKey>,
        cluster: &ClusterKey,
    ) -> Self {
        let body = ManifestBody {
            key: key.to_owned(),
            version,
            size: 0,
            chunk_size: 1,
            encrypted: false,
            policy: Policy::Replicas(1),
            chunks: Vec::new(),
            deleted: true,
        };
        Self::new(body, data_key, cluster)
    }

    /// The manifest as kept on disk and sent to peers (with the disk format's version).
    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode_stored(self)
    }

    /// Decodes a manifest from disk or from a peer (disk format 2, or 1 from before inline
    /// values), checks the cluster MAC and that its fields agree with each other. The
    /// data-key seal is checked by `check_seal`.
    pub fn from_bytes(bytes: &[u8], cluster: &ClusterKey) -> Result<Self> {
        let m: Manifest = match bytes.split_first() {
            Some((&1, rest)) => {
                let v1: ManifestV1 = codec::decode(rest, "manifest")?;
                Manifest {
                    body: v1.body,
                    inline: None,
                    seal: v1.seal,
                    mac: v1.mac,
                }
            }
            _ => codec::decode_stored(bytes, "manifest")?,
        };
        let expected = cluster.manifest_mac(&m.mac_bytes());
        if !crypto::ct_eq(&expected, &m.mac) {
            return Err(Error::Integrity(format!(
                "manifest of {:?} fails its cluster MAC",
                m.body.key
            )));
        }
        m.check_shape()?;
        Ok(m)
    }

    fn check_shape(&self) -> Result<()> {
        let b = &self.body;
        let bad = |why: &str| Err(Error::Integrity(format!("manifest of {:?}: {why}", b.key)));
        if validate_key(&b.key).is_err() {
            return bad("invalid key");
        }
        if b.chunk_size == 0 {
            return bad("zero chunk size");
        }
        if let Some(d) = &self.inline {
            let overhead = if b.encrypted { crypto::IV_LEN } else { 0 };
            if !b.chunks.is_empty() || b.deleted {
                return bad("inline value with chunks, or in a tombstone");
            }
            if b.size > INLINE_MAX as u64 || b.size > u64::from(b.chunk_size) {
                return bad("inline value larger than an inline value may be");
            }
            if d.len() as u64 != b.size + overhead as u64 {
                return bad("inline bytes do not match size");
            }
        } else if b.chunks.len() as u64 != b.size.div_ceil(u64::from(b.chunk_size)) {
            return bad("chunk count does not match size");
        }
        if b.deleted && !b.chunks.is_empty() {
            return bad("tombstone names chunks");
        }
        if let Policy::Erasure {
            data,
            parity,
            shards,
        } = &b.policy
        {
            let (data, parity) = (usize::from(*data), usize::from(*parity));
            if crate::erasure::validate(data, parity).is_err() {
                return bad("erasure policy out of bounds");
            }
            if self.inline.is_some() || b.deleted {
                return bad("an inline value or a tombstone is not erasure-coded");
            }
            if Some(shards.len()) != b.chunks.len().checked_mul(data + parity) {
                return bad("shard count does not match the chunks");
            }
        }
        if b.encrypted && self.seal.is_none() {
            return bad("encrypted but not sealed");
        }
        Ok(())
    }

    /// Checks the data-key seal for a reader holding `data_key`.
    ///
    /// A reader with a data key accepts only manifests sealed with it: one without a seal (or
    /// with another key's) could have been written by anyone holding just the cluster secret,
    /// over a value of this key's holders. `accept_unsealed` lets plain values and tombstones
    /// through anyway (a cluster whose writers hold no data key). A reader without a data key
    /// cannot check seals: it reads plain values and tombstones as they are, and refuses
    /// encrypted ones.
    pub fn check_seal(&self, data_key: Option<&DataKey>, accept_unsealed: bool) -> Result<()> {
        let b = &self.body;
        let Some(data_key) = data_key else {
            if b.encrypted {
                return Err(Error::WrongKey(format!(
                    "{:?} is encrypted and this node holds no data key",
                    b.key
                )));
            }
            return Ok(());
        };
        let seal = match &self.seal {
            Some(s) if s.key == data_key.seal_public() => s,
            _ if accept_unsealed && !b.encrypted => return Ok(()),
            Some(_) => {
                return Err(Error::WrongKey(format!(
                    "{:?} was sealed with another data key",
                    b.key
                )))
            }
            None => {
                return Err(Error::Integrity(format!(
                    "the current version of {:?} is not sealed with the data key: it was \
                     written by a holder of only the cluster secret (or by an older dstore), and \
                     is refused (accept_unsealed allows plain values and tombstones)",
                    b.key
                )))
            }
        };
        if !crypto::verify_manifest_seal(&seal.key, &self.signed_bytes(), &seal.signature) {
            return Err(Error::Integrity(format!(
                "manifest of {:?} fails its data-key seal",
                b.key
            )));
        }
        Ok(())
    }

    /// The seal key of the data key that sealed this manifest, if it is sealed.
    pub fn sealed_by(&self) -> Option<[u8; 32]> {
        self.seal.as_ref().map(|s| s.key)
    }

    /// Whether this manifest may replace one sealed by `held` (see `Seal`): only if the same
    /// data key sealed it, and the signature holds. Checked by every node before it keeps a
    /// newer version, so a holder of only the cluster credential (or of another data key)
    /// cannot replace or delete a value sealed by a key it does not hold, on any node.
    pub fn may_replace(&self, held: &[u8; 32]) -> Result<()> {
        let signed = self.seal.as_ref().is_some_and(|s| {
            s.key == *held
                && crypto::verify_manifest_seal(&s.key, &self.signed_bytes(), &s.signature)
        });
        if signed {
            Ok(())
        } else {
            Err(Error::Integrity(format!(
                "a new version of {:?} is not sealed by the data key that sealed the one held; \
                 refused (only holders of that key may replace or delete it)",
                self.body.key
            )))
        }
    }

    /// Plaintext length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let cs = u64::from(self.body.chunk_size);
        (self.body.size - index as u64 * cs).min(cs)
    }

    /// The objects nodes keep for this value: its chunks, or under erasure coding their
    /// shards. What references, pins and garbage collection count.
    pub fn stored(&self) -> &[ChunkId] {
        match &self.body.policy {
            Policy::Replicas(_) => &self.body.chunks,
            Policy::Erasure { shards, .. } => shards,
        }
    }

    /// The ids of chunk `index`'s shards, data shards first, under erasure coding.
    pub fn shards_of(&self, index: usize) -> Option<&[ChunkId]> {
        match &self.body.policy {
            Policy::Replicas(_) => None,
            Policy::Erasure {
                data,
                parity,
                shards,
            } => {
                let n = usize::from(*data) + usize::from(*parity);
                shards.get(index * n..(index + 1) * n)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;

    fn body(encrypted: bool) -> ManifestBody {
        ManifestBody {
            key: "k".into(),
            version: Version {
                time: 1,
                node: NodeId([0; 32]),
            },
            size: 10,
            chunk_size: 4,
            encrypted,
            policy: Policy::Replicas(1),
            chunks: vec![ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([3; 32])],
            deleted: false,
        }
    }

    #[test]
    fn keys() {
        assert!(validate_key("a").is_ok());
        assert!(validate_key("../x").is_ok());
        assert!(validate_key(&"é".repeat(512)).is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("a\0b").is_err());
        assert!(validate_key(&"x".repeat(1025)).is_err());
    }

    /// Each single-bit change of `bytes` fails the MAC, the shape checks or the seal.
    fn assert_every_flipped_bit_is_refused(bytes: &[u8], cluster: &ClusterKey, dk: &DataKey) {
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.to_vec();
            bad[i / 8] ^= 1 << (i % 8);
            let r = Manifest::from_bytes(&bad, cluster).and_then(|m| m.check_seal(Some(dk), false));
            assert!(r.is_err(), "bit {i} went unnoticed");
        }
    }

    #[test]
    fn every_flipped_bit_is_caught() {
        let cluster = ClusterKey::new(b"secret");
        let dk = DataKey::new(&[9; 32]);
        let bytes = Manifest::new(body(true), Some(&dk), &cluster).to_bytes();
        let good = Manifest::from_bytes(&bytes, &cluster).unwrap();
        good.check_seal(Some(&dk), false).unwrap();
        assert_every_flipped_bit_is_refused(&bytes, &cluster, &dk);
    }

    #[test]
    fn wrong_key_and_wrong_secret() {
        let cluster = ClusterKey::new(b"secret");
        let m = Manifest::new(body(true), Some(&DataKey::new(&[1; 32])), &cluster);
        let bytes = m.to_bytes();
        let decoded = Manifest::from_bytes(&bytes, &cluster).unwrap();
        assert!(matches!(
            decoded.check_seal(Some(&DataKey::new(&[2; 32])), false),
            Err(Error::WrongKey(_))
        ));
        assert!(Manifest::from_bytes(&bytes, &ClusterKey::new(b"other")).is_err());
    }

    /// A plain value or tombstone without a seal, or with another key's, is refused by a
    /// holder of the data key unless it accepts unsealed manifests; a reader without a data
    /// key reads plain ones and refuses encrypted ones.
    #[test]
    fn unsealed_manifests_are_refused_by_holders_of_the_data_key() {
        let cluster = ClusterKey::new(b"s");
        let (mine, other) = (DataKey::new(&[1; 32]), DataKey::new(&[2; 32]));
        let sealed = Manifest::new(body(false), Some(&mine), &cluster);
        sealed.check_seal(Some(&mine), false).unwrap();
        let unsealed = Manifest::new(body(false), None, &cluster);
        let foreign = Manifest::new(body(false), Some(&other), &cluster);
        let tomb = Manifest::tombstone("k", body(false).version, None, &cluster);
        assert!(matches!(
            unsealed.check_seal(Some(&mine), false),
            Err(Error::Integrity(_))
        ));
        assert!(matches!(
            tomb.check_seal(Some(&mine), false),
            Err(Error::Integrity(_))
        ));
        assert!(matches!(
            foreign.check_seal(Some(&mine), false),
            Err(Error::WrongKey(_))
        ));
        for m in [&unsealed, &foreign, &tomb] {
            m.check_seal(Some(&mine), true).unwrap();
            m.check_seal(None, false).unwrap();
        }
        let secret = Manifest::new(body(true), Some(&other), &cluster);
        assert!(secret.check_seal(Some(&mine), true).is_err());
        assert!(matches!(
            secret.check_seal(None, true),
            Err(Error::WrongKey(_))
        ));
        // An encrypted body whose seal was stripped fails its shape check.
        let mut stripped = secret.clone();
        stripped.seal = None;
        stripped.remac(&cluster);
        assert!(Manifest::from_bytes(&stripped.to_bytes(), &cluster).is_err());
    }

    fn inline_body(encrypted: bool, size: u64) -> ManifestBody {
        ManifestBody {
            size,
            chunk_size: 1 << 20,
            chunks: Vec::new(),
            ..body(encrypted)
        }
    }

    /// An inline value's bytes are authenticated with the body: any flipped bit, and any
    /// inline bytes moved to another manifest, are refused.
    #[test]
    fn inline_values_are_authenticated_with_the_body() {
        let cluster = ClusterKey::new(b"secret");
        let dk = DataKey::new(&[9; 32]);
        let stored = dk.seal(b"a small value");
        let m = Manifest::with_inline(inline_body(true, 13), stored.clone(), Some(&dk), &cluster);
        let bytes = m.to_bytes();
        let back = Manifest::from_bytes(&bytes, &cluster).unwrap();
        back.check_seal(Some(&dk), false).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            dk.open(back.inline.as_ref().unwrap()).unwrap(),
            b"a small value"
        );
        assert_every_flipped_bit_is_refused(&bytes, &cluster, &dk);
        // The inline bytes of another value under this manifest's seal and MAC.
        let mut swapped = m.clone();
        swapped.inline = Some(dk.seal(b"other value!!"));
        assert!(Manifest::from_bytes(&swapped.to_bytes(), &cluster).is_err());
        swapped.remac(&cluster); // even by a holder of the cluster secret: the seal fails
        let decoded = Manifest::from_bytes(&swapped.to_bytes(), &cluster).unwrap();
        assert!(decoded.check_seal(Some(&dk), false).is_err());
        assert!(decoded.may_replace(&dk.seal_public()).is_err());
    }

    /// Inline bytes that disagree with the body, or beside chunks, are refused.
    #[test]
    fn inline_shape_checks() {
        let cluster = ClusterKey::new(b"s");
        let check = |m: Manifest| Manifest::from_bytes(&m.to_bytes(), &cluster);
        check(Manifest::with_inline(
            inline_body(false, 3),
            b"abc".to_vec(),
            None,
            &cluster,
        ))
        .unwrap();
        let short = Manifest::with_inline(inline_body(false, 4), b"abc".to_vec(), None, &cluster);
        assert!(check(short).is_err());
        let beside = Manifest::with_inline(body(false), vec![0; 10], None, &cluster);
        assert!(check(beside).is_err());
        let big = INLINE_MAX as u64 + 1;
        let large = Manifest::with_inline(
            inline_body(false, big),
            vec![0; big as usize],
            None,
            &cluster,
        );
        assert!(check(large).is_err());
    }

    /// A manifest written before inline values (disk format 1) reads back, seal and MAC
    /// intact, and is written again as format 2.
    #[test]
    fn format_1_manifests_are_still_read() {
        #[derive(Serialize)]
        struct V1<'a>(&'a ManifestBody, &'a Option<Seal>, &'a [u8; 32]);
        let cluster = ClusterKey::new(b"s");
        let dk = DataKey::new(&[4; 32]);
        let m = Manifest::new(body(true), Some(&dk), &cluster);
        let mut v1 = vec![1u8];
        v1.extend(codec::encode(&V1(&m.body, &m.seal, &m.mac)));
        let back = Manifest::from_bytes(&v1, &cluster).unwrap();
        back.check_seal(Some(&dk), false).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.to_bytes()[0], codec::DISK_FORMAT);
        v1[5] ^= 1;
        assert!(Manifest::from_bytes(&v1, &cluster).is_err());
    }

    #[test]
    fn shape_checks() {
        let cluster = ClusterKey::new(b"s");
        let mut b = body(false);
        b.size = 13; // needs 4 chunks
        let bytes = Manifest::new(b, None, &cluster).to_bytes();
        assert!(Manifest::from_bytes(&bytes, &cluster).is_err());
        let m = Manifest::new(body(false), None, &cluster);
        assert_eq!((m.chunk_len(0), m.chunk_len(1), m.chunk_len(2)), (4, 4, 2));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Arbitrary bytes never panic the decoder and never pass the MAC.
            #[test]
            fn garbage_never_decodes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
                let cluster = ClusterKey::new(b"s");
                prop_assert!(Manifest::from_bytes(&bytes, &cluster).is_err());
            }

            /// A valid manifest with any byte changed, cut short or extended is refused.
            #[test]
            fn mutations_are_refused(at in any::<usize>(), xor in 1u8.., cut in any::<bool>(), extra in any::<u8>()) {
                let cluster = ClusterKey::new(b"s");
                let dk = DataKey::new(&[3; 32]);
                let bytes = Manifest::new(body(true), Some(&dk), &cluster).to_bytes();
                let mut bad = bytes.clone();
                bad[at % bytes.len()] ^= xor;
                let check = |b: &[u8]| Manifest::from_bytes(b, &cluster).and_then(|m| m.check_seal(Some(&dk), false));
                prop_assert!(check(&bad).is_err());
                let other = if cut { bytes[..at % bytes.len()].to_vec() } else { [&bytes[..], &[extra]].concat() };
                prop_assert!(check(&other).is_err());
            }
        }
    }

    /// An erasure-coded manifest lists k + m shard ids per chunk, and what nodes keep (and
    /// count references of) is its shards; one whose shards do not match its chunks, whose
    /// policy is out of bounds, or that is inline or a tombstone is refused as corrupt. A
    /// replicated manifest keeps its chunks.
    #[test]
    fn erasure_manifests_name_their_shards_and_are_checked() {
        let cluster = ClusterKey::new(b"secret");
        let dk = DataKey::new(&[9; 32]);
        let shards: Vec<ChunkId> = (0..18u8).map(|i| ChunkId([100 + i; 32])).collect();
        let mut b = body(true);
        b.policy = Policy::Erasure {
            data: 4,
            parity: 2,
            shards: shards.clone(),
        };
        let m = Manifest::new(b.clone(), Some(&dk), &cluster);
        let back = Manifest::from_bytes(&m.to_bytes(), &cluster).unwrap();
        back.check_seal(Some(&dk), false).unwrap();
        assert_eq!(back.stored(), &shards[..]);
        assert_eq!(back.shards_of(1).unwrap(), &shards[6..12]);
        assert!(back.shards_of(3).is_none());
        let plain = Manifest::new(body(true), Some(&dk), &cluster);
        assert_eq!(plain.stored(), &plain.body.chunks[..]);
        assert!(plain.shards_of(0).is_none());

        let refused = |policy: Policy| {
            let mut b = b.clone();
            b.policy = policy;
            let m = Manifest::new(b, Some(&dk), &cluster);
            Manifest::from_bytes(&m.to_bytes(), &cluster)
        };
        for (data, parity, n) in [(4, 2, 17), (4, 2, 19), (1, 2, 9), (4, 0, 12), (60, 10, 210)] {
            let policy = Policy::Erasure {
                data,
                parity,
                shards: shards.iter().cycle().take(n).copied().collect(),
            };
            assert!(
                matches!(refused(policy), Err(Error::Integrity(_))),
                "{data}+{parity} with {n} shards"
            );
        }
        let mut tomb = b.clone();
        tomb.deleted = true;
        tomb.chunks.clear();
        tomb.size = 0;
        let t = Manifest::new(tomb, Some(&dk), &cluster);
        assert!(Manifest::from_bytes(&t.to_bytes(), &cluster).is_err());
    }
}
