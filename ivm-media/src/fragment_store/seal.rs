//! Encryption at rest of the fragment log: AES-256-GCM (`aes-gcm`, RustCrypto) with envelope
//! keys. Each message gets a random data key; every record of the message carries that key
//! wrapped (AES-256-GCM) by a master key, named by the first 4 bytes of the master key's
//! SHA-256, so a record can be opened with nothing but itself and the keyring — also after a
//! crash, before any index row names it. The record's frames are sealed under the data key
//! with a random 96-bit nonce per record and the record header as associated data (a record
//! moved to another message or frame position does not open); the wrapped key is bound to its
//! message id the same way.
//!
//! Rotation: a [`Keyring`] seals with its first key and opens with any of them, so a new
//! master key goes first and the old one stays behind it until every message sealed under it
//! has expired.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};

/// Bytes of a master or data key.
pub const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const KEY_ID_BYTES: usize = 4;
/// The wrapped data key in a record: master key id, nonce, sealed key with its tag.
const WRAPPED_BYTES: usize = KEY_ID_BYTES + NONCE_BYTES + KEY_BYTES + TAG_BYTES;
/// What sealing adds to a record: the wrapped key, the frames' nonce and their tag.
pub(super) const SEAL_OVERHEAD: usize = WRAPPED_BYTES + NONCE_BYTES + TAG_BYTES;

/// Why a record could not be sealed, or a sealed one did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    NoKeys,
    UnknownKey,
    Rejected,
    Short,
    /// AES-GCM refused to seal (only for inputs far beyond a record's size).
    Sealing,
}

impl SealError {
    /// What went wrong, as a corrupt record's reason says it.
    pub fn reason(self) -> &'static str {
        match self {
            SealError::NoKeys => "record is sealed and no master key is configured",
            SealError::UnknownKey => "record is sealed under a master key not in the keyring",
            SealError::Rejected => "sealed record does not open (tampered, or the wrong master key)",
            SealError::Short => "sealed record too short",
            SealError::Sealing => "frames could not be sealed",
        }
    }
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for SealError {}

/// One master key.
#[derive(Clone)]
pub struct MasterKey {
    id: [u8; KEY_ID_BYTES],
    cipher: Aes256Gcm,
}

impl MasterKey {
    pub fn new(key: &[u8; KEY_BYTES]) -> MasterKey {
        let digest = Sha256::digest(key);
        let mut id = [0u8; KEY_ID_BYTES];
        id.copy_from_slice(&digest[..KEY_ID_BYTES]);
        MasterKey {
            id,
            cipher: Aes256Gcm::new(&(*key).into()),
        }
    }

    /// The key's name in records: the first bytes of its SHA-256, in hex.
    pub fn id(&self) -> String {
        self.id.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.id())
    }
}

/// The master keys: the first seals, each opens what was sealed under it.
#[derive(Debug, Clone)]
pub struct Keyring {
    keys: Vec<MasterKey>,
    seals: bool,
}

impl Keyring {
    /// `current` seals; `older` only open.
    pub fn new(current: MasterKey, older: Vec<MasterKey>) -> Keyring {
        let mut keys = vec![current];
        keys.extend(older);
        Keyring { keys, seals: true }
    }

    /// Keys that open what was sealed under them but seal nothing new (encryption turned off).
    pub fn open_only(self) -> Keyring {
        Keyring { seals: false, ..self }
    }

    /// Whether new records are sealed.
    pub fn seals(&self) -> bool {
        self.seals
    }

    fn current(&self) -> &MasterKey {
        &self.keys[0]
    }

    /// A new data key for one message, wrapped for its records.
    pub(super) fn data_key(&self, message_id: i64) -> Result<DataKey, SealError> {
        let key: [u8; KEY_BYTES] = rand::random();
        let master = self.current();
        let mut wrapped = Vec::with_capacity(WRAPPED_BYTES);
        wrapped.extend_from_slice(&master.id);
        encrypt(&master.cipher, &key, &wrap_aad(message_id, &master.id), &mut wrapped)?;
        Ok(DataKey {
            cipher: Aes256Gcm::new(&key.into()),
            wrapped: wrapped.try_into().map_err(|_| SealError::Sealing)?,
        })
    }

    fn unwrap(&self, message_id: i64, wrapped: &[u8]) -> Result<Aes256Gcm, SealError> {
        let (id, nonce_and_sealed) = wrapped.split_at(KEY_ID_BYTES);
        let master = self.keys.iter().find(|k| k.id == id).ok_or(SealError::UnknownKey)?;
        let key = decrypt(&master.cipher, nonce_and_sealed, &wrap_aad(message_id, &master.id))?;
        Aes256Gcm::new_from_slice(&key).map_err(|_| SealError::Rejected)
    }
}

