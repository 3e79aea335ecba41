//! Manifests: one version of one key. A manifest names the value's chunks in order and is
//! authenticated twice: `mac` under the cluster secret, which every node can check (storage
//! nodes without the data key included), and, for encrypted values, `seal` under the data key,
//! so that only holders of the data key can make or alter what an encrypted key points to.

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

/// How a value is kept across the cluster. Erasure coding joins this enum later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Policy {
    Replicas(u8),
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

/// The data-key authentication of an encrypted value's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seal {
    /// Which data key sealed it, so a reader with another key is told "wrong key".
    pub key_fingerprint: [u8; 16],
    pub mac: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub body: ManifestBody,
    pub seal: Option<Seal>,
    pub mac: [u8; 32],
}

impl Manifest {
    /// Authenticates `body`; encrypted bodies need the data key.
    pub fn new(body: ManifestBody, data_key: Option<&DataKey>, cluster: &ClusterKey) -> Self {
        let seal = body.encrypted.then(|| {
            let key = data_key.expect("an encrypted manifest is sealed with the data key");
            Seal {
                key_fingerprint: key.fingerprint(),
                mac: key.manifest_mac(&codec::encode(&body)),
            }
        });
        let mac = cluster.manifest_mac(&codec::encode(&(&body, &seal)));
        Self { body, seal, mac }
    }

    pub fn tombstone(key: &str, version: Version, cluster: &ClusterKey) -> Self {
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
        Self::new(body, None, cluster)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Decodes a manifest from disk or from a peer, checks the cluster MAC and that its
    /// fields agree with each other. The data-key seal is checked by `check_seal`.
    pub fn from_bytes(bytes: &[u8], cluster: &ClusterKey) -> Result<Self> {
        let m: Manifest = codec::decode(bytes, "manifest")?;
        let expected = cluster.manifest_mac(&codec::encode(&(&m.body, &m.seal)));
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
        if b.chunks.len() as u64 != b.size.div_ceil(u64::from(b.chunk_size)) {
            return bad("chunk count does not match size");
        }
        if b.deleted && !b.chunks.is_empty() {
            return bad("tombstone names chunks");
        }
        if b.encrypted != self.seal.is_some() {
            return bad("encryption flag and seal disagree");
        }
        Ok(())
    }

    /// For an encrypted value: checks that `data_key` is the one that sealed it and that the
    /// seal is intact. Plaintext values pass.
    pub fn check_seal(&self, data_key: &DataKey) -> Result<()> {
        let Some(seal) = &self.seal else {
            return Ok(());
        };
        if seal.key_fingerprint != data_key.fingerprint() {
            return Err(Error::WrongKey(format!(
                "{:?} was encrypted with another data key",
                self.body.key
            )));
        }
        let expected = data_key.manifest_mac(&codec::encode(&self.body));
        if !crypto::ct_eq(&expected, &seal.mac) {
            return Err(Error::Integrity(format!(
                "manifest of {:?} fails its data-key MAC",
                self.body.key
            )));
        }
        Ok(())
    }

    /// Plaintext length of chunk `index`.
    pub fn chunk_len(&self, index: usize) -> u64 {
        let cs = u64::from(self.body.chunk_size);
        (self.body.size - index as u64 * cs).min(cs)
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

    #[test]
    fn every_flipped_bit_is_caught() {
        let cluster = ClusterKey::new(b"secret");
        let dk = DataKey::new(&[9; 32]);
        let bytes = Manifest::new(body(true), Some(&dk), &cluster).to_bytes();
        let good = Manifest::from_bytes(&bytes, &cluster).unwrap();
        good.check_seal(&dk).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let r = Manifest::from_bytes(&bad, &cluster).and_then(|m| m.check_seal(&dk));
            assert!(r.is_err(), "bit {i} went unnoticed");
        }
    }

    #[test]
    fn wrong_key_and_wrong_secret() {
        let cluster = ClusterKey::new(b"secret");
        let m = Manifest::new(body(true), Some(&DataKey::new(&[1; 32])), &cluster);
        let bytes = m.to_bytes();
        let decoded = Manifest::from_bytes(&bytes, &cluster).unwrap();
        assert!(matches!(
            decoded.check_seal(&DataKey::new(&[2; 32])),
            Err(Error::WrongKey(_))
        ));
        assert!(Manifest::from_bytes(&bytes, &ClusterKey::new(b"other")).is_err());
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
                let check = |b: &[u8]| Manifest::from_bytes(b, &cluster).and_then(|m| m.check_seal(&dk));
                prop_assert!(check(&bad).is_err());
                let other = if cut { bytes[..at % bytes.len()].to_vec() } else { [&bytes[..], &[extra]].concat() };
                prop_assert!(check(&other).is_err());
            }
        }
    }
}
