//! All of dstore's cryptography, and the only module that names the crypto crates.
//!
//! - Chunk encryption keeps the seed's format, a 16-byte IV in front of AES-256-CTR
//!   ciphertext, and makes it authenticated with a synthetic IV (SIV):
//!   `IV = HMAC-SHA256(K_iv, plaintext)[..16]`, recomputed and compared after decryption, so
//!   any changed bit is caught. Equal plaintexts give equal ciphertexts under one data key,
//!   which keeps deduplication working under encryption.
//! - Subkeys are derived from a 32-byte root (the data key, or the cluster secret) as
//!   `HMAC-SHA256(root, "dstore/v1/" || label)`; the root itself is never used as a key.
//! - Ids are BLAKE3 (256-bit, no known collisions, four times faster than SHA-256 here).
//!   SHA-1 survives only in the seed's path transform, where a collision costs nothing
//!   (two names sharing a directory path) because the file content is still checked by its
//!   BLAKE3 id.

use std::collections::{HashSet, VecDeque};
use std::sync::{LazyLock, Mutex};

use aes::Aes256;
use aes_gcm::aead::{Aead, AeadInOut, Payload};
use aes_gcm::Aes256Gcm;
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac::{KeyInit, Mac};
use rand::TryRng;
use sha1::Digest;

use crate::error::{Error, Result};

pub const KEY_LEN: usize = 32;
pub const IV_LEN: usize = 16;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;
type Aes256Ctr = ctr::Ctr128BE<Aes256>;

/// HMAC-SHA256 over the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Derives a subkey for one purpose from a root secret.
pub fn derive(root: &[u8], label: &str) -> [u8; 32] {
    hmac(root, &[b"dstore/v1/", label.as_bytes()])
}

/// SHA-256 over the concatenation of `parts` (handshake transcripts).
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = sha2::Sha256::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Compares two byte strings in time that does not depend on where they differ.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Bytes from the operating system's generator (getrandom). Failure to get randomness is
/// not recoverable for a store that makes keys, so it aborts loudly rather than proceeding.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    rand::rngs::SysRng
        .try_fill_bytes(&mut out)
        .expect("the operating system's random generator failed");
    out
}

/// The id of a chunk: BLAKE3 of the bytes stored for it (ciphertext when encrypted).
pub fn chunk_hash(stored: &[u8]) -> [u8; 32] {
    *blake3::hash(stored).as_bytes()
}

/// The id of a key's name, domain-separated from chunk ids.
pub fn key_hash(key: &str) -> [u8; 32] {
    blake3::derive_key("dstore v1 key id", key.as_bytes())
}

/// SHA-1 of a name as 40 hex characters, for the seed's path transform.
pub fn sha1_hex(name: &[u8]) -> String {
    hex::encode(sha1::Sha1::digest(name))
}

/// The keys derived from one 32-byte data key. Whoever holds it can read and write the
/// values encrypted under it; nodes given the same data key read each other's values.
#[derive(Clone)]
pub struct DataKey {
    enc: [u8; 32],
    iv: [u8; 32],
    /// Signs manifests (their seal): anyone can check a seal against its public key, so
    /// storage nodes without the data key can refuse to replace a sealed manifest with one
    /// its key did not sign.
    signer: ed25519_dalek::SigningKey,
    fingerprint: [u8; 16],
}

impl DataKey {
    pub fn new(raw: &[u8; KEY_LEN]) -> Self {
        let fp = derive(raw, "key fingerprint");
        Self {
            enc: derive(raw, "chunk encryption"),
            iv: derive(raw, "chunk iv"),
            signer: ed25519_dalek::SigningKey::from_bytes(&derive(raw, "manifest signing key")),
            fingerprint: fp[..16].try_into().expect("16 of 32 bytes"),
        }
    }

