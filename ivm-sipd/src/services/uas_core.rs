//! The UAS core (RFC 3261 §8.2): what every request that opened a server transaction goes
//! through before a service sees it — method inspection (405/501 with Allow), URI scheme
//! (416), required extensions (420 with Unsupported), content type and Accept (415/406) — and
//! then the service that owns the method: the registrar for REGISTER, OPTIONS answered here.

use std::sync::Arc;

use crate::services::calls::Calls;
use crate::services::notification::mwi;
use crate::services::registrar::Registrar;
use crate::services::registrar::auth::AuthOutcome;
use crate::stack::dialog::{DialogEvent, DialogId, DialogTable};
use crate::stack::endpoint::{Dispatcher, SipCore};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders, Uri};
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;

/// Methods this server implements.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, SUBSCRIBE, INFO, UPDATE";
/// Option tags of the extensions we support: none yet.
pub const SUPPORTED: &str = "";
/// Bodies we understand.
pub const ACCEPT: &str = "application/sdp";

/// The services behind the UAS core.
pub struct UasCore {
    core: SipCore,
    registrar: Arc<Registrar>,
    dialogs: DialogTable,
    calls: Arc<Calls>,
}

impl UasCore {
    pub fn new(core: SipCore, registrar: Arc<Registrar>, dialogs: DialogTable, calls: Arc<Calls>) -> Self {
        UasCore {
            core,
            registrar,
            dialogs,
            calls,
        }
    }

    /// Answers one out-of-dialog request that is not an INVITE.
    async fn answer(&self, req: &Request, source: Peer) -> Response {
        match req.method {
            Method::Register => self.registrar.handle(req, source).await,
            Method::Options => {
                let mut resp = req.response(200, None, &random_token(8));
                resp.headers.push(HeaderName::Allow, ALLOW);
                resp.headers.push(HeaderName::Accept, ACCEPT);
                // Empty: this server requires and offers no extension yet (RFC 3261 §20.37).
                resp.headers.push(HeaderName::Supported, SUPPORTED);
                resp
            }
            // Not inside any dialog we know.
            _ => req.response(481, None, &random_token(8)),
        }
    }

    /// The §8.2.1–§8.2.3 checks; `Some` is the error response.
    fn inspect(&self, req: &Request) -> Option<Response> {
        let tag = random_token(8);
        let allowed = matches!(
            req.method,
            Method::Invite
                | Method::Ack
                | Method::Cancel
                | Method::Bye
                | Method::Options
                | Method::Register
                | Method::Subscribe
                | Method::Info
                | Method::Update
        );
        if !allowed {
            let status = if matches!(req.method, Method::Other(_)) {
                501
            } else {
                405
            };
            let mut resp = req.response(status, None, &tag);
            resp.headers.push(HeaderName::Allow, ALLOW);
            return Some(resp);
        }
        if !matches!(&req.uri, Uri::Sip(_)) {
            let mut resp = req.response(
                416,
                Some(&format!("Unsupported URI Scheme ({})", req.uri.scheme())),
                &tag,
            );
            resp.headers.push(HeaderName::Accept, ACCEPT);
            return Some(resp);
        }
        let supported: Vec<&str> = SUPPORTED.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let unsupported: Vec<String> = req
            .tokens(&HeaderName::Require)
            .into_iter()
            .filter(|t| !supported.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let mut resp = req.response(420, None, &tag);
            resp.headers.push(HeaderName::Unsupported, unsupported.join(", "));
            return Some(resp);
        }
        if req.method == Method::Invite {
            if !req.body.is_empty() {
                let understood = req
                    .content_type()
                    .is_some_and(|ct| ct.matches("application", "sdp") || ct.matches("multipart", "mixed"));
                let encoded = req
                    .headers
                    .get(&HeaderName::ContentEncoding)
                    .is_some_and(|e| !e.eq_ignore_ascii_case(b"identity"));
                if !understood || encoded {
                    let mut resp = req.response(415, None, &tag);
                    resp.headers.push(HeaderName::Accept, ACCEPT);
                    return Some(resp);
                }
            }
            if req.headers.contains(&HeaderName::Accept) {
                let ok = req
                    .headers
                    .get_all(&HeaderName::Accept)
                    .filter_map(|v| crate::stack::sip::fields::MediaType::parse_list(v).ok())
                    .flatten()
                    .any(|m| m.matches("application", "sdp"));
                if !ok {
                    let mut resp = req.response(406, None, &tag);
                    resp.headers
                        .push(HeaderName::Warning, "399 ivm \"answers carry application/sdp only\"");
                    return Some(resp);
                }
            }
        }
        None
    }
}

