//! Digest authentication of requests from subscribers (RFC 3261 §22, RFC 8760), shared by the
//! registrar (REGISTER) and the call layer (INVITE): the challenge, and the check of an
//! Authorization header against the subscriber's stored HA1. A wrong password and an unknown
//! user take the same work and get the same answer. Every failure and success is told to the
//! guard (`services::guard`), which may refuse an account's check from an unknown address.

use std::sync::Arc;

use crate::config::RegistrarConfig;
use crate::services::guard::Guard;
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Request, Response, SipHeaders};
use crate::stack::transport::Peer;
use crate::store::subscribers::{self, DigestSecrets};
use crate::store::writer::StoreHandle;
use crate::store::{StoreError, unix_now};

use crate::stack::digest::{self, Algorithm, DigestInput, NonceCounts, NonceIssuer, NonceState};

/// Outcome of checking the credentials of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Authenticated as this user.
    Ok(String),
    Challenge {
        stale: bool,
    },
    Forbidden,
}

/// Challenges and checks digest credentials.
pub struct DigestAuth {
    algorithms: Vec<Algorithm>,
    realm: String,
    nonces: NonceIssuer,
    /// The nonce counts already used: a captured answer does not pass twice.
    counts: NonceCounts,
    store: StoreHandle,
    guard: Option<Arc<Guard>>,
}

/// Live nonces tracked at once (a few hundred bytes each).
const TRACKED_NONCES: usize = 200_000;

impl DigestAuth {
    pub fn new(config: &RegistrarConfig, realm: String, store: StoreHandle) -> DigestAuth {
        let mut key = [0u8; 32];
        rand::fill(&mut key);
        DigestAuth {
            nonces: NonceIssuer::new(key, config.nonce_ttl_secs),
            counts: NonceCounts::new(config.nonce_ttl_secs, TRACKED_NONCES),
            algorithms: config.auth_algorithms.clone(),
            realm,
            store,
            guard: None,
        }
    }

    /// Tells `guard` of every failure and success, and asks it first.
    pub fn with_guard(mut self, guard: Arc<Guard>) -> DigestAuth {
        self.guard = Some(guard);
        self
    }

    /// A `401` carrying one `WWW-Authenticate` per configured algorithm, in order.
    pub fn challenge(&self, req: &Request, stale: bool) -> Response {
        let mut resp = req.response(401, None, &random_token(8));
        let nonce = self.nonces.issue(unix_now() as u64);
        for alg in &self.algorithms {
            resp.headers.push(
                HeaderName::WwwAuthenticate,
                digest::challenge(*alg, &self.realm, &nonce, stale),
            );
        }
        resp
    }

    /// Checks the request's Digest credentials; `user`, when given, is the identity the
    /// credentials must belong to (the AOR of a REGISTER, the From user of an INVITE);
    /// `source` is where the request came from.
    pub async fn check(&self, req: &Request, user: Option<&str>, source: &Peer) -> Result<AuthOutcome, StoreError> {
        let outcome = self.verify(req, user, source).await?;
        if let (Some(guard), Some(account)) = (&self.guard, account(req, &self.realm)) {
            match &outcome {
                AuthOutcome::Forbidden => guard.auth_failed(source.addr.ip(), &account),
                AuthOutcome::Ok(user) => guard.auth_passed(source.addr.ip(), user),
                AuthOutcome::Challenge { .. } => {}
            }
        }
        Ok(outcome)
    }

    async fn verify(&self, req: &Request, user: Option<&str>, source: &Peer) -> Result<AuthOutcome, StoreError> {
        let challenge = Ok(AuthOutcome::Challenge { stale: false });
        let creds = req
            .auth(&HeaderName::Authorization)
            .into_iter()
            .find(|a| a.scheme.eq_ignore_ascii_case("Digest") && a.get("realm") == Some(self.realm.as_str()));
        let Some(creds) = creds else { return challenge };
        let (Some(username), Some(nonce), Some(uri), Some(response)) = (
            creds.get("username"),
            creds.get("nonce"),
            creds.get("uri"),
            creds.get("response"),
        ) else {
            return challenge;
        };
        let Some(alg) = Algorithm::from_param(creds.get("algorithm")).filter(|a| self.algorithms.contains(a)) else {
            return challenge;
        };
        let nonce_state = self.nonces.check(nonce, unix_now() as u64);
        if nonce_state == NonceState::Invalid {
            return challenge;
        }
        let qop = match creds.get("qop") {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => match (creds.get("nc"), creds.get("cnonce")) {
                (Some(nc), Some(cnonce)) => Some((q, nc, cnonce)),
                _ => return Ok(AuthOutcome::Forbidden),
            },
            Some(_) => return challenge,
        };
        if let Some(guard) = &self.guard
            && !guard.may_authenticate(source.addr.ip(), username)
        {
            return Ok(AuthOutcome::Forbidden);
        }
        let lookup = username.to_owned();
        let secrets = self
            .store
            .run(move |conn| subscribers::digest_secrets(conn, &lookup))
            .await?;
        // An unknown user is checked against a secret nobody has, so the work and the answer
        // are the same as for a wrong password.
        let secrets = secrets
            .filter(|s| s.realm == self.realm)
            .unwrap_or_else(|| DigestSecrets {
                realm: self.realm.clone(),
                ha1_md5: random_token(16),
                ha1_sha256: random_token(32),
            });
        let input = DigestInput {
            method: req.method.as_str(),
            uri,
            nonce,
            qop,
        };
        let expected = digest::expected_response(alg, secrets.ha1(alg), &input);
        let matches = digest::constant_time_eq(expected.as_bytes(), response.to_ascii_lowercase().as_bytes());
        let right_user = user.is_none_or(|u| u == username);
        Ok(match (matches && right_user, nonce_state) {
            (false, _) => AuthOutcome::Forbidden,
            (true, NonceState::Stale) => AuthOutcome::Challenge { stale: true },
            (true, _) => {
                // Each (nonce, nc) passes once; an answer without qop carries no count and
                // so is good for one request.
                let nc = qop.map_or(Some(1), |(_, nc, _)| u32::from_str_radix(nc, 16).ok());
                if nc.is_some_and(|nc| self.counts.accept(nonce, nc, unix_now() as u64)) {
                    AuthOutcome::Ok(username.to_owned())
                } else {
                    tracing::info!(user = username, method = %req.method, "digest answer used before (a replay): challenged again");
                    AuthOutcome::Challenge { stale: true }
                }
            }
        })
    }
}

/// The username of the request's Digest credentials for `realm`, if any.
fn account(req: &Request, realm: &str) -> Option<String> {
    req.auth(&HeaderName::Authorization)
        .into_iter()
        .find(|a| a.scheme.eq_ignore_ascii_case("Digest") && a.get("realm") == Some(realm))
        .and_then(|a| a.get("username").map(str::to_owned))
}
