//! [`SmscConfig`]: where the SMS client connects and how hard it may push (window, rate,
//! keepalive, reconnect backoff).

use std::time::Duration;

use crate::error::SmsError;

/// How the client reaches its SMSC. `Default` points at the built-in SMSC on 127.0.0.1:2775.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmscConfig {
    /// `host:port` of the SMSC.
    pub address: String,
    /// `system_id` of the bind (at most 15 ASCII characters).
    pub system_id: String,
    /// `password` of the bind (at most 8 ASCII characters).
    pub password: String,
    /// `system_type` of the bind (at most 12 ASCII characters, often empty).
    pub system_type: String,
    /// Sender address: alphanumeric (at most 11 characters, sent with TON 5) or a number
    /// (`+` for international).
    pub source_addr: String,
    /// Most `submit_sm` without a response at any time (the SMPP window).
    pub window: usize,
    /// Most `submit_sm` per second; 0 means no limit.
    pub rate_per_sec: u32,
    /// Seconds between `enquire_link`s on an idle or busy session.
    pub enquire_link_secs: u64,
    /// First reconnect delay after a failed connect or a lost session.
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay (the delay doubles up to this, with jitter).
    pub reconnect_max_ms: u64,
    /// Send GSM 7-bit text packed 8-in-7 instead of one septet per octet. Only for SMSCs that
    /// want the air-interface form; SMPP's usual convention (and the default) is unpacked.
    pub gsm_packed: bool,
}

impl Default for SmscConfig {
    fn default() -> Self {
        SmscConfig {
            address: "127.0.0.1:2775".into(),
            system_id: "ivm".into(),
            password: "ivm".into(),
            system_type: String::new(),
            source_addr: "IVM".into(),
            window: 10,
            rate_per_sec: 0,
            enquire_link_secs: 30,
            reconnect_min_ms: 500,
            reconnect_max_ms: 10_000,
            gsm_packed: false,
        }
    }
}

impl SmscConfig {
    /// Checks lengths and ranges so that a bad value is reported at start, not per message.
    pub fn validate(&self) -> Result<(), SmsError> {
        let bad = |m: String| Err(SmsError::InvalidConfig(m));
        if self.address.trim().is_empty() {
            return bad("smsc address is empty (expected HOST:PORT)".into());
        }
        if !self.address.contains(':') {
            return bad(format!(
                "smsc address {:?} has no port (expected HOST:PORT)",
                self.address
            ));
        }
        for (name, value, max) in [
            ("system_id", &self.system_id, 15),
            ("password", &self.password, 8),
            ("system_type", &self.system_type, 12),
        ] {
            if value.len() > max || !value.is_ascii() || value.contains('\0') {
                return bad(format!("{name} must be at most {max} ASCII characters, got {value:?}"));
            }
        }
        if let Err(e) = crate::address::Address::source(&self.source_addr) {
            return bad(format!("source_addr: {e}"));
        }
        if self.window == 0 {
            return bad("window must be at least 1".into());
        }
        if self.enquire_link_secs == 0 {
            return bad("enquire_link_secs must be at least 1".into());
        }
        if self.reconnect_min_ms == 0 || self.reconnect_max_ms < self.reconnect_min_ms {
            return bad(format!(
                "reconnect delays must satisfy 0 < min ({}) <= max ({})",
                self.reconnect_min_ms, self.reconnect_max_ms
            ));
        }
        Ok(())
    }

    /// The keepalive interval.
    pub fn enquire_link_interval(&self) -> Duration {
        Duration::from_secs(self.enquire_link_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_bad_values_are_named() {
        assert!(SmscConfig::default().validate().is_ok());
        let e = SmscConfig {
            password: "123456789".into(),
            ..Default::default()
        }
        .validate();
        assert!(matches!(e, Err(SmsError::InvalidConfig(m)) if m.contains("password")));
        let e = SmscConfig {
            window: 0,
            ..Default::default()
        }
        .validate();
        assert!(matches!(e, Err(SmsError::InvalidConfig(m)) if m.contains("window")));
        let e = SmscConfig {
            address: "localhost".into(),
            ..Default::default()
        }
        .validate();
        assert!(matches!(e, Err(SmsError::InvalidConfig(m)) if m.contains("port")));
        let e = SmscConfig {
            source_addr: "TwelveChars!".into(),
            ..Default::default()
        }
        .validate();
        assert!(matches!(e, Err(SmsError::InvalidConfig(m)) if m.contains("source_addr")));
    }
}
