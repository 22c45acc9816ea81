//! The configuration: one TOML file whose keys and defaults are `config/default.toml`
//! (embedded in the binary). Unknown keys and bad values are errors that name the key and
//! its line.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use crate::stack::digest::Algorithm;
use crate::store::trunk_spec::TrunkSpec;

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
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub calls: CallsConfig,
    #[serde(default)]
    pub smsc: SmsConfig,
    #[serde(default)]
    pub security: SecurityConfig,
    /// `[[trunk]]` tables. They are merged with the trunks added by `ivm-sipd trunk add`
    /// (kept in the store); on a name clash the config file wins and the stored trunk is
    /// ignored.
    #[serde(default, rename = "trunk")]
    pub trunks: Vec<TrunkSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    pub listen: SocketAddr,
    pub realm: String,
    pub max_message_bytes: usize,
    pub tcp_idle_timeout_secs: u64,
    /// How long a message begun on a TCP connection may take to complete.
    pub tcp_message_timeout_secs: u64,
    /// Connections one remote IP address may hold at once.
    pub tcp_max_connections_per_ip: usize,
    /// SIP over TLS: the listen address, or `off`.
    pub tls_listen: String,
    /// The certificate chain and its key (PEM); both empty: a self-signed pair generated into
    /// the data directory at the first start.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
    pub t1_ms: u64,
    pub t2_ms: u64,
    pub t4_ms: u64,
}

impl SipConfig {
    /// Where TLS listens: `None` when `tls_listen = "off"`.
    pub fn tls_addr(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        match self.tls_listen.trim() {
            "off" | "" => Ok(None),
            addr => addr.parse().map(Some),
        }
    }
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 5060)),
            realm: "ivm.local".into(),
            max_message_bytes: 65536,
            tcp_idle_timeout_secs: 300,
            tcp_message_timeout_secs: 10,
            tcp_max_connections_per_ip: 64,
            tls_listen: "127.0.0.1:5061".into(),
            tls_cert_file: PathBuf::new(),
            tls_key_file: PathBuf::new(),
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
            // MD5 only: stock phones (baresip 1.0.0, SIPp) fail on a SHA-256 challenge.
            auth_algorithms: vec![Algorithm::Md5],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// Seal new audio records with AES-256-GCM (encryption at rest).
    pub encrypt_audio: bool,
    /// The master key's file (64 hex digits); empty: `<data_dir>/master-key`, generated at the
    /// first start. `IVM_MASTER_KEY` in the environment wins over both.
    pub master_key_file: PathBuf,
    /// Earlier master keys, which only open what was sealed under them (after a rotation).
    pub old_master_key_files: Vec<PathBuf>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./ivm-data"),
            encrypt_audio: true,
            master_key_file: PathBuf::new(),
            old_master_key_files: Vec::new(),
        }
    }
}

/// An RTP port range `first-last` (`media.rtp_ports`, `--rtp-ports`): `first` is even (RTP
/// on even ports, RTCP on the odd one above), `last` > `first`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    /// `(first, last)`.
    pub fn bounds(self) -> (u16, u16) {
        (self.first, self.last)
    }
}