    /// A public, non-secret tag of this key, stored in manifests so that a read under
    /// another key can say "wrong key" instead of "corrupt".
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    /// Encrypts one chunk: `IV || AES-256-CTR(K_enc, IV, plaintext)` with the synthetic IV.
    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let iv = &hmac(&self.iv, &[plaintext])[..IV_LEN];
        let mut out = Vec::with_capacity(IV_LEN + plaintext.len());
        out.extend_from_slice(iv);
        out.extend_from_slice(plaintext);
        self.keystream(iv, &mut out[IV_LEN..]);
        out
    }

    /// Decrypts a sealed chunk and checks its synthetic IV: any changed bit of IV or
    /// ciphertext makes this an integrity error.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>> {
        if sealed.len() < IV_LEN {
            return Err(Error::Integrity("sealed chunk shorter than its IV".into()));
        }
        let (iv, ciphertext) = sealed.split_at(IV_LEN);
        let mut plaintext = ciphertext.to_vec();
        self.keystream(iv, &mut plaintext);
        let expected = hmac(&self.iv, &[&plaintext]);
        if !ct_eq(&expected[..IV_LEN], iv) {
            return Err(Error::Integrity(
                "chunk fails its authentication check".into(),
            ));
        }
        Ok(plaintext)
    }

    /// The public key of this data key's manifest signatures: names the key in a seal.
    pub fn seal_public(&self) -> [u8; 32] {
        self.signer.verifying_key().to_bytes()
    }

    /// The signature of a manifest's body under this data key.
    pub fn sign_manifest(&self, body: &[u8]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        let signature = self.signer.sign(body).to_bytes();
        SEALS_CHECKED.remember(SealsChecked::digest(&self.seal_public(), body, &signature));
        signature
    }

    fn keystream(&self, iv: &[u8], buf: &mut [u8]) {
        let mut cipher =
            Aes256Ctr::new_from_slices(&self.enc, iv).expect("32-byte key, 16-byte IV");
        cipher.apply_keystream(buf);
    }
}

/// Whether `signature` is the signature of `body` by the data key whose seal key is `public`
/// (`DataKey::sign_manifest`); any node can check it.
pub fn verify_manifest_seal(public: &[u8; 32], body: &[u8], signature: &[u8]) -> bool {
    let Ok(sig) = <[u8; 64]>::try_from(signature) else {
        return false;
    };
    let digest = SealsChecked::digest(public, body, &sig);
    if SEALS_CHECKED.holds(&digest) {
        return true;
    }
    let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
        return false;
    };
    let good = key
        .verify_strict(body, &ed25519_dalek::Signature::from_bytes(&sig))
        .is_ok();
    if good {
        SEALS_CHECKED.remember(digest);
    }
    good
}

/// Seals this process made or checked lately, so that reading a hot key (or a value this
/// process wrote) does not check the same signature again: a check costs tens of
/// microseconds, more than the rest of a small read. Each is remembered by a BLAKE3 hash of
/// the seal key, the signature and the signed body together (the first two of fixed length),
/// so only those exact bytes match; the oldest are forgotten first. Under 2 MiB.
#[derive(Default)]
struct SealsChecked {
    seen: Mutex<Remembered>,
}

/// The digests remembered, and the order they came in.
#[derive(Default)]
struct Remembered {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// Seals remembered.
const SEALS_REMEMBERED: usize = 16_384;

static SEALS_CHECKED: LazyLock<SealsChecked> = LazyLock::new(SealsChecked::default);

impl SealsChecked {
    fn digest(public: &[u8; 32], body: &[u8], signature: &[u8; 64]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("dstore/v1/seal checked");
        h.update(public).update(signature).update(body);
        *h.finalize().as_bytes()
    }

    /// The set, even if a thread panicked holding it (it is only ever a set of digests).
    fn lock(&self) -> std::sync::MutexGuard<'_, Remembered> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn holds(&self, digest: &[u8; 32]) -> bool {
        self.lock().set.contains(digest)
    }

