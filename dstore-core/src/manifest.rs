//! Manifests: one version of one key. A manifest names the value's chunks in order and is
//! authenticated twice: `mac` under the cluster secret, which every node can check (storage
//! nodes without the data key included), and `seal` under the data key of the writer, so that
//! only holders of the data key can make or alter what a key points to. Every manifest a
//! holder of a data key writes is sealed (plain values and tombstones too): a reader that
//! holds the key refuses one that is not, or a holder of only the cluster secret could
//! replace or delete any value (see `check_seal`).

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

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub body: ManifestBody,
    pub seal: Option<Seal>,
    pub mac: [u8; 32],
}

impl Manifest {
    /// Authenticates `body`, sealing it when the writer holds a data key (an encrypted body
    /// needs one).
    pub fn new(body: ManifestBody, data_key: Option<&DataKey>, cluster: &ClusterKey) -> Self {
        assert!(
            data_key.is_some() || !body.encrypted,
            "an encrypted manifest is sealed with the data key"
        );
        let seal = data_key.map(|key| Seal {
            key: key.seal_public(),
            signature: key.sign_manifest(&codec::encode(&body)).to_vec(),
        });
        let mac = cluster.manifest_mac(&codec::encode(&(&body, &seal)));
        Self { body, seal, mac }
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

    /// Decodes a manifest from disk or from a peer, checks the cluster MAC and that its
    /// fields agree with each other. The data-key seal is checked by `check_seal`.
    pub fn from_bytes(bytes: &[u8], cluster: &ClusterKey) -> Result<Self> {
        let m: Manifest = codec::decode_stored(bytes, "manifest")?;
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
        if !crypto::verify_manifest_seal(&seal.key, &codec::encode(b), &seal.signature) {
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
                && crypto::verify_manifest_seal(&s.key, &codec::encode(&self.body), &s.signature)
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
        good.check_seal(Some(&dk), false).unwrap();
        for i in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let r =
                Manifest::from_bytes(&bad, &cluster).and_then(|m| m.check_seal(Some(&dk), false));
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
        stripped.mac = cluster.manifest_mac(&codec::encode(&(&stripped.body, &stripped.seal)));
        assert!(Manifest::from_bytes(&stripped.to_bytes(), &cluster).is_err());
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
}