impl From<PortRange> for (u16, u16) {
    fn from(r: PortRange) -> (u16, u16) {
        r.bounds()
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl FromStr for PortRange {
    type Err = String;

    fn from_str(s: &str) -> Result<PortRange, String> {
        let bad = || format!("{s:?} is not a port range like \"20000-29999\"");
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || !first.is_multiple_of(2) {
            return Err(format!("RTP port range {s:?}: the first port must be even and above 0"));
        }
        if last <= first {
            return Err(format!(
                "RTP port range {s:?}: the last port must be above the first (RTP + RTCP need two)"
            ));
        }
        Ok(PortRange { first, last })
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PortRange, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

/// `""` as `None`, anything else parsed.
fn empty_as_none<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let s = String::deserialize(d)?;
    if s.trim().is_empty() {
        return Ok(None);
    }
    s.trim().parse().map(Some).map_err(serde::de::Error::custom)
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// RTP ports (`"20000-29999"`).
    pub rtp_ports: PortRange,
    /// The IP for RTP sockets and SDP; `None` (`""`) = the `sip.listen` IP, see
    /// [`MediaConfig::rtp_ip_for`].
    #[serde(deserialize_with = "empty_as_none")]
    pub rtp_ip: Option<IpAddr>,
    /// Fragment store group commit interval.
    pub commit_interval_ms: u64,
    /// 20 ms frames per stored fragment.
    pub frames_per_fragment: u32,
    /// Frames kept in memory per live message.
    pub ring_frames: u32,
    /// Listeners that are behind are paced this many times real time (>= 1.0).
    pub catch_up_speed: f64,
}

impl Default for MediaConfig {
    fn default() -> Self {
        MediaConfig {
            rtp_ports: PortRange {
                first: 20000,
                last: 29999,
            },
            rtp_ip: None,
            commit_interval_ms: 200,
            frames_per_fragment: 50,
            ring_frames: 3000,
            catch_up_speed: 1.0,
        }
    }
}

impl MediaConfig {
    /// The RTP IP: `rtp_ip`, or else the IP of `sip_listen` (which may be unspecified,
    /// `0.0.0.0`, when SIP listens on every interface).
    pub fn rtp_ip_for(&self, sip_listen: SocketAddr) -> IpAddr {
        self.rtp_ip.unwrap_or(sip_listen.ip())
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// The dial plan file; `None` (`""`) = the embedded `dialplans/default.toml`. A relative
    /// path is relative to the working directory (like `storage.data_dir`).
    #[serde(deserialize_with = "empty_as_none")]
    pub dialplan: Option<PathBuf>,
    /// How long a target's phone rings before the delivery is `unanswered`.
    pub ring_timeout_secs: u64,
    /// The beep played to the sender before recording.
    pub beep_ms: u64,
    /// The longest message; recording stops there.
    pub max_message_secs: u64,
    /// The most targets of one IVM (after group expansion); more is answered 404.
    pub max_targets: usize,
    /// How long the smart caller-ID call rings before it is cancelled (a missed call).
    pub callerid_ring_secs: u64,
    /// Messages not saved are expired this many days after they were recorded.
    pub expiry_days: u64,
    /// Calls (IVM, retrieval, mailbox) in progress at once; a new INVITE beyond is answered
    /// `503` with Retry-After, so the calls in progress keep their quality.
    pub max_calls: usize,
}

impl Default for CallsConfig {
    fn default() -> Self {
        CallsConfig {
            dialplan: None,
            ring_timeout_secs: 20,
            beep_ms: 200,
            max_message_secs: 600,
            max_targets: 10,
            callerid_ring_secs: 8,
            expiry_days: 30,
            max_calls: 2000,
        }
    }
}

/// How SMS notifications leave (`[smsc]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsMode {
    /// Start the built-in SMSC on `listen` and send to it (the zero-setup default).
    Builtin,
    /// Send to the SMSC at `address`.
    External,
    /// Send no SMS.
    Off,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    pub mode: SmsMode,
    /// Where the built-in SMSC listens.
    pub listen: SocketAddr,
    /// The external SMSC (`host:port`), for `mode = "external"`.
    pub address: String,
    pub system_id: String,
    pub password: String,
    /// The sender of our SMS: a short name or a number.
    pub source_addr: String,
    /// Most submit_sm awaiting a response.
    pub window: usize,
    /// Most submit_sm per second; 0 = no limit.
    pub rate_per_sec: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        SmsConfig {
            mode: SmsMode::Builtin,
            listen: SocketAddr::from(([127, 0, 0, 1], 2775)),
            address: String::new(),
            system_id: "ivm".into(),
            password: String::new(),
            source_addr: "IVM".into(),
            window: 10,
            rate_per_sec: 0,
        }
    }
}

/// The guard against guessing, scanning and floods (`[security]`, `services::guard`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `false` turns every check below off.
    pub enabled: bool,
    /// Failed authentications from one source address within `failure_window_secs` that ban it.
    pub max_auth_failures: u32,
    /// Failed authentications for one account (from anywhere) within the window after which,
    /// for `account_protect_secs`, the account authenticates only from addresses it has
    /// authenticated from before.
    pub max_account_failures: u32,
    pub failure_window_secs: u64,
    pub account_protect_secs: u64,
    /// The first ban; each further ban of the same source lasts twice the one before, up to
    /// `max_ban_secs`.
    pub ban_secs: u64,
    pub max_ban_secs: u64,
    /// New requests per second from one source address, by kind; beyond, `503` with
    /// Retry-After. 0 = no limit. A source may burst `burst_secs` worth at once.
    pub register_per_sec: u32,
    pub invite_per_sec: u32,
    pub options_per_sec: u32,
    pub other_per_sec: u32,
    pub burst_secs: u32,
    /// Requests refused for flooding within the window that ban the source; 0 = never.
    pub flood_ban_after: u32,
    /// Requests whose User-Agent contains one of these (any case) are dropped and their
    /// source banned.
    pub scanner_user_agents: Vec<String>,
    /// Sources never banned nor limited (a proxy in front of IVM, a load generator), as
    /// addresses or networks; trusted trunk networks are exempt as well.
    #[serde(deserialize_with = "networks")]
    pub exempt: Vec<ipnet::IpNet>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            enabled: true,
            max_auth_failures: 10,
            max_account_failures: 30,
            failure_window_secs: 60,
            account_protect_secs: 900,
            ban_secs: 600,
            max_ban_secs: 86_400,
            register_per_sec: 20,
            invite_per_sec: 10,
            options_per_sec: 10,
            other_per_sec: 50,
            burst_secs: 2,
            flood_ban_after: 500,
            scanner_user_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "sip-scan",
                "vaxsipuseragent",
                "iwar",
                "sundayddr",
                "pplsip",
            ]
            .map(String::from)
            .to_vec(),
            exempt: Vec::new(),
        }
    }
}

