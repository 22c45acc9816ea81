//! The master keys of encryption at rest (`[storage] encrypt_audio`, `master_key_file`,
//! `old_master_key_files`, `IVM_MASTER_KEY`): read from the environment or files, or made at
//! the first start into `<data_dir>/master-key` (owner-only), and given to the fragment store
//! as its keyring.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ivm_media::fragment_store::{KEY_BYTES, Keyring, MasterKey};

use crate::config::StorageConfig;

/// The file in the data directory that holds a generated master key.
pub const KEY_FILE: &str = "master-key";
/// The environment variable that holds the master key, when set.
pub const KEY_ENV: &str = "IVM_MASTER_KEY";

/// A key from its text form: 64 hex digits, surrounding white space ignored.
fn parse(text: &str) -> anyhow::Result<MasterKey> {
    let raw = hex::decode(text.trim()).context("a master key is 64 hex digits")?;
    let key: [u8; KEY_BYTES] = raw
        .try_into()
        .map_err(|r: Vec<u8>| anyhow::anyhow!("a master key is 32 bytes (64 hex digits), not {}", r.len()))?;
    Ok(MasterKey::new(&key))
}

fn read(path: &Path) -> anyhow::Result<MasterKey> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading the master key {}", path.display()))?;
    parse(&text).with_context(|| format!("master key file {}", path.display()))
}

fn key_path(cfg: &StorageConfig) -> PathBuf {
    if cfg.master_key_file.as_os_str().is_empty() {
        cfg.data_dir.join(KEY_FILE)
    } else {
        cfg.master_key_file.clone()
    }
}

/// Writes a new random key to `path`, readable by its owner only.
fn generate(path: &Path) -> anyhow::Result<MasterKey> {
    let key: [u8; KEY_BYTES] = rand::random();
    crate::store::secret_file::write(path, &format!("{}\n", hex::encode(key)), false)
        .with_context(|| format!("cannot write a new master key to {}", path.display()))?;
    let key = MasterKey::new(&key);
    tracing::warn!(file = %path.display(), key = %key.id(), "master key generated for encryption at rest: keep a copy elsewhere, audio sealed under it is lost without it");
    Ok(key)
}

/// The server's keyring: the current key (from `IVM_MASTER_KEY`, the configured file, or
/// the data directory's, made when missing and `create` is set) and the old ones. `None`
/// when no key exists and none is to be made (`create` false: admin commands).
fn keyring(cfg: &StorageConfig, create: bool) -> anyhow::Result<Option<Keyring>> {
    let path = key_path(cfg);
    let current = match std::env::var(KEY_ENV) {
        Ok(text) if !text.trim().is_empty() => Some(parse(&text).with_context(|| format!("${KEY_ENV}"))?),
        _ if path.exists() => Some(read(&path)?),
        _ if create && cfg.encrypt_audio && cfg.master_key_file.as_os_str().is_empty() => Some(generate(&path)?),
        _ if cfg.encrypt_audio && create => {
            anyhow::bail!("master_key_file {} does not exist", path.display())
        }
        _ => None,
    };
    let old = cfg
        .old_master_key_files
        .iter()
        .map(|p| read(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(match current {
        Some(key) => {
            let ring = Keyring::new(key, old);
            Some(if cfg.encrypt_audio { ring } else { ring.open_only() })
        }
        None => {
            let mut old = old.into_iter();
            old.next().map(|first| Keyring::new(first, old.collect()).open_only())
        }
    })
}

/// The keyring of `ivm-sipd run`, a key made at the first start.
pub fn for_server(cfg: &StorageConfig) -> anyhow::Result<Option<Keyring>> {
    let ring = keyring(cfg, true)?;
    if let Some(r) = &ring {
        tracing::info!(sealing = r.seals(), "encryption at rest: master keys loaded");
    }
    Ok(ring)
}

/// The keyring for reading audio in admin commands: never makes a key.
pub fn for_reading(cfg: &StorageConfig) -> anyhow::Result<Option<Keyring>> {
    keyring(cfg, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_then_read_and_bad_keys_are_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StorageConfig {
            data_dir: dir.path().to_owned(),
            ..StorageConfig::default()
        };
        assert!(
            for_reading(&cfg).expect("no key").is_none(),
            "admin commands make no key"
        );
        let first = for_server(&cfg).expect("made").expect("a keyring");
        assert!(first.seals());
        let text = std::fs::read_to_string(dir.path().join(KEY_FILE)).expect("key file");
        assert_eq!(text.trim().len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .expect("stat")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The same key the next time (not a new one).
        let again = for_server(&cfg).expect("read").expect("a keyring");
        assert_eq!(format!("{first:?}"), format!("{again:?}"));

        assert!(parse("00ff").is_err(), "too short");
        assert!(parse(&"zz".repeat(32)).is_err(), "not hex");
        let missing = StorageConfig {
            master_key_file: dir.path().join("nowhere"),
            ..cfg.clone()
        };
        assert!(
            for_server(&missing).is_err(),
            "a configured key file that does not exist"
        );
        let off = StorageConfig {
            encrypt_audio: false,
            ..cfg
        };
        assert!(!for_server(&off).expect("read").expect("kept for old audio").seals());
    }
}