    fn remember(&self, digest: [u8; 32]) {
        let mut seen = self.lock();
        if seen.set.contains(&digest) {
            return;
        }
        if seen.order.len() >= SEALS_REMEMBERED {
            let oldest = seen.order.pop_front().expect("not empty");
            seen.set.remove(&oldest);
        } else if seen.order.is_empty() {
            seen.order.reserve_exact(SEALS_REMEMBERED);
            seen.set.reserve(SEALS_REMEMBERED);
        }
        seen.set.insert(digest);
        seen.order.push_back(digest);
    }
}

/// What a client credential starts with (`ClusterKey::client_credential`).
pub const CLIENT_CREDENTIAL_PREFIX: &str = "dstore-client:";

/// Keys derived from the cluster secret, held by two kinds of process.
///
/// - The *client credential* is `derive(secret, "client credential")` together with the
///   public half of the member key below. It cannot be turned back into the secret. Clients
///   and members both hold it: it proves membership of the cluster in the handshake, keys its
///   sessions, and MACs manifests (which clients write).
/// - The *member key* is an Ed25519 key pair whose seed is derived from the secret: only
///   holders of the secret can sign with it, and every holder of the client credential can
///   check such a signature. A process proves in the handshake that it holds the secret by
///   signing the transcript with it; only such a process may be a member (own data, answer
///   repair questions, depart) or ask a member to leave.
#[derive(Clone)]
pub struct ClusterKey {
    manifest: [u8; 32],
    fingerprint: [u8; 16],
    handshake: [u8; 32],
    session: [u8; 32],
    client: [u8; 32],
    member_public: ed25519_dalek::VerifyingKey,
    /// `None` for a process given only the client credential.
    member: Option<ed25519_dalek::SigningKey>,
}

impl ClusterKey {
    /// From the cluster secret: a member's keys.
    pub fn new(secret: &[u8]) -> Self {
        let member = ed25519_dalek::SigningKey::from_bytes(&derive(secret, "member key"));
        let mut key = Self::client(&derive(secret, "client credential"), member.verifying_key());
        key.member = Some(member);
        key
    }

    /// From what an operator gave: the cluster secret, or a client credential (it starts
    /// with `CLIENT_CREDENTIAL_PREFIX`).
    pub fn from_credential(given: &[u8]) -> Result<Self> {
        let Some(hex_part) = given.strip_prefix(CLIENT_CREDENTIAL_PREFIX.as_bytes()) else {
            return Ok(Self::new(given));
        };
        let bad = || {
            Error::InvalidArgument(format!(
                "a client credential is {CLIENT_CREDENTIAL_PREFIX} and 128 hex digits \
                 (`dstore client-credential` prints one)"
            ))
        };
        let text = std::str::from_utf8(hex_part).map_err(|_| bad())?.trim();
        let mut raw = [0u8; 64];
        hex::decode_to_slice(text, &mut raw).map_err(|_| bad())?;
        let public: [u8; 32] = raw[32..].try_into().expect("32 of 64 bytes");
        let member_public = ed25519_dalek::VerifyingKey::from_bytes(&public).map_err(|_| bad())?;
        let client: [u8; 32] = raw[..32].try_into().expect("32 of 64 bytes");
        Ok(Self::client(&client, member_public))
    }

    fn client(client: &[u8; 32], member_public: ed25519_dalek::VerifyingKey) -> Self {
        let fp = derive(client, "cluster fingerprint");
        Self {
            manifest: derive(client, "cluster manifest mac"),
            fingerprint: fp[..16].try_into().expect("16 of 32 bytes"),
            handshake: derive(client, "handshake proof"),
            session: derive(client, "session keys"),
            client: *client,
            member_public,
            member: None,
        }
    }

    /// The credential a client of this cluster needs (and no more): give it to client
    /// machines instead of the secret.
    pub fn client_credential(&self) -> String {
        format!(
            "{CLIENT_CREDENTIAL_PREFIX}{}{}",
            hex::encode(self.client),
            hex::encode(self.member_public.as_bytes())
        )
    }

    /// Whether this process holds the member key (was given the secret itself).
    pub fn is_member(&self) -> bool {
        self.member.is_some()
    }

