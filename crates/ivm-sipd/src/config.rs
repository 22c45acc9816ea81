//! The configuration: one TOML file whose keys and defaults are `config/default.toml`
//! (embedded in the binary). Unknown keys and bad values are errors that name the key and
//! its line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::registrar::digest::Algorithm;

/// The embedded default configuration file.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub sip: SipConfig,
    #[serde(default)]
    pub registrar: RegistrarConfig,
    #[serde(default)]
    pub storage: StorageConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: SocketAddr,
    pub realm: String,
    pub max_message_bytes: usize,
    pub tcp_idle_timeout_secs: u64,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            realm: "ivm.local".into(),
            max_message_bytes: 65536,
            tcp_idle_timeout_secs: 300,
            t1_ms: 500,
            t2_ms: 4000,
            t4_ms: 5000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub nonce_ttl_secs: u64,
    pub auth_algorithms: Vec<Algorithm>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            nonce_ttl_secs: 300,
            auth_algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./ivm-data"),
        }
    }
}

/// A configuration error, already naming the file, key and line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The 1-based line where `key` is set inside `[section]`, if it is.
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            current = name.trim().to_owned();
        } else if current == section && t.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    None
}

impl Config {
    /// Parses a configuration text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        config.check(text).map_err(|message| ConfigError::Invalid {
            path: origin.to_owned(),
            message,
        })?;
        Ok(config)
    }

    /// The file at `path`, or the embedded defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            None => Config::from_toml(DEFAULT_TOML, Path::new("(embedded defaults)")),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                Config::from_toml(&text, p)
            }
        }
    }

    /// Checks that need more than one key or a range.
    fn check(&self, text: &str) -> Result<(), String> {
        let at = |section: &str, key: &str, why: &str| match line_of(text, section, key) {
            Some(line) => format!("{section}.{key} (line {line}): {why}"),
            None => format!("{section}.{key}: {why}"),
        };
        let r = &self.registrar;
        if r.min_expires > r.max_expires {
            return Err(at("registrar", "min_expires", "must not be above max_expires"));
        }
        if r.default_expires < r.min_expires || r.default_expires > r.max_expires {
            return Err(at(
                "registrar",
                "default_expires",
                "must lie between min_expires and max_expires",
            ));
        }
        if r.auth_algorithms.is_empty() {
            return Err(at(
                "registrar",
                "auth_algorithms",
                "name at least one of \"SHA-256\", \"MD5\"",
            ));
        }
        if r.nonce_ttl_secs == 0 {
            return Err(at("registrar", "nonce_ttl_secs", "must be above 0"));
        }
        let s = &self.sip;
        if s.realm.is_empty() || s.realm.contains('"') {
            return Err(at("sip", "realm", "must be non-empty and contain no quote"));
        }
        if s.max_message_bytes < 1024 {
            return Err(at("sip", "max_message_bytes", "must be at least 1024"));
        }
        if s.t1_ms == 0 || s.t2_ms < s.t1_ms || s.t4_ms == 0 {
            return Err(at(
                "sip",
                "t1_ms",
                "timers must satisfy 0 < t1_ms <= t2_ms and t4_ms > 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_is_the_default() {
        let c = Config::load(None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c, Config::default());
    }

    #[test]
    fn errors_name_key_and_line() {
        let err = |t: &str| {
            Config::from_toml(t, Path::new("x.toml"))
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        let e = err("[sip]\nrealm = \"a\"\nlisten_port = 5\n");
        assert!(e.contains("line 3") && e.contains("listen_port"), "{e}");
        let e = err("[sip]\n\nlisten = \"not an address\"\n");
        assert!(e.contains("line 3"), "{e}");
        let e = err("[registrar]\nmin_expires = 100\nmax_expires = 50\n");
        assert!(e.contains("registrar.min_expires (line 2)"), "{e}");
        let e = err("[registrar]\nauth_algorithms = [\"SHA-512\"]\n");
        assert!(e.contains("line 2"), "{e}");
        let c = Config::from_toml("[registrar]\nauth_algorithms = [\"MD5\"]\n", Path::new("x"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.registrar.auth_algorithms, vec![Algorithm::Md5]);
        assert_eq!(c.sip, SipConfig::default());
    }
}
