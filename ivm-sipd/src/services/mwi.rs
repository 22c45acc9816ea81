//! Message-waiting indication (RFC 3842 over RFC 6665): `SUBSCRIBE` to the
//! `message-summary` package (digest-authenticated, for one's own mailbox) answered `200` and
//! followed by a `NOTIFY` with the `Voice-Message: new/old` counts; refreshes and unsubscribes in
//! the subscription dialog; a new `NOTIFY` whenever the counts change and when the phone
//! registers again; and unsolicited `NOTIFY`s to the registered contacts of subscribers
//! configured for them. Subscriptions live in memory (phones refresh them).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::services::registrar::auth::{AuthOutcome, DigestAuth};
use crate::services::registrar::location::LocationService;
use crate::stack::dialog::{Dialog, DialogEvent, DialogId, DialogTable, contact_value, new_tag};
use crate::stack::endpoint::{ClientEvent, SipCore, log_transaction};
use crate::stack::request;
use crate::stack::router::{Incoming, Service as SipService};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders, Uri};
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;
use crate::store::mailbox;
use crate::store::writer::StoreHandle;

/// The event package.
pub const PACKAGE: &str = "message-summary";
/// Subscription lifetimes we grant.
const MIN_EXPIRES: u32 = 60;
const MAX_EXPIRES: u32 = 86_400;
const DEFAULT_EXPIRES: u32 = 3600;

enum Command {
    Subscribe {
        key: TsxKey,
        request: Request,
        source: Peer,
        aor: String,
    },
    Changed(String),
    Registered(String),
    Dialog(DialogEvent),
    /// A NOTIFY in this subscription failed: the subscription is over (RFC 6665 §4.2.2).
    Failed {
        id: DialogId,
        status: Option<u16>,
    },
}

/// A handle to the MWI service; cheap to clone.
#[derive(Clone)]
pub struct Mwi {
    tx: mpsc::UnboundedSender<Command>,
}

struct Subscription {
    aor: String,
    dialog: Dialog,
    expires_at: tokio::time::Instant,
}

struct Service {
    core: SipCore,
    dialogs: DialogTable,
    store: StoreHandle,
    location: Arc<LocationService>,
    domain: String,
    dialog_tx: mpsc::UnboundedSender<DialogEvent>,
    /// Back into the service's own queue (NOTIFY outcomes).
    commands: mpsc::UnboundedSender<Command>,
    subs: HashMap<DialogId, Subscription>,
}

impl Mwi {
    /// Starts the service task.
    pub fn start(
        core: SipCore,
        dialogs: DialogTable,
        store: StoreHandle,
        location: Arc<LocationService>,
        domain: String,
    ) -> Mwi {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (dialog_tx, mut dialog_rx) = mpsc::unbounded_channel();
        let mut svc = Service {
            core,
            dialogs,
            store,
            location,
            domain,
            dialog_tx,
            commands: tx.clone(),
            subs: HashMap::new(),
        };
        tokio::spawn(async move {
            let mut sweep = tokio::time::interval(Duration::from_secs(5));
            loop {
                let cmd = tokio::select! {
                    Some(cmd) = rx.recv() => cmd,
                    Some(ev) = dialog_rx.recv() => Command::Dialog(ev),
                    _ = sweep.tick() => { svc.sweep().await; continue; }
                    else => return,
                };
                svc.handle(cmd).await;
            }
        });
        Mwi { tx }
    }

    /// A new SUBSCRIBE for `aor`'s mailbox, already authenticated.
    pub fn subscribe(&self, key: TsxKey, request: Request, source: Peer, aor: String) {
        let _ = self.tx.send(Command::Subscribe {
            key,
            request,
            source,
            aor,
        });
    }

    /// The counts of `aor` may have changed.
    pub fn changed(&self, aor: &str) {
        let _ = self.tx.send(Command::Changed(aor.to_owned()));
    }

    /// `aor` registered: re-send its state.
    pub fn registered(&self, aor: &str) {
        let _ = self.tx.send(Command::Registered(aor.to_owned()));
    }
}

/// The `application/simple-message-summary` body.
pub fn summary_body(account: &str, new: u32, old: u32) -> String {
    format!(
        "Messages-Waiting: {}\r\nMessage-Account: {account}\r\nVoice-Message: {new}/{old}\r\n",
        if new > 0 { "yes" } else { "no" }
    )
}

