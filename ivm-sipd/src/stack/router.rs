//! The router: the dispatcher of the endpoint. A request inside a dialog goes to the task that
//! owns the dialog; a new request passes the §8.2 checks ([`crate::stack::inspect`]) and is
//! offered to the services in the order they were registered — the first that claims it
//! answers it — the way pjsip offers a message to its modules by priority. What no service
//! claims is answered here: OPTIONS with the capabilities (RFC 3261 §11), a SUBSCRIBE to an
//! event package nobody serves with `489` and Allow-Events (RFC 6665 §4.2.1), anything else
//! with `481` (it can only belong to a dialog we do not know).
//!
//! Adding a service is one type implementing [`Service`] and one [`Router::register`].

use std::sync::Arc;

use crate::stack::dialog::{DialogEvent, DialogId, DialogTable};
use crate::stack::endpoint::{Dispatcher, SipCore};
use crate::stack::inspect::{ACCEPT, Capabilities};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders};
use crate::stack::transaction::TsxKey;
use crate::stack::transport::Peer;

/// A new request in its server transaction, handed to the service that claimed it.
pub struct Incoming {
    pub key: TsxKey,
    pub request: Request,
    pub source: Peer,
}

impl Incoming {
    /// Answers the request (and logs the transaction's line).
    pub fn reply(self, core: &SipCore, response: Response) {
        core.reply(self.key, &self.request, response, self.source);
    }
}

/// A service above the stack: what it serves, which requests it takes, and how.
pub trait Service: Send + Sync + 'static {
    /// For logs.
    fn name(&self) -> &'static str;
    /// The methods it serves (inside its dialogs too), for `Allow` and the 405 check.
    fn methods(&self) -> &'static [Method];
    /// Event packages it serves (RFC 6665 `Allow-Events`).
    fn events(&self) -> &'static [&'static str] {
        &[]
    }
    /// SIP extensions it implements (option tags for `Supported`, RFC 3261 §19.2), so a request
    /// that `Require`s one is not refused with `420`.
    fn extensions(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether it takes this new out-of-dialog request; by default, every request of its
    /// methods that is not inside a dialog.
    fn claims(&self, request: &Request) -> bool {
        self.methods().contains(&request.method)
    }
    /// Takes the request; it must be answered (on [`Incoming::reply`]) eventually. Runs on the
    /// endpoint's loop: spawn anything that waits.
    fn handle(&self, incoming: Incoming);
}

/// Routes what the endpoint delivers to dialogs and services.
pub struct Router {
    core: SipCore,
    dialogs: DialogTable,
    services: Vec<Arc<dyn Service>>,
    capabilities: Capabilities,
    allow_events: String,
}

impl Router {
    /// A router over `dialogs`, with no service yet.
    pub fn new(core: SipCore, dialogs: DialogTable) -> Router {
        let mut router = Router {
            core,
            dialogs,
            services: Vec::new(),
            capabilities: Capabilities::default(),
            allow_events: String::new(),
        };
        router.refresh();
        router
    }

    /// Adds a service after those registered before (which are offered requests first).
    pub fn register(mut self, service: Arc<dyn Service>) -> Router {
        tracing::debug!(service = service.name(), methods = ?service.methods(), "service registered");
        self.services.push(service);
        self.refresh();
        self
    }