fn networks<'de, D>(d: D) -> Result<Vec<ipnet::IpNet>, D::Error>
where
    D: Deserializer<'de>,
{
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            crate::store::trunk_spec::parse_network(s)
                .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not an address or network")))
        })
        .collect()
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
pub(crate) fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
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

/// The 1-based line where `key` is set inside the `index`-th (0-based) `[[array]]` table, or
/// of that table's header when the key is not there.
pub(crate) fn line_in_array(text: &str, array: &str, index: usize, key: &str) -> Option<usize> {
    let header = format!("[[{array}]]");
    let mut seen = 0usize;
    let mut inside = false;
    let mut header_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            inside = t.split('#').next().map(str::trim) == Some(header.as_str()) && {
                seen += 1;
                seen == index + 1
            };
            if inside {
                header_line = Some(i + 1);
            }
        } else if inside && t.split('=').next().map(str::trim) == Some(key) {
            return Some(i + 1);
        }
    }
    header_line
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
        if self.smsc.mode == SmsMode::External && self.smsc.address.is_empty() {
            return Err(match line_of(text, "smsc", "mode") {
                Some(line) => format!("smsc.address: required with mode = \"external\" (mode set at line {line})"),
                None => "smsc.address: required with mode = \"external\"".into(),
            });
        }
        if self.smsc.window == 0 {
            return Err(match line_of(text, "smsc", "window") {
                Some(line) => format!("smsc.window (line {line}): must be at least 1"),
                None => "smsc.window: must be at least 1".into(),
            });
        }
        let at = |section: &str, key: &str, why: &str| match line_of(text, section, key) {
            Some(line) => format!("{section}.{key} (line {line}): {why}"),
            None => format!("{section}.{key}: {why}"),
        };
        if self.sip.tls_addr().is_err() {
            return Err(at("sip", "tls_listen", "must be an IP:port or \"off\""));
        }
        if self.sip.tls_cert_file.as_os_str().is_empty() != self.sip.tls_key_file.as_os_str().is_empty() {
            return Err(at("sip", "tls_cert_file", "tls_cert_file and tls_key_file go together"));
        }
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
        if s.tcp_message_timeout_secs == 0 {
            return Err(at("sip", "tcp_message_timeout_secs", "must be above 0"));
        }
        if s.tcp_max_connections_per_ip == 0 {
            return Err(at("sip", "tcp_max_connections_per_ip", "must be above 0"));
        }
        if s.t1_ms == 0 || s.t2_ms < s.t1_ms || s.t4_ms == 0 {
            return Err(at(
                "sip",
                "t1_ms",
                "timers must satisfy 0 < t1_ms <= t2_ms and t4_ms > 0",
            ));
        }
        self.check_media_calls(text)
    }

    /// The `[media]`, `[calls]` and `[[trunk]]` checks.
    fn check_media_calls(&self, text: &str) -> Result<(), String> {
        let at = |section: &str, key: &str, why: &str| match line_of(text, section, key) {
            Some(line) => format!("{section}.{key} (line {line}): {why}"),
            None => format!("{section}.{key}: {why}"),
        };
        let m = &self.media;
        if m.rtp_ip.is_some_and(|ip| ip.is_unspecified() || ip.is_multicast()) {
            return Err(at(
                "media",
                "rtp_ip",
                "must be the unicast address put in SDP (or empty for the sip.listen IP)",
            ));
        }
        if !(1..=10_000).contains(&m.commit_interval_ms) {
            return Err(at("media", "commit_interval_ms", "must be 1 to 10000"));
        }
        if !(1..=1000).contains(&m.frames_per_fragment) {
            return Err(at("media", "frames_per_fragment", "must be 1 to 1000"));
        }
        if m.ring_frames < m.frames_per_fragment {
            return Err(at("media", "ring_frames", "must be at least frames_per_fragment"));
        }
        if !(m.catch_up_speed.is_finite() && (1.0..=64.0).contains(&m.catch_up_speed)) {
            return Err(at("media", "catch_up_speed", "must be 1.0 to 64.0"));
        }
        let c = &self.calls;
        if !(1..=600).contains(&c.ring_timeout_secs) {
            return Err(at("calls", "ring_timeout_secs", "must be 1 to 600"));
        }
        if c.beep_ms > 5000 {
            return Err(at("calls", "beep_ms", "must be 0 to 5000"));
        }
        if !(1..=86_400).contains(&c.max_message_secs) {
            return Err(at("calls", "max_message_secs", "must be 1 to 86400"));
        }
        if !(1..=1000).contains(&c.max_targets) {
            return Err(at("calls", "max_targets", "must be 1 to 1000"));
        }
        if c.max_calls == 0 {
            return Err(at("calls", "max_calls", "must be above 0"));
        }
        let g = &self.security;
        if g.max_auth_failures == 0 || g.max_account_failures == 0 {
            return Err(at("security", "max_auth_failures", "failure limits must be above 0"));
        }
        if g.failure_window_secs == 0 || g.ban_secs == 0 || g.burst_secs == 0 {
            return Err(at(
                "security",
                "ban_secs",
                "failure_window_secs, ban_secs and burst_secs must be above 0",
            ));
        }
        if g.max_ban_secs < g.ban_secs {
            return Err(at("security", "max_ban_secs", "must not be below ban_secs"));
        }
        crate::store::trunk_spec::validate_all(&self.trunks).map_err(|(i, e)| {
            let key = e.key();
            match line_in_array(text, "trunk", i, key) {
                Some(line) => format!("trunk[{i}].{key} (line {line}): {e}"),
                None => format!("trunk[{i}].{key}: {e}"),
            }
        })?;
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

    fn err(t: &str) -> String {
        Config::from_toml(t, Path::new("x.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn media_and_calls() {
        let c = Config::from_toml(
            "[media]\nrtp_ports = \"30000-30099\"\nrtp_ip = \"192.0.2.5\"\ncatch_up_speed = 2.5\n[calls]\ndialplan = \"dp.toml\"\nmax_targets = 3\n",
            Path::new("x"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.media.rtp_ports.bounds(), (30000, 30099));
        assert_eq!(c.media.rtp_ip, Some(IpAddr::from([192, 0, 2, 5])));
        assert_eq!(c.media.catch_up_speed, 2.5);
        assert_eq!(c.calls.dialplan, Some(PathBuf::from("dp.toml")));
        assert_eq!(c.calls.max_targets, 3);
        let d = Config::default();
        assert_eq!(d.media.rtp_ip_for(d.sip.listen), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(d.calls.dialplan, None);

        let e = err("[media]\nrtp_ports = \"20001-29999\"\n");
        assert!(e.contains("line 2") && e.contains("even"), "{e}");
        let e = err("[media]\n\nrtp_ports = \"20000\"\n");
        assert!(e.contains("line 3") && e.contains("port range"), "{e}");
        let e = err("[media]\nrtp_ports = \"20000-20000\"\n");
        assert!(e.contains("line 2"), "{e}");
        let e = err("[media]\nrtp_ip = \"not-an-ip\"\n");
        assert!(e.contains("line 2") && e.contains("rtp_ip"), "{e}");
        let e = err("[media]\nrtp_ip = \"0.0.0.0\"\n");
        assert!(e.contains("media.rtp_ip (line 2)"), "{e}");
        let e = err("[media]\ncatch_up_speed = 0.5\n");
        assert!(e.contains("media.catch_up_speed (line 2)"), "{e}");
        let e = err("[media]\nframes_per_fragment = 100\nring_frames = 50\n");
        assert!(e.contains("media.ring_frames (line 3)"), "{e}");
        let e = err("[media]\ncommit_interval_ms = 0\n");
        assert!(e.contains("media.commit_interval_ms (line 2)"), "{e}");
        let e = err("[calls]\nmax_targets = 0\n");
        assert!(e.contains("calls.max_targets (line 2)"), "{e}");
        let e = err("[calls]\nring_timeout_secs = 0\n");
        assert!(e.contains("calls.ring_timeout_secs (line 2)"), "{e}");
        let e = err("[calls]\nbeep = 200\n");
        assert!(e.contains("line 2") && e.contains("beep"), "{e}");
        assert_eq!(
            "20000-29999".parse::<PortRange>().map(|r| r.to_string()),
            Ok("20000-29999".into())
        );
    }

    #[test]
    fn trunk_tables() {
        let c = Config::from_toml(
            "[[trunk]]\nname = \"pstn\"\naddress = \"192.0.2.1:5060\"\ntransport = \"tcp\"\nroutes = [\"\\\\+49.*\"]\ntrusted = [\"192.0.2.0/24\"]\n\n[[trunk]]\nname = \"pbx\"\naddress = \"pbx.example.com:5060\"\n",
            Path::new("x"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.trunks.len(), 2);
        assert_eq!(c.trunks[0].transport, crate::store::trunk_spec::TrunkTransport::Tcp);
        assert_eq!(c.trunks[0].routes, vec!["\\+49.*".to_string()]);
        assert!(c.trunks[1].routes.is_empty());
        let e = err(
            "[[trunk]]\nname = \"a\"\naddress = \"h:1\"\n[[trunk]]\nname = \"b\"\naddress = \"h:1\"\nroutes = [\"(\"]\n",
        );
        assert!(e.contains("trunk[1].routes (line 7)") && e.contains("\"(\""), "{e}");
        let e = err("[[trunk]]\nname = \"a\"\naddress = \"192.0.2.1\"\n");
        assert!(e.contains("trunk[0].address (line 3)"), "{e}");
        let e = err("[[trunk]]\nname = \"a\"\naddress = \"h:1\"\ntrusted = [\"10.0.0.0/99\"]\n");
        assert!(e.contains("trunk[0].trusted (line 4)"), "{e}");
        let e = err("[[trunk]]\nname = \"a\"\naddress = \"h:1\"\n[[trunk]]\nname = \"a\"\naddress = \"h:2\"\n");
        assert!(e.contains("trunk[1].name (line 5)") && e.contains("twice"), "{e}");
        let e = err("[[trunk]]\nname = \"a\"\naddress = \"h:1\"\nroute = []\n");
        assert!(e.contains("line 4") && e.contains("route"), "{e}");
        let e = err("[[trunk]]\nname = \"a\"\naddress = \"h:1\"\ntransport = \"sctp\"\n");
        assert!(e.contains("line 4") && e.contains("sctp"), "{e}");
    }
}
