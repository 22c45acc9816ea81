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