    /// What the router serves now.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn refresh(&mut self) {
        let mut methods: Vec<Method> = Vec::new();
        let services = self.services.iter().flat_map(|s| s.methods().iter());
        for m in services.chain(&[Method::Ack, Method::Cancel, Method::Options]) {
            if !methods.contains(m) {
                methods.push(m.clone());
            }
        }
        self.capabilities.methods = methods;
        let mut events: Vec<&str> = Vec::new();
        for e in self.services.iter().flat_map(|s| s.events()) {
            if !events.contains(e) {
                events.push(e);
            }
        }
        self.allow_events = events.join(", ");
        let mut supported: Vec<String> = Vec::new();
        for tag in self.services.iter().flat_map(|s| s.extensions()) {
            if !supported.iter().any(|t| t.eq_ignore_ascii_case(tag)) {
                supported.push((*tag).to_owned());
            }
        }
        self.capabilities.supported = supported;
    }

    /// Freezes the router and announces its `Allow` on the core; the dispatcher to run.
    pub fn build(self) -> Arc<Router> {
        self.core.set_allow(self.capabilities.allow());
        Arc::new(self)
    }

    /// What no service claimed.
    fn unclaimed(&self, request: &Request) -> Response {
        let tag = random_token(8);
        match request.method {
            Method::Options => {
                let mut resp = request.response(200, None, &tag);
                resp.headers.push(HeaderName::Allow, self.capabilities.allow());
                resp.headers.push(HeaderName::Accept, ACCEPT);
                // Empty when we require and offer no extension (RFC 3261 §20.37).
                resp.headers.push(HeaderName::Supported, self.capabilities.supported());
                resp
            }
            Method::Subscribe if request.header_to().is_none_or(|t| t.tag().is_none()) => {
                let mut resp = request.response(489, None, &tag);
                resp.headers.push(HeaderName::AllowEvents, self.allow_events.clone());
                resp
            }
            // Not inside any dialog we know.
            _ => request.response(481, None, &tag),
        }
    }

    /// A request that belongs to no dialog: checked, then offered to the services.
    fn new_request(&self, key: TsxKey, request: Request, source: Peer) {
        let resp = match self.capabilities.inspect(&request, &random_token(8)) {
            Some(refused) => refused,
            None => match self.services.iter().find(|s| s.claims(&request)) {
                Some(service) => return service.handle(Incoming { key, request, source }),
                None => self.unclaimed(&request),
            },
        };
        self.core.reply(key, &request, resp, source);
    }
}

