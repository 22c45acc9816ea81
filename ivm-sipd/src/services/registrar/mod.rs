//! The registrar (RFC 3261 §10.3): digest-authenticated REGISTER (RFC 8760: SHA-256 and MD5),
//! expiry rules with `423 Interval Too Brief`, several contacts per subscriber, un-register,
//! and the bindings kept in the location service and the store. A wrong password and an
//! unknown user get the same answer, computed the same way.

pub mod auth;
pub mod location;

use std::sync::Arc;

use crate::config::RegistrarConfig;
use crate::stack::endpoint::SipCore;
use crate::stack::router::{Incoming, Service};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{Contact, HeaderName, Method, Request, Response, SipHeaders, Uri};
use crate::stack::transport::Peer;
use crate::store::registrations::{self, BindingChange};
use crate::store::writer::StoreHandle;
use crate::store::{StoreError, unix_now};
use auth::{AuthOutcome, DigestAuth};
use location::{ContactUpdate, LocationService, RegisterOp};

/// The registrar on the router: it claims every REGISTER.
pub struct RegistrarService {
    pub registrar: Arc<Registrar>,
    pub core: SipCore,
}

impl Service for RegistrarService {
    fn name(&self) -> &'static str {
        "registrar"
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::Register]
    }

    fn extensions(&self) -> &'static [&'static str] {
        &["path"]
    }

    fn handle(&self, incoming: Incoming) {
        let (registrar, core) = (self.registrar.clone(), self.core.clone());
        tokio::spawn(async move {
            let resp = registrar.handle(&incoming.request, incoming.source).await;
            incoming.reply(&core, resp);
        });
    }
}

/// The registrar service.
pub struct Registrar {
    config: RegistrarConfig,
    auth: Arc<DigestAuth>,
    location: Arc<LocationService>,
    store: StoreHandle,
    /// Told the AOR of every successful registration (MWI, store and forward).
    listener: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
}

impl Registrar {
    /// Loads the stored registrations and starts serving.
    pub async fn start(
        config: RegistrarConfig,
        auth: Arc<DigestAuth>,
        store: StoreHandle,
    ) -> Result<Registrar, StoreError> {
        let rows = store.run(|conn| registrations::load(conn, unix_now())).await?;
        tracing::info!(bindings = rows.len(), "registrar: registrations loaded from the store");
        Ok(Registrar {
            config,
            auth,
            location: Arc::new(LocationService::from_rows(rows)),
            store,
            listener: std::sync::OnceLock::new(),
        })
    }

    /// Where to announce registrations (set once, at start).
    pub fn set_listener(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.listener.set(tx);
    }

    pub fn location(&self) -> &Arc<LocationService> {
        &self.location
    }