    /// A public tag of the cluster, kept in each root so that opening a root with another
    /// cluster's secret is refused instead of taking every manifest for corrupt.
    pub fn fingerprint(&self) -> [u8; 16] {
        self.fingerprint
    }

    pub fn manifest_mac(&self, body: &[u8]) -> [u8; 32] {
        hmac(&self.manifest, &[body])
    }

    /// A side's proof that it holds the client credential, bound to one transcript.
    pub fn handshake_proof(&self, side: &str, transcript: &[u8; 32]) -> [u8; 32] {
        hmac(&self.handshake, &[side.as_bytes(), transcript])
    }

    /// A side's signature with the member key over one transcript; `None` without it.
    pub fn member_signature(&self, side: &str, transcript: &[u8; 32]) -> Option<[u8; 64]> {
        use ed25519_dalek::Signer;
        let message = [b"dstore member/".as_slice(), side.as_bytes(), transcript].concat();
        self.member.as_ref().map(|k| k.sign(&message).to_bytes())
    }

    /// Checks a `member_signature`.
    pub fn is_member_signature(&self, side: &str, transcript: &[u8; 32], sig: &[u8; 64]) -> bool {
        let message = [b"dstore member/".as_slice(), side.as_bytes(), transcript].concat();
        self.member_public
            .verify_strict(&message, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }

    /// The key of one direction of the connection that `transcript` opened, given the
    /// Diffie-Hellman secret its two ephemeral keys agreed on (so a holder of the client
    /// credential who recorded the traffic still cannot read it).
    pub fn session_key(
        &self,
        direction: &str,
        transcript: &[u8; 32],
        shared: &[u8; 32],
    ) -> FrameKey {
        FrameKey::new(&hmac(
            &self.session,
            &[direction.as_bytes(), transcript, shared],
        ))
    }
}

/// A node's identity: an Ed25519 key pair kept in its root. The node id is a hash of the
/// public key, and the handshake proves the peer holds the private one, so no one can speak
/// as another node.
pub struct Identity {
    key: ed25519_dalek::SigningKey,
}

impl Identity {
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: ed25519_dalek::SigningKey::from_bytes(seed),
        }
    }

    pub fn generate() -> Self {
        Self::from_seed(&random_bytes())
    }

    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    pub fn public(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// The node id of the holder of `public`.
    pub fn id_of(public: &[u8; 32]) -> [u8; 32] {
        sha256(&[b"dstore node id", public])
    }

    pub fn id(&self) -> [u8; 32] {
        Self::id_of(&self.public())
    }

    /// Signs one side's view of a handshake transcript.
    pub fn sign(&self, side: &str, transcript: &[u8; 32]) -> [u8; 64] {
        use ed25519_dalek::Signer;
        let message = [b"dstore node/".as_slice(), side.as_bytes(), transcript].concat();
        self.key.sign(&message).to_bytes()
    }

    /// Checks a `sign` by the holder of `public`.
    pub fn verify(public: &[u8; 32], side: &str, transcript: &[u8; 32], sig: &[u8; 64]) -> bool {
        let Ok(key) = ed25519_dalek::VerifyingKey::from_bytes(public) else {
            return false;
        };
        let message = [b"dstore node/".as_slice(), side.as_bytes(), transcript].concat();
        key.verify_strict(&message, &ed25519_dalek::Signature::from_bytes(sig))
            .is_ok()
    }
}

/// An ephemeral X25519 key for one handshake.
pub struct Ephemeral(x25519_dalek::StaticSecret);

impl Ephemeral {
    pub fn new() -> Self {
        Self::from_secret(random_bytes())
    }

    /// A key from given bytes: for fuzzing, where runs must repeat.
    pub fn from_secret(secret: [u8; 32]) -> Self {
        Self(x25519_dalek::StaticSecret::from(secret))
    }

    pub fn public(&self) -> [u8; 32] {
        x25519_dalek::PublicKey::from(&self.0).to_bytes()
    }