impl Dispatcher for Router {
    fn request(&self, key: TsxKey, request: Request, source: Peer) {
        let in_dialog = request.header_to().is_some_and(|t| t.tag().is_some());
        let Some(id) = in_dialog.then(|| DialogId::of_request(&request)).flatten() else {
            return self.new_request(key, request, source);
        };
        let event = DialogEvent::Request { key, request, source };
        let Err(event) = self.dialogs.deliver(&id, event) else {
            return; // the owner of the dialog answers
        };
        let DialogEvent::Request { key, request, source } = *event else {
            return;
        };
        // A dialog we do not (or no longer) know: checked, and then only OPTIONS gets a 200.
        let resp = self
            .capabilities
            .inspect(&request, &random_token(8))
            .unwrap_or_else(|| self.unclaimed(&request));
        self.core.reply(key, &request, resp, source);
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

/// The router over the real endpoint and transaction layer on an in-memory wire: no sockets.
#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;
    use std::time::Duration;

    use bytes::Bytes;
    use tokio::sync::mpsc;

    use super::*;
    use crate::stack::endpoint;
    use crate::stack::sip::{Framing, Message, parse_message};
    use crate::stack::transaction::Timers;
    use crate::stack::transport::{Inbound, Transmitter, TransportKind};

    const PHONE: &str = "127.0.0.1:5070";

    /// A service that answers every request it claims with `status` and notes who got what.
    struct Fake {
        name: &'static str,
        methods: &'static [Method],
        events: &'static [&'static str],
        status: u16,
        core: SipCore,
        seen: Arc<Mutex<Vec<(&'static str, String)>>>,
    }

    impl Service for Fake {
        fn name(&self) -> &'static str {
            self.name
        }
        fn methods(&self) -> &'static [Method] {
            self.methods
        }
        fn events(&self) -> &'static [&'static str] {
            self.events
        }
        /// Like the MWI service: a SUBSCRIBE only for its packages.
        fn claims(&self, request: &Request) -> bool {
            self.methods.contains(&request.method)
                && (self.events.is_empty()
                    || request
                        .event()
                        .is_some_and(|e| self.events.iter().any(|p| e.package.eq_ignore_ascii_case(p))))
        }
        fn handle(&self, incoming: Incoming) {
            if let Ok(mut seen) = self.seen.lock() {
                seen.push((self.name, incoming.request.method.to_string()));
            }
            let resp = incoming.request.response(self.status, None, "svc");
            incoming.reply(&self.core, resp);
        }
    }

    struct Stack {
        inbound: mpsc::Sender<Inbound>,
        wire: mpsc::UnboundedReceiver<(Peer, Bytes)>,
        dialogs: DialogTable,
        seen: Arc<Mutex<Vec<(&'static str, String)>>>,
        allow: String,
    }

    type Plan = (&'static str, &'static [Method], &'static [&'static str], u16);

    /// The endpoint and a router with fake services registered in `plan` order.
    fn stack(plan: &[Plan]) -> Stack {
        stack_gated(plan, None)
    }

    /// Like [`stack`], with a gate in front of the transaction layer.
    fn stack_gated(plan: &[Plan], gate: Option<Arc<dyn crate::stack::gate::Gate>>) -> Stack {
        let (transmitter, wire) = Transmitter::memory();
        let (inbound, inbound_rx) = mpsc::channel(64);
        let local: SocketAddr = "127.0.0.1:5060".parse().unwrap_or_else(|_| unreachable!());
        let (core, core_loop) = endpoint::core(Timers::default(), transmitter, inbound_rx, local);
        let dialogs = DialogTable::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut router = Router::new(core.clone(), dialogs.clone());
        for &(name, methods, events, status) in plan {
            router = router.register(Arc::new(Fake {
                name,
                methods,
                events,
                status,
                core: core.clone(),
                seen: seen.clone(),
            }));
        }
        let router = router.build();
        let allow = core.allow().to_owned();
        let core_loop = match gate {
            Some(g) => core_loop.with_gate(g),
            None => core_loop,
        };
        tokio::spawn(core_loop.run(router, std::future::pending()));
        Stack {
            inbound,
            wire,
            dialogs,
            seen,
            allow,
        }
    }

    fn request(method: &str, uri: &str, branch: &str, extra: &str) -> String {
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bK-{branch}\r\nMax-Forwards: 70\r\n\
             From: <sip:1001@ivm.local>;tag=ph\r\nTo: <sip:1002@ivm.local>{extra}\r\nCall-ID: {branch}@phone\r\n\
             CSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
    }

    impl Stack {
        async fn send(&self, text: &str) {
            let message = match parse_message(Bytes::from(text.to_owned()), Framing::Datagram) {
                Ok(m) => m,
                Err(e) => panic!("test request does not parse: {e}"),
            };
            let source = Peer {
                transport: TransportKind::Udp,
                addr: PHONE.parse().unwrap_or_else(|_| unreachable!()),
            };
            let _ = self.inbound.send(Inbound { message, source }).await;
        }

        /// The next response on the wire.
        async fn response(&mut self) -> Response {
            let next = tokio::time::timeout(Duration::from_secs(2), self.wire.recv()).await;
            let Ok(Some((to, bytes))) = next else {
                panic!("no response on the wire");
            };
            assert_eq!(to.addr.to_string(), PHONE, "responses go back to the phone");
            match parse_message(bytes, Framing::Datagram) {
                Ok(Message::Response(r)) => r,
                other => panic!("not a response: {other:?}"),
            }
        }

        fn seen(&self) -> Vec<(&'static str, String)> {
            self.seen.lock().map(|s| s.clone()).unwrap_or_default()
        }
    }

    fn header(resp: &Response, name: HeaderName) -> String {
        resp.headers
            .get(&name)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    const REGISTRAR: Plan = ("registrar", &[Method::Register], &[], 200);
    const MWI: Plan = ("mwi", &[Method::Subscribe], &["message-summary"], 202);
    const TEXT: Plan = ("text", &[Method::Message], &[], 200);
    const TEXT_TOO: Plan = ("text-too", &[Method::Message], &[], 403);

    #[tokio::test]
    async fn options_lists_what_the_services_registered() {
        let mut s = stack(&[REGISTRAR, MWI]);
        assert_eq!(s.allow, "REGISTER, SUBSCRIBE, ACK, CANCEL, OPTIONS");
        s.send(&request("OPTIONS", "sip:ivm.local", "o1", "")).await;
        let r = s.response().await;
        assert_eq!(r.status, 200);
        assert_eq!(header(&r, HeaderName::Allow), s.allow);
        assert_eq!(header(&r, HeaderName::Accept), "application/sdp");
        assert!(s.seen().is_empty(), "no service claims OPTIONS: {:?}", s.seen());
    }

    #[tokio::test]
    async fn a_request_goes_to_the_first_service_that_claims_it() {
        let mut s = stack(&[REGISTRAR, TEXT, TEXT_TOO]);
        s.send(&request("MESSAGE", "sip:1002@ivm.local", "m1", "")).await;
        assert_eq!(s.response().await.status, 200);
        s.send(&request("REGISTER", "sip:ivm.local", "r1", "")).await;
        assert_eq!(s.response().await.status, 200);
        assert_eq!(
            s.seen(),
            vec![("text", "MESSAGE".to_string()), ("registrar", "REGISTER".to_string())]
        );
    }

    #[tokio::test]
    async fn a_retransmission_is_absorbed_by_its_transaction() {
        let mut s = stack(&[TEXT]);
        let req = request("MESSAGE", "sip:1002@ivm.local", "m2", "");
        s.send(&req).await;
        assert_eq!(s.response().await.status, 200);
        s.send(&req).await;
        assert_eq!(s.response().await.status, 200, "the same response again");
        assert_eq!(s.seen().len(), 1, "the service saw the request once: {:?}", s.seen());
    }

    #[tokio::test]
    async fn what_no_service_claims_is_answered_by_the_router() {
        let mut s = stack(&[REGISTRAR, MWI]);
        s.send(&request(
            "SUBSCRIBE",
            "sip:1002@ivm.local",
            "s0",
            "\r\nEvent: message-summary",
        ))
        .await;
        assert_eq!(s.response().await.status, 202, "the MWI service's package");
        s.send(&request("SUBSCRIBE", "sip:1002@ivm.local", "s1", "\r\nEvent: presence"))
            .await;
        let r = s.response().await;
        assert_eq!(
            (r.status, header(&r, HeaderName::AllowEvents)),
            (489, "message-summary".into())
        );
        s.send(&request("FOO", "sip:1002@ivm.local", "f1", "")).await;
        let r = s.response().await;
        assert_eq!((r.status, header(&r, HeaderName::Allow)), (501, s.allow.clone()));
        s.send(&request("MESSAGE", "sip:1002@ivm.local", "m3", "")).await;
        assert_eq!(s.response().await.status, 405, "MESSAGE is served by no one here");
        s.send(&request(
            "SUBSCRIBE",
            "sip:1002@ivm.local",
            "s2",
            ";tag=gone\r\nEvent: message-summary",
        ))
        .await;
        assert_eq!(s.response().await.status, 481, "a dialog we do not know");
        s.send(&request("OPTIONS", "sip:1002@ivm.local", "o2", ";tag=gone"))
            .await;
        assert_eq!(s.response().await.status, 200, "OPTIONS is answered in any dialog");
        assert_eq!(
            s.seen(),
            vec![("mwi", "SUBSCRIBE".to_string())],
            "only the first SUBSCRIBE"
        );
    }

    #[tokio::test]
    async fn a_request_inside_a_dialog_reaches_its_owner() {
        let mut s = stack(&[MWI]);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = DialogId {
            call_id: "d1@phone".into(),
            local_tag: "ours".into(),
            remote_tag: "ph".into(),
        };
        s.dialogs.insert(id, tx);
        s.send(&request(
            "SUBSCRIBE",
            "sip:1002@ivm.local",
            "d1",
            ";tag=ours\r\nEvent: message-summary",
        ))
        .await;
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv()).await;
        assert!(
            matches!(got, Ok(Some(DialogEvent::Request { ref request, .. })) if request.method == Method::Subscribe),
            "{got:?}"
        );
        assert!(s.seen().is_empty(), "not offered to the service: {:?}", s.seen());
        assert!(s.wire.try_recv().is_err(), "the owner answers, not the router");
    }

    /// Drops what comes with a Call-ID `drop…`, refuses with `503` what comes with `busy…`.
    struct ByCallId;

    impl crate::stack::gate::Gate for ByCallId {
        fn screen(&self, request: &Request, _: &Peer) -> bool {
            !request.call_id().is_some_and(|c| c.starts_with(b"drop"))
        }
        fn admit(&self, request: &Request, _: &Peer) -> Option<Response> {
            request
                .call_id()
                .is_some_and(|c| c.starts_with(b"busy"))
                .then(|| request.response(503, None, "gate"))
        }
    }

    #[tokio::test]
    async fn the_gate_drops_before_any_answer_and_refuses_through_the_transaction() {
        let mut s = stack_gated(&[REGISTRAR], Some(Arc::new(ByCallId)));
        s.send(&request("INVITE", "sip:1002@ivm.local", "drop1", "")).await;
        s.send(&request("REGISTER", "sip:ivm.local", "drop2", "")).await;
        let nothing = tokio::time::timeout(Duration::from_millis(300), s.wire.recv()).await;
        assert!(
            nothing.is_err(),
            "a dropped request gets nothing, not even 100 Trying: {nothing:?}"
        );

        let busy = request("REGISTER", "sip:ivm.local", "busy1", "");
        s.send(&busy).await;
        assert_eq!(s.response().await.status, 503);
        // The retransmission is answered by the transaction, again 503.
        s.send(&busy).await;
        assert_eq!(s.response().await.status, 503);
        assert!(s.seen().is_empty(), "no service saw them: {:?}", s.seen());

        s.send(&request("REGISTER", "sip:ivm.local", "fine1", "")).await;
        assert_eq!(s.response().await.status, 200);
        assert_eq!(s.seen(), vec![("registrar", "REGISTER".to_string())]);
    }
}
