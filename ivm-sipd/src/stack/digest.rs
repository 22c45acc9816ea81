//! HTTP digest authentication for SIP (RFC 3261 §22, RFC 8760): MD5 and SHA-256, `qop=auth`
//! (and the RFC 2069 form without qop that old phones send), stateless nonces that carry
//! their issue time under an HMAC so any node can check them and expiry answers
//! `stale=true`.

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub enum Algorithm {
    #[serde(rename = "MD5")]
    Md5,
    #[serde(rename = "SHA-256")]
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    /// From the `algorithm` parameter (absent means MD5).
    pub fn from_param(p: Option<&str>) -> Option<Algorithm> {
        match p {
            None => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("MD5") => Some(Algorithm::Md5),
            Some(s) if s.eq_ignore_ascii_case("SHA-256") => Some(Algorithm::Sha256),
            _ => None,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hash(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// HA1 = H(username:realm:password).
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.hash(format!("{user}:{realm}:{password}").as_bytes())
}

/// The parts of a response computation that come from the Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestInput<'a> {
    pub method: &'a str,
    pub uri: &'a str,
    pub nonce: &'a str,
    /// `(qop, nc, cnonce)` when the client used qop.
    pub qop: Option<(&'a str, &'a str, &'a str)>,
}

/// The expected `response` value for a given HA1.
pub fn expected_response(alg: Algorithm, ha1: &str, input: &DigestInput<'_>) -> String {
    let ha2 = alg.hash(format!("{}:{}", input.method, input.uri).as_bytes());
    match input.qop {
        Some((qop, nc, cnonce)) => alg.hash(format!("{ha1}:{}:{nc}:{cnonce}:{qop}:{ha2}", input.nonce).as_bytes()),
        None => alg.hash(format!("{ha1}:{}:{ha2}", input.nonce).as_bytes()),
    }
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a nonce check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceState {
    Fresh,
    /// Ours, but older than its lifetime: challenge again with `stale=true`.
    Stale,
    /// Not one we issued.
    Invalid,
}

/// Issues and checks stateless nonces: hex(issue time ‖ random ‖ HMAC-SHA256 over both).
#[derive(Clone)]
pub struct NonceIssuer {
    key: [u8; 32],
    ttl_secs: u64,
}

impl NonceIssuer {
    pub fn new(key: [u8; 32], ttl_secs: u64) -> Self {
        NonceIssuer { key, ttl_secs }
    }

    fn mac(&self, body: &[u8]) -> [u8; 16] {
        let mut out = [0u8; 16];
        if let Ok(mut m) = Hmac::<Sha256>::new_from_slice(&self.key) {
            m.update(body);
            out.copy_from_slice(&m.finalize().into_bytes()[..16]);
        }
        out
    }

    pub fn issue(&self, now_secs: u64) -> String {
        let mut body = [0u8; 16];
        body[..8].copy_from_slice(&now_secs.to_be_bytes());
        rand::fill(&mut body[8..]);
        let mut nonce = body.to_vec();
        nonce.extend_from_slice(&self.mac(&body));
        hex::encode(nonce)
    }

    pub fn check(&self, nonce: &str, now_secs: u64) -> NonceState {
        let Ok(raw) = hex::decode(nonce) else {
            return NonceState::Invalid;
        };
        if raw.len() != 32 || !constant_time_eq(&self.mac(&raw[..16]), &raw[16..]) {
            return NonceState::Invalid;
        }
        let mut t = [0u8; 8];
        t.copy_from_slice(&raw[..8]);
        let issued = u64::from_be_bytes(t);
        if issued > now_secs + 5 || now_secs - issued.min(now_secs) > self.ttl_secs {
            NonceState::Stale
        } else {
            NonceState::Fresh
        }
    }
}

/// Replay protection for digest answers (RFC 7616 §3.3: the nonce count "allows the server to
/// detect request replays"): for each live nonce, the highest `nc` accepted and which of the 64
/// counts below it were used, the anti-replay window of IPsec (RFC 4303 §3.4.3) — so requests
/// that overtake each other on UDP still pass, and no count passes twice. One table shared by
/// every task; an entry lives as long as its nonce can.
pub struct NonceCounts {
    by_nonce: std::sync::Mutex<Table>,
    ttl_secs: u64,
    capacity: usize,
}

#[derive(Default)]
struct Table {
    windows: std::collections::HashMap<String, CountWindow>,
    /// When expired entries were last dropped (at most once a second).
    pruned_at: u64,
}

struct CountWindow {
    highest: u32,
    /// Bit `d` set: count `highest - d` was used.
    seen: u64,
    expires_at: u64,
}

impl NonceCounts {
    /// Counts for nonces living `ttl_secs`, at most `capacity` nonces at once (past that, new
    /// nonces are refused until old ones expire: a flood cannot grow the table).
    pub fn new(ttl_secs: u64, capacity: usize) -> NonceCounts {
        NonceCounts {
            by_nonce: std::sync::Mutex::new(Table::default()),
            ttl_secs,
            capacity,
        }
    }

    /// Records one use of `nonce` with count `nc`; false when that count was used before, is
    /// more than 64 below the highest, is 0, or the table is full.
    pub fn accept(&self, nonce: &str, nc: u32, now_secs: u64) -> bool {
        if nc == 0 {
            return false;
        }
        let mut table = self.by_nonce.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = table.windows.get_mut(nonce) {
            if nc > w.highest {
                let shift = nc - w.highest;
                w.seen = if shift >= 64 { 1 } else { (w.seen << shift) | 1 };
                w.highest = nc;
                return true;
            }
            let d = w.highest - nc;
            if d >= 64 || w.seen & (1u64 << d) != 0 {
                return false;
            }
            w.seen |= 1u64 << d;
            return true;
        }
        if now_secs > table.pruned_at {
            table.windows.retain(|_, w| w.expires_at > now_secs);
            table.pruned_at = now_secs;
        }
        if table.windows.len() >= self.capacity {
            return false;
        }
        table.windows.insert(
            nonce.to_owned(),
            CountWindow {
                highest: nc,
                seen: 1,
                expires_at: now_secs + self.ttl_secs + 5,
            },
        );
        true
    }

    /// Forgets the nonces that can no longer be used (done anyway, once a second at most,
    /// when a new nonce comes).
    pub fn prune(&self, now_secs: u64) {
        let mut table = self.by_nonce.lock().unwrap_or_else(|p| p.into_inner());
        table.windows.retain(|_, w| w.expires_at > now_secs);
        table.pruned_at = now_secs;
    }
}

/// A `WWW-Authenticate` value for one algorithm.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm={}, nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
        crate::stack::sip::scan::quote(realm),
        alg.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_count_passes_once_even_out_of_order() {
        let counts = NonceCounts::new(300, 4);
        assert!(counts.accept("n1", 1, 0));
        assert!(!counts.accept("n1", 1, 0), "the same answer again: a replay");
        assert!(counts.accept("n1", 3, 0));
        assert!(counts.accept("n1", 2, 0), "overtaken on the way: still new");
        assert!(!counts.accept("n1", 2, 0));
        assert!(counts.accept("n1", 100, 0));
        assert!(!counts.accept("n1", 36, 0), "more than 64 below the highest");
        assert!(counts.accept("n1", 37, 0), "within the window");
        assert!(!counts.accept("n1", 0, 0));
        assert!(counts.accept("n2", 1, 0), "each nonce has its own counts");
        for n in ["n3", "n4"] {
            assert!(counts.accept(n, 1, 0));
        }
        assert!(!counts.accept("n5", 1, 10), "full while every entry lives");
        assert!(counts.accept("n5", 1, 400), "expired entries make room");
        counts.prune(1_000);
        assert!(counts.accept("n1", 1, 1_000), "forgotten once expired");
    }

    #[test]
    fn rfc2617_example_md5() {
        // RFC 2617 §3.5 (HTTP, but the same computation).
        let h = ha1(Algorithm::Md5, "Mufasa", "testrealm@host.com", "Circle Of Life");
        let input = DigestInput {
            method: "GET",
            uri: "/dir/index.html",
            nonce: "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            qop: Some(("auth", "00000001", "0a4f113b")),
        };
        assert_eq!(
            expected_response(Algorithm::Md5, &h, &input),
            "6629fae49393a05397450978507c4ef1"
        );
    }

    #[test]
    fn rfc7616_example_sha256() {
        // RFC 7616 §3.9.1.
        let h = ha1(Algorithm::Sha256, "Mufasa", "http-auth@example.org", "Circle of Life");
        let input = DigestInput {
            method: "GET",
            uri: "/dir/index.html",
            nonce: "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            qop: Some(("auth", "00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        };
        assert_eq!(
            expected_response(Algorithm::Sha256, &h, &input),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn nonces_expire_and_cannot_be_forged() {
        let issuer = NonceIssuer::new([7; 32], 300);
        let n = issuer.issue(1000);
        assert_eq!(issuer.check(&n, 1000), NonceState::Fresh);
        assert_eq!(issuer.check(&n, 1301), NonceState::Stale);
        assert_eq!(NonceIssuer::new([8; 32], 300).check(&n, 1000), NonceState::Invalid);
        let mut forged = n.clone();
        forged.replace_range(0..2, if &n[0..2] == "00" { "01" } else { "00" });
        assert_eq!(issuer.check(&forged, 1000), NonceState::Invalid);
        assert_eq!(issuer.check("zz", 1000), NonceState::Invalid);
    }
}