    /// The secret shared with the holder of `theirs`; `None` for a key that forces a known
    /// result (a low-order point).
    pub fn agree(&self, theirs: &[u8; 32]) -> Option<[u8; 32]> {
        let shared = self
            .0
            .diffie_hellman(&x25519_dalek::PublicKey::from(*theirs));
        shared.was_contributory().then(|| shared.to_bytes())
    }
}

impl Default for Ephemeral {
    fn default() -> Self {
        Self::new()
    }
}

/// One direction of an encrypted connection: AES-256-GCM with the frame's sequence number as
/// the nonce. A nonce never repeats under one key (each key lives for one connection and one
/// direction, and sequence numbers only grow), and the receiver opens frame n only as frame
/// n, so a frame that is replayed, dropped, reordered or altered fails to open.
pub struct FrameKey(Aes256Gcm);

impl FrameKey {
    pub fn new(key: &[u8; 32]) -> Self {
        Self(Aes256Gcm::new_from_slice(key).expect("32-byte key"))
    }

    fn nonce(seq: u64) -> aes_gcm::Nonce<aes_gcm::aead::consts::U12> {
        let mut n = [0u8; 12];
        n[4..].copy_from_slice(&seq.to_be_bytes());
        n.into()
    }

    pub fn seal(&self, seq: u64, plaintext: &[u8]) -> Vec<u8> {
        let payload = Payload {
            msg: plaintext,
            aad: FRAME_AAD,
        };
        self.0
            .encrypt(&Self::nonce(seq), payload)
            .expect("AES-GCM encrypts any frame below 64 GiB")
    }

    /// `seal` without a copy: encrypts `buf` where it is and appends the tag (give it
    /// `FRAME_TAG_LEN` bytes of spare capacity to avoid a reallocation).
    pub fn seal_in_place(&self, seq: u64, mut buf: Vec<u8>) -> Vec<u8> {
        self.0
            .encrypt_in_place(&Self::nonce(seq), FRAME_AAD, &mut buf)
            .expect("AES-GCM encrypts any frame below 64 GiB");
        buf
    }

    pub fn open(&self, seq: u64, sealed: &[u8]) -> Result<Vec<u8>> {
        self.open_in_place(seq, sealed.to_vec())
    }

    /// `open` without a copy: decrypts `buf` where it is and drops the tag.
    pub fn open_in_place(&self, seq: u64, mut buf: Vec<u8>) -> Result<Vec<u8>> {
        self.0
            .decrypt_in_place(&Self::nonce(seq), FRAME_AAD, &mut buf)
            .map_err(|_| Error::Integrity(format!("frame {seq} fails authentication")))?;
        Ok(buf)
    }
}