/// Appends `plain` sealed to `out`: a random 96-bit nonce, then the ciphertext and its tag.
fn encrypt(cipher: &Aes256Gcm, plain: &[u8], aad: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
    let nonce: [u8; NONCE_BYTES] = rand::random();
    let sealed = cipher
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| SealError::Sealing)?;
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(())
}

/// Opens what [`encrypt`] sealed: the 96-bit nonce followed by the ciphertext and its tag.
fn decrypt(cipher: &Aes256Gcm, nonce_and_sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, SealError> {
    if nonce_and_sealed.len() < NONCE_BYTES + TAG_BYTES {
        return Err(SealError::Short);
    }
    let (nonce, sealed) = nonce_and_sealed.split_at(NONCE_BYTES);
    let nonce: [u8; NONCE_BYTES] = nonce.try_into().map_err(|_| SealError::Short)?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
        .map_err(|_| SealError::Rejected)
}

fn wrap_aad(message_id: i64, key_id: &[u8]) -> Vec<u8> {
    let mut aad = b"IVM data key".to_vec();
    aad.extend_from_slice(&message_id.to_le_bytes());
    aad.extend_from_slice(key_id);
    aad
}

/// One message's data key, with its wrapped form for the records.
pub(super) struct DataKey {
    cipher: Aes256Gcm,
    wrapped: [u8; WRAPPED_BYTES],
}

impl DataKey {
    /// Appends the sealed form of `plain` (the frames) to `out`: the wrapped key, the nonce,
    /// the ciphertext and its tag. `header` is what the record says before it.
    pub(super) fn seal(&self, header: &[u8], plain: &[u8], out: &mut Vec<u8>) -> Result<(), SealError> {
        out.extend_from_slice(&self.wrapped);
        encrypt(&self.cipher, plain, header, out)
    }
}

/// The frames of a sealed record body (`sealed` is what [`DataKey::seal`] appended).
pub(super) fn open(
    keys: Option<&Keyring>,
    message_id: i64,
    header: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, SealError> {
    let keys = keys.ok_or(SealError::NoKeys)?;
    if sealed.len() < SEAL_OVERHEAD {
        return Err(SealError::Short);
    }
    let (wrapped, nonce_and_sealed) = sealed.split_at(WRAPPED_BYTES);
    let cipher = keys.unwrap(message_id, wrapped)?;
    decrypt(&cipher, nonce_and_sealed, header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(byte: u8) -> Keyring {
        Keyring::new(MasterKey::new(&[byte; KEY_BYTES]), Vec::new())
    }

    #[test]
    fn sealed_frames_open_with_the_keyring_and_nothing_else() {
        let keys = ring(7);
        let plain = vec![0x55u8; 480];
        let mut out = Vec::new();
        keys.data_key(42)
            .and_then(|k| k.seal(b"header", &plain, &mut out))
            .expect("sealed");
        assert_eq!(out.len(), plain.len() + SEAL_OVERHEAD);
        assert!(
            !out.windows(16).any(|w| w == &plain[..16]),
            "plaintext in the sealed form"
        );
        assert_eq!(open(Some(&keys), 42, b"header", &out), Ok(plain.clone()));

        assert_eq!(open(None, 42, b"header", &out), Err(SealError::NoKeys));
        assert_eq!(open(Some(&ring(8)), 42, b"header", &out), Err(SealError::UnknownKey));
        assert_eq!(
            open(Some(&keys), 43, b"header", &out),
            Err(SealError::Rejected),
            "another message"
        );
        assert_eq!(
            open(Some(&keys), 42, b"HEADER", &out),
            Err(SealError::Rejected),
            "another header"
        );
        let mut flipped = out.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(open(Some(&keys), 42, b"header", &flipped), Err(SealError::Rejected));
    }

    #[test]
    fn a_rotated_keyring_opens_what_the_old_key_sealed() {
        let old = ring(1);
        let mut out = Vec::new();
        old.data_key(5)
            .and_then(|k| k.seal(b"h", b"old audio", &mut out))
            .expect("sealed");
        let rotated = Keyring::new(MasterKey::new(&[2; KEY_BYTES]), vec![MasterKey::new(&[1; KEY_BYTES])]);
        assert_eq!(open(Some(&rotated), 5, b"h", &out), Ok(b"old audio".to_vec()));
        let mut new = Vec::new();
        rotated
            .data_key(6)
            .and_then(|k| k.seal(b"h", b"new audio", &mut new))
            .expect("sealed");
        assert_eq!(
            open(Some(&old), 6, b"h", &new),
            Err(SealError::UnknownKey),
            "sealed under the new key"
        );
    }
}
