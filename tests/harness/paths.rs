//! Locations of the things the tests use.

use std::path::{Path, PathBuf};

/// The workspace root (the parent of this package's directory).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The cargo target directory: `$CARGO_TARGET_DIR` (relative paths are
/// taken from the workspace root) or `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() { repo_root().join(dir) } else { dir }
        }
        _ => repo_root().join("target"),
    }
}

/// The server binary under test: `$IVM_SIPD_BIN`, else
/// `<target>/release/ivm-sipd`.
pub fn server_binary() -> PathBuf {
    match std::env::var_os("IVM_SIPD_BIN") {
        Some(bin) if !bin.is_empty() => PathBuf::from(bin),
        _ => target_dir().join("release").join("ivm-sipd"),
    }
}

/// `server_binary()`, or an error that says how to build it.
pub fn require_server_binary() -> anyhow::Result<PathBuf> {
    let bin = server_binary();
    if bin.is_file() {
        Ok(bin)
    } else {
        anyhow::bail!(
            "server binary {} not found: build it with `cargo build --release -p ivm-sipd` \
             (./test.sh does), or point IVM_SIPD_BIN at it",
            bin.display()
        )
    }
}

/// `sipp-scenarios/` at the workspace root.
pub fn scenario_dir() -> PathBuf {
    repo_root().join("sipp-scenarios")
}

/// `tests/testdata/` (this package's test data).
pub fn testdata_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata")
}
