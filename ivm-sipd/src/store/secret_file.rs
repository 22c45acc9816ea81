//! Secrets kept as files in the data directory (the built-in SMSC's generated password, the
//! master key of encryption at rest, the generated TLS key): written readable by their owner
//! only, and synced before anyone relies on them.

use std::io::Write;
use std::path::Path;

/// Writes `text` to a new file at `path` with mode 0600 (on Unix); an existing file is
/// replaced only when `replace` is set.
pub fn write(path: &Path, text: &str, replace: bool) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if replace {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_secret_is_for_its_owner_and_not_overwritten_unless_asked() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret");
        super::write(&path, "one\n", false)?;
        assert!(super::write(&path, "two\n", false).is_err(), "create_new");
        super::write(&path, "three\n", true)?;
        assert_eq!(std::fs::read_to_string(&path)?, "three\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path)?.permissions().mode() & 0o777, 0o600);
        }
        Ok(())
    }
}