impl Service {
    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Subscribe {
                key,
                request,
                source,
                aor,
            } => self.on_subscribe(key, request, source, aor).await,
            Command::Changed(aor) => self.notify_aor(&aor, true).await,
            Command::Registered(aor) => self.notify_aor(&aor, true).await,
            Command::Dialog(DialogEvent::Request { key, request, source }) => {
                self.on_in_dialog(key, request, source).await;
            }
            Command::Dialog(_) => {}
            Command::Failed { id, status } => {
                if let Some(sub) = self.subs.remove(&id) {
                    self.dialogs.remove(&id);
                    let status = status.map_or("timeout".to_owned(), |s| s.to_string());
                    tracing::info!(aor = %sub.aor, %status, "mwi: subscription ended: its NOTIFY failed");
                }
            }
        }
    }

    /// The lifetime to grant (never longer than asked, RFC 6665 §4.2.1.1), or `Err` with the
    /// `423 Interval Too Brief` to answer when the request is shorter than we allow.
    fn granted(req: &Request) -> Result<u32, Box<Response>> {
        match req.expires() {
            Some(0) => Ok(0),
            Some(e) if e < MIN_EXPIRES => {
                let mut resp = req.response(423, None, &new_tag());
                resp.headers.push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
                Err(Box::new(resp))
            }
            Some(e) => Ok(e.min(MAX_EXPIRES)),
            None => Ok(DEFAULT_EXPIRES),
        }
    }

    async fn on_subscribe(&mut self, key: TsxKey, req: Request, source: Peer, aor: String) {
        let tag = new_tag();
        let expires = match Self::granted(&req) {
            Ok(e) => e,
            Err(resp) => {
                log_transaction(&req, &resp, source);
                return self.core.respond(key, *resp);
            }
        };
        let mut ok = req.response(200, None, &tag);
        ok.headers.push(HeaderName::Expires, expires.to_string());
        ok.headers.push(
            HeaderName::Contact,
            contact_value("ivm", self.core.local_addr_for(source.transport), source),
        );
        log_transaction(&req, &ok, source);
        self.core.respond(key, ok);
        let Some(dialog) = Dialog::as_uas(&req, &tag, source, self.core.local_addr_for(source.transport)) else {
            return;
        };
        let id = dialog.id.clone();
        let mut sub = Subscription {
            aor,
            dialog,
            expires_at: tokio::time::Instant::now() + Duration::from_secs(expires.into()),
        };
        self.send_notify(&mut sub, expires == 0).await;
        if expires > 0 {
            self.dialogs.insert(id.clone(), self.dialog_tx.clone());
            self.subs.insert(id, sub);
        }
    }

    async fn on_in_dialog(&mut self, key: TsxKey, req: Request, source: Peer) {
        let Some(id) = DialogId::of_request(&req) else { return };
        if req.method != Method::Subscribe {
            let resp = req.response(if req.method == Method::Bye { 200 } else { 405 }, None, "");
            self.core.respond(key, resp);
            return;
        }
        let Some(mut sub) = self.subs.remove(&id) else {
            self.core.respond(key, req.response(481, None, ""));
            return;
        };
        let expires = match Self::granted(&req) {
            Ok(e) => e,
            Err(resp) => {
                self.core.respond(key, *resp);
                self.subs.insert(id, sub);
                return;
            }
        };
        let mut ok = req.response(200, None, "");
        ok.headers.push(HeaderName::Expires, expires.to_string());
        log_transaction(&req, &ok, source);
        self.core.respond(key, ok);
        sub.expires_at = tokio::time::Instant::now() + Duration::from_secs(expires.into());
        self.send_notify(&mut sub, expires == 0).await;
        if expires == 0 {
            self.dialogs.remove(&id);
        } else {
            self.subs.insert(id, sub);
        }
    }

    async fn counts(&self, aor: &str) -> (u32, u32) {
        let aor_owned = aor.to_owned();
        match self.store.run(move |conn| mailbox::counts(conn, &aor_owned)).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(aor, error = %e, "mwi: counts unavailable");
                (0, 0)
            }
        }
    }

    fn account(&self, aor: &str) -> String {
        format!("sip:{aor}@{}", self.domain)
    }

    /// Sends a NOTIFY of `sub` and watches its outcome: a failure — no answer, or a final
    /// response other than 2xx without Retry-After (`481`: the phone no longer knows the
    /// subscription) — ends the subscription (RFC 6665 §4.2.2).
    fn send_in_subscription(&self, notify: Request, sub: &Subscription) {
        let mut responses = self.core.send_request(notify, sub.dialog.peer);
        let (commands, id) = (self.commands.clone(), sub.dialog.id.clone());
        tokio::spawn(async move {
            while let Some(event) = responses.recv().await {
                let status = match event {
                    ClientEvent::Response(r) if r.status < 300 => {
                        if r.status >= 200 {
                            return;
                        }
                        continue;
                    }
                    ClientEvent::Response(r) if r.headers.contains(&HeaderName::RetryAfter) => return,
                    ClientEvent::Response(r) => Some(r.status),
                    ClientEvent::Timeout | ClientEvent::Failed(_) => None,
                };
                let _ = commands.send(Command::Failed { id, status });
                return;
            }
        });
    }

    async fn send_notify(&self, sub: &mut Subscription, terminated: bool) {
        let (new, old) = self.counts(&sub.aor).await;
        let remaining = sub
            .expires_at
            .saturating_duration_since(tokio::time::Instant::now())
            .as_secs();
        let state = if terminated {
            "terminated;reason=timeout".to_owned()
        } else {
            format!("active;expires={remaining}")
        };
        let mut notify = sub.dialog.request(Method::Notify);
        notify.headers.push(HeaderName::Event, PACKAGE);
        notify
            .headers
            .push(HeaderName::Other("Subscription-State".into()), state);
        notify.headers.push(
            HeaderName::Contact,
            contact_value(
                "ivm",
                self.core.local_addr_for(sub.dialog.peer.transport),
                sub.dialog.peer,
            ),
        );
        notify
            .headers
            .push(HeaderName::ContentType, "application/simple-message-summary");
        notify.body = Bytes::from(summary_body(&self.account(&sub.aor), new, old));
        tracing::info!(aor = %sub.aor, new, old, "mwi: NOTIFY");
        self.send_in_subscription(notify, sub);
    }

    /// NOTIFY every subscription of `aor`, and its contacts when it wants unsolicited MWI.
    async fn notify_aor(&mut self, aor: &str, unsolicited: bool) {
        let ids: Vec<DialogId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.aor == aor)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(mut sub) = self.subs.remove(&id) {
                self.send_notify(&mut sub, false).await;
                self.subs.insert(id, sub);
            }
        }
        if !unsolicited {
            return;
        }
        let aor_owned = aor.to_owned();
        let wants = self.store.run(move |conn| mailbox::profile(conn, &aor_owned)).await;
        if !matches!(wants, Ok(Some(ref p)) if p.unsolicited_mwi && p.notify_mwi) {
            return;
        }
        let (new, old) = self.counts(aor).await;
        for b in self.location.lookup(aor, crate::store::unix_now()) {
            let Ok(uri) = Uri::parse(b.contact.as_bytes()) else {
                continue;
            };
            let peer = Peer {
                transport: b.transport,
                addr: b.source,
            };
            let mut req = request::out_of_dialog(
                Method::Notify,
                uri,
                &format!("<sip:ivm@{}>", self.domain),
                &format!("<{}>", self.account(aor)),
                peer,
                self.core.local_addr_for(peer.transport),
            );
            req.headers.push(HeaderName::Event, PACKAGE);
            req.headers
                .push(HeaderName::Other("Subscription-State".into()), "active");
            req.headers
                .push(HeaderName::ContentType, "application/simple-message-summary");
            req.body = Bytes::from(summary_body(&self.account(aor), new, old));
            tracing::info!(aor, new, old, contact = %b.contact, "mwi: unsolicited NOTIFY");
            self.core.send_and_forget(req, peer);
        }
    }

    async fn sweep(&mut self) {
        let now = tokio::time::Instant::now();
        let expired: Vec<DialogId> = self
            .subs
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired {
            if let Some(mut sub) = self.subs.remove(&id) {
                self.send_notify(&mut sub, true).await;
                self.dialogs.remove(&id);
            }
        }
    }
}