    /// Answers a REGISTER.
    pub async fn handle(&self, req: &Request, source: Peer) -> Response {
        let tag = random_token(8);
        let bad = |why: &str| req.response(400, Some(why), &tag);
        let Some(to) = req.header_to() else {
            return bad("Missing To");
        };
        let Uri::Sip(aor_uri) = &to.uri else {
            return bad("Bad Request (To must be a sip: or sips: address-of-record)");
        };
        let Some(user) = aor_uri.user_unescaped() else {
            return bad("Bad Request (address-of-record without a user)");
        };
        let Ok(user) = String::from_utf8(user) else {
            return bad("Bad Request (address-of-record user is not UTF-8)");
        };

        match self.auth.check(req, Some(&user), &source).await {
            Ok(AuthOutcome::Ok(_)) => {}
            Ok(AuthOutcome::Challenge { stale }) => return self.auth.challenge(req, stale),
            Ok(AuthOutcome::Forbidden) => return req.response(403, None, &tag),
            Err(e) => {
                tracing::error!(error = %e, "registrar: store unavailable");
                return req.response(500, Some("Server Internal Error (store unavailable)"), &tag);
            }
        }

        let op = match self.register_op(req) {
            Ok(op) => op,
            Err(resp) => return *resp,
        };
        let (Some(call_id), Some(cseq)) = (req.call_id(), req.cseq()) else {
            return bad("Missing Call-ID or CSeq");
        };
        let call_id = String::from_utf8_lossy(call_id).into_owned();
        let now = unix_now();
        // RFC 3327: the proxies the REGISTER came through, which requests to the phone go
        // back through; echoed in the 200.
        let path: Vec<String> = req
            .headers
            .get_all(&HeaderName::Path)
            .map(|v| String::from_utf8_lossy(v).trim().to_owned())
            .collect();
        let mut pending = None;
        let store = &self.store;
        let result = self.location.register(
            &user,
            &op,
            &call_id,
            cseq.seq,
            source.transport,
            source.addr,
            &path.join(", "),
            now,
            |changes: Vec<BindingChange>| {
                pending = Some(store.submit(move |conn| registrations::apply(conn, &changes, now)));
            },
        );
        let current = match result {
            Ok(current) => current,
            Err(e) => return req.response(500, Some(&format!("Server Internal Error ({e})")), &tag),
        };
        if let Some(pending) = pending {
            let saved = match pending {
                Ok(rx) => rx.await.unwrap_or(Err(StoreError::WriterGone)),
                Err(e) => Err(e),
            };
            if let Err(e) = saved {
                tracing::error!(error = %e, aor = %user, "registrar: binding not saved");
                return req.response(500, Some("Server Internal Error (store unavailable)"), &tag);
            }
        }
        if matches!(op, RegisterOp::Update(_))
            && !current.is_empty()
            && let Some(tx) = self.listener.get()
        {
            let _ = tx.send(user.clone());
        }
        let mut resp = req.response(200, None, &tag);
        for p in &path {
            resp.headers.push(HeaderName::Path, p.clone());
        }
        for b in &current {
            resp.headers.push(
                HeaderName::Contact,
                format!("<{}>;expires={}", b.contact, (b.expires_at - now).max(0)),
            );
        }
        tracing::debug!(aor = %user, contacts = current.len(), "registrar: bindings updated");
        resp
    }

    /// Reads the Contact and Expires headers into an operation, or the error response.
    fn register_op(&self, req: &Request) -> Result<RegisterOp, Box<Response>> {
        let tag = random_token(8);
        let contacts = req.contacts();
        if contacts.is_empty() {
            return Ok(RegisterOp::Query);
        }
        let header_expires = req.expires();
        if contacts.iter().any(|c| matches!(c, Contact::Star)) {
            if contacts.len() != 1 || header_expires != Some(0) {
                return Err(Box::new(req.response(
                    400,
                    Some("Bad Request (Contact: * needs Expires: 0 and no other Contact)"),
                    &tag,
                )));
            }
            return Ok(RegisterOp::RemoveAll);
        }
        let mut updates = Vec::new();
        for addr in contacts
            .into_iter()
            .filter_map(|c| match c {
                Contact::Addrs(a) => Some(a),
                Contact::Star => None,
            })
            .flatten()
        {
            let requested = addr
                .params
                .get("expires")
                .flatten()
                .and_then(|v| crate::stack::sip::fields::parse_delta_seconds(v).ok())
                .or(header_expires)
                .unwrap_or(self.config.default_expires);
            if requested != 0 && requested < self.config.min_expires {
                let mut resp = req.response(423, None, &tag);
                resp.headers
                    .push(HeaderName::MinExpires, self.config.min_expires.to_string());
                return Err(Box::new(resp));
            }
            let q = addr
                .params
                .get_str("q")
                .and_then(|q| q.parse::<f32>().ok())
                .filter(|q| (0.0..=1.0).contains(q));
            updates.push(ContactUpdate {
                contact: addr.uri.to_string(),
                expires: requested.min(self.config.max_expires),
                q,
            });
        }
        Ok(RegisterOp::Update(updates))
    }
}