const FRAME_AAD: &[u8] = b"dstore frame v1";
/// Bytes the AES-GCM tag adds to a frame.
pub const FRAME_TAG_LEN: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).unwrap()
    }

    /// A seal this process made or checked is remembered by its exact bytes: the same bytes
    /// pass without a second check; any other body, signature or key is checked in full.
    #[test]
    fn remembered_seals_match_only_their_exact_bytes() {
        let key = DataKey::new(&[5; 32]);
        let public = key.seal_public();
        let body = b"a manifest body".to_vec();
        let sig = key.sign_manifest(&body);
        assert!(SEALS_CHECKED.holds(&SealsChecked::digest(&public, &body, &sig)));
        assert!(verify_manifest_seal(&public, &body, &sig));
        let mut other_body = body.clone();
        other_body[0] ^= 1;
        assert!(!verify_manifest_seal(&public, &other_body, &sig));
        let mut other_sig = sig;
        other_sig[10] ^= 1;
        assert!(!verify_manifest_seal(&public, &body, &other_sig));
        let stranger = DataKey::new(&[6; 32]).seal_public();
        assert!(!verify_manifest_seal(&stranger, &body, &sig));
        assert!(!verify_manifest_seal(&public, &body, &sig[..63]));
        // A seal checked by someone else's signature is remembered once it passes.
        let theirs = DataKey::new(&[7; 32]);
        let body2 = b"another body".to_vec();
        let sig2 = {
            use ed25519_dalek::Signer;
            theirs.signer.sign(&body2).to_bytes()
        };
        let digest = SealsChecked::digest(&theirs.seal_public(), &body2, &sig2);
        assert!(!SEALS_CHECKED.holds(&digest));
        assert!(verify_manifest_seal(&theirs.seal_public(), &body2, &sig2));
        assert!(SEALS_CHECKED.holds(&digest));
    }

    /// NIST SP 800-38A, F.5.5 CTR-AES256.Encrypt: the cipher and counter layout we use.
    #[test]
    fn aes256_ctr_nist_vector() {
        let key = unhex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
        let iv = unhex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        let mut buf = unhex(
            "6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51
             30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710",
        );
        let mut c = Aes256Ctr::new_from_slices(&key, &iv).unwrap();
        c.apply_keystream(&mut buf);
        assert_eq!(
            hex::encode(buf),
            "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5\
             2b0930daa23de94ce87017ba2d84988ddfc9c58db67aada613c2dd08457941a6"
        );
    }

    /// RFC 4231 test case 2.
    #[test]
    fn hmac_sha256_rfc4231_vector() {
        assert_eq!(
            hex::encode(hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"])),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// The whole chunk construction, checked against values computed independently (Python's
    /// hmac module and the `cryptography` package's AES-256-CTR) for data key 00 01 .. 1f.
    #[test]
    fn seal_known_answer() {
        let raw: [u8; 32] = std::array::from_fn(|i| i as u8);
        let key = DataKey::new(&raw);
        let sealed = key.seal(b"momsbestpicture");
        assert_eq!(hex::encode(&sealed), SEAL_KAT);
        assert_eq!(key.open(&sealed).unwrap(), b"momsbestpicture");
        assert_eq!(hex::encode(key.fingerprint()), FINGERPRINT_KAT);
    }
    const SEAL_KAT: &str = "47d8b81f4123c231b1fa2e718de9ef013950a91761c44e741edc3bc399f82d";
    const FINGERPRINT_KAT: &str = "334af0ec62ba46ee38c37aec00ded8a9";

    #[test]
    fn every_flipped_bit_is_caught() {
        let key = DataKey::new(&random_bytes());
        let sealed = key.seal(b"sixteen byte msg and a bit more");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(
                matches!(key.open(&bad), Err(Error::Integrity(_))),
                "bit {i}"
            );
        }
        assert!(key.open(&sealed[..5]).is_err());
    }

    #[test]
    fn synthetic_iv_is_deterministic_and_key_dependent() {
        let a = DataKey::new(&[1; 32]);
        let b = DataKey::new(&[2; 32]);
        assert_eq!(a.seal(b"same"), a.seal(b"same"));
        assert_ne!(a.seal(b"same"), b.seal(b"same"));
        assert!(b.open(&a.seal(b"same")).is_err());
        assert_eq!(a.open(&a.seal(b"")).unwrap(), b"");
    }

    #[test]
    fn frames_open_only_in_place_and_unaltered() {
        let k = FrameKey::new(&[5; 32]);
        let sealed = k.seal(7, b"frame body");
        assert_eq!(k.open(7, &sealed).unwrap(), b"frame body");
        assert!(k.open(8, &sealed).is_err(), "replayed or reordered");
        assert!(FrameKey::new(&[6; 32]).open(7, &sealed).is_err());
        let mut bad = sealed.clone();
        bad[3] ^= 1;
        assert!(k.open(7, &bad).is_err());
    }

    #[test]
    fn seed_sha1_and_random() {
        assert_eq!(
            sha1_hex(b"momsbestpicture"),
            "6804429f74181a63c50c3d81d733a12f14a353ff"
        );
        assert_ne!(random_bytes::<32>(), random_bytes::<32>());
    }
}
