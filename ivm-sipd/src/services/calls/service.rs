//! The call service on the router: it claims every new INVITE and starts the sender's leg,
//! which the dial plan then turns into an IVM call, a retrieval or a mailbox session.

use std::sync::Arc;

use super::context::Calls;
use super::sender_leg;
use crate::stack::invite::server::ServerInvite;
use crate::stack::router::{Incoming, Service};
use crate::stack::sip::{Method, Request};

/// The call service: every new INVITE is an IVM call, a retrieval or a mailbox session (the
/// dial plan decides in the sender leg); BYE, INFO and UPDATE arrive in its dialogs.
pub struct CallService(pub Arc<Calls>);

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
        let calls = self.0.clone();
        // Watched for a CANCEL from here on, before anything is awaited.
        let invite = ServerInvite::new(&calls.core, &calls.dialogs, incoming);
        tokio::spawn(async move { sender_leg::run(calls, invite).await });
    }
}
