//! The call service on the router: it claims every new INVITE and starts the sender's leg,
//! which the dial plan then turns into an IVM call, a retrieval or a mailbox session. It is
//! also the admission control: beyond `max_calls` sender legs at once, a new INVITE gets `503`
//! with Retry-After, so the calls in progress keep their quality.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::context::Calls;
use super::sender_leg;
use crate::stack::invite::server::ServerInvite;
use crate::stack::router::{Incoming, Service};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request};

/// The call service: every new INVITE is an IVM call, a retrieval or a mailbox session (the
/// dial plan decides in the sender leg); BYE, INFO and UPDATE arrive in its dialogs.
pub struct CallService {
    calls: Arc<Calls>,
    /// Sender legs running now.
    active: Arc<AtomicUsize>,
}

/// When a caller refused at capacity should try again.
const RETRY_AFTER_SECS: u32 = 5;

impl CallService {
    pub fn new(calls: Arc<Calls>) -> CallService {
        CallService {
            calls,
            active: Arc::default(),
        }
    }
}

/// One running sender leg, counted until dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Service for CallService {
    fn name(&self) -> &'static str {
        "calls"
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::Invite, Method::Bye, Method::Info, Method::Update]
    }

    fn claims(&self, request: &Request) -> bool {
        request.method == Method::Invite
    }

    fn handle(&self, incoming: Incoming) {
        let calls = self.calls.clone();
        let slot = Slot(self.active.clone());
        let running = self.active.fetch_add(1, Ordering::AcqRel);
        if running >= calls.settings.max_calls {
            drop(slot);
            tracing::warn!(calls = running, source = %incoming.source, "new call refused: at max_calls");
            let mut resp = incoming
                .request
                .response(503, Some("Service Unavailable (at capacity)"), &random_token(8));
            resp.headers.push(HeaderName::RetryAfter, RETRY_AFTER_SECS.to_string());
            return incoming.reply(&calls.core, resp);
        }
        // Watched for a CANCEL from here on, before anything is awaited.
        let invite = ServerInvite::new(&calls.core, &calls.dialogs, incoming);
        tokio::spawn(async move {
            let _slot = slot;
            sender_leg::run(calls, invite).await
        });
    }
}