impl Dispatcher for Arc<UasCore> {
    fn request(&self, key: TsxKey, request: Request, source: Peer) {
        // Inside a dialog: the call that owns it answers.
        if request.header_to().is_some_and(|t| t.tag().is_some())
            && let Some(id) = DialogId::of_request(&request)
        {
            match self.dialogs.deliver(
                &id,
                DialogEvent::Request {
                    key: key.clone(),
                    request,
                    source,
                },
            ) {
                Ok(()) => return,
                Err(event) if matches!(*event, DialogEvent::Request { .. }) => {
                    let DialogEvent::Request { request, .. } = *event else {
                        return;
                    };
                    let resp = match self.inspect(&request) {
                        Some(resp) => resp,
                        None if matches!(request.method, Method::Options) => {
                            return self.clone().spawn_answer(key, request, source);
                        }
                        None => request.response(481, None, &random_token(8)),
                    };
                    log_transaction(&request, &resp, source);
                    self.core.respond(key, resp);
                    return;
                }
                Err(_) => return,
            }
        }
        self.clone().spawn_answer(key, request, source);
    }

    fn ack(&self, request: Request, _source: Peer) {
        if let Some(id) = DialogId::of_request(&request) {
            let _ = self.dialogs.deliver(&id, DialogEvent::Ack(request));
        }
    }

    fn cancelled(&self, invite: TsxKey) {
        self.dialogs.cancel_invite(&invite);
    }
}

impl UasCore {
    fn spawn_answer(self: Arc<Self>, key: TsxKey, request: Request, source: Peer) {
        if request.method == Method::Invite {
            if let Some(resp) = self.inspect(&request) {
                log_transaction(&request, &resp, source);
                return self.core.respond(key, resp);
            }
            return self.calls.incoming(key, request, source);
        }
        tokio::spawn(async move {
            let resp = match self.inspect(&request) {
                Some(resp) => resp,
                None if request.method == Method::Subscribe => match self.subscribe(&key, &request, source).await {
                    Some(resp) => resp,
                    None => return, // the MWI service answers
                },
                None => self.answer(&request, source).await,
            };
            log_transaction(&request, &resp, source);
            self.core.respond(key, resp);
        });
    }

    /// An out-of-dialog SUBSCRIBE: `message-summary` for one's own mailbox goes to the MWI
    /// service; anything else is refused here.
    async fn subscribe(&self, key: &TsxKey, req: &Request, source: Peer) -> Option<Response> {
        let tag = random_token(8);
        if req
            .event()
            .is_none_or(|e| !e.package.eq_ignore_ascii_case(mwi::PACKAGE))
        {
            let mut resp = req.response(489, None, &tag);
            resp.headers.push(HeaderName::AllowEvents, mwi::PACKAGE);
            return Some(resp);
        }
        let aor = req
            .uri
            .as_sip()
            .and_then(|u| u.user_unescaped())
            .or_else(|| {
                req.header_to()
                    .and_then(|t| t.uri.as_sip().and_then(|u| u.user_unescaped()))
            })
            .map(|u| String::from_utf8_lossy(&u).into_owned());
        let Some(aor) = aor else {
            return Some(req.response(404, Some("Not Found (no mailbox in the Request-URI)"), &tag));
        };
        match self.calls.auth.check(req, Some(&aor)).await {
            Ok(AuthOutcome::Ok(_)) => {
                self.calls.mwi.subscribe(key.clone(), req.clone(), source, aor);
                None
            }
            Ok(AuthOutcome::Challenge { stale }) => Some(self.calls.auth.challenge(req, stale)),
            Ok(AuthOutcome::Forbidden) => Some(req.response(403, None, &tag)),
            Err(e) => {
                tracing::error!(error = %e, "subscribe: store unavailable");
                Some(req.response(500, Some("Server Internal Error (store unavailable)"), &tag))
            }
        }
    }
}

/// One info line per answered transaction.
pub fn log_transaction(req: &Request, resp: &Response, source: Peer) {
    tracing::info!(
        method = %req.method,
        status = resp.status,
        from = %source,
        call_id = %String::from_utf8_lossy(req.call_id().unwrap_or_default()),
        "{} {}", req.method, resp.status
    );
}