/// The MWI service on the router: a new `SUBSCRIBE` to `message-summary` for one's own mailbox,
/// digest-authenticated, becomes a subscription; other packages are not claimed (the router
/// answers them `489`).
pub struct MwiService {
    pub mwi: Mwi,
    pub auth: Arc<DigestAuth>,
    pub core: SipCore,
}

impl SipService for MwiService {
    fn name(&self) -> &'static str {
        "mwi"
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::Subscribe]
    }

    fn events(&self) -> &'static [&'static str] {
        &[PACKAGE]
    }

    fn claims(&self, request: &Request) -> bool {
        request.method == Method::Subscribe && request.event().is_some_and(|e| e.package.eq_ignore_ascii_case(PACKAGE))
    }

    fn handle(&self, incoming: Incoming) {
        let (mwi, auth, core) = (self.mwi.clone(), self.auth.clone(), self.core.clone());
        tokio::spawn(async move {
            let req = &incoming.request;
            let tag = random_token(8);
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
                let resp = req.response(404, Some("Not Found (no mailbox in the Request-URI)"), &tag);
                return incoming.reply(&core, resp);
            };
            let resp = match auth.check(req, Some(&aor), &incoming.source).await {
                Ok(AuthOutcome::Ok(_)) => {
                    let Incoming { key, request, source } = incoming;
                    return mwi.subscribe(key, request, source, aor);
                }
                Ok(AuthOutcome::Challenge { stale }) => auth.challenge(req, stale),
                Ok(AuthOutcome::Forbidden) => req.response(403, None, &tag),
                Err(e) => {
                    tracing::error!(error = %e, "subscribe: store unavailable");
                    req.response(500, Some("Server Internal Error (store unavailable)"), &tag)
                }
            };
            incoming.reply(&core, resp);
        });
    }
}
