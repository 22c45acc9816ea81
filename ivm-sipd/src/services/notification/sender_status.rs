//! Status to the sender (SPEC §4.4, claims 003-13..14): "accepted" (heard live or retrieved) or
//! "rejected", by SIP MESSAGE to the sender's registered contact, or by SMS when it has an
//! MSISDN and no registration.

use std::sync::Arc;

use bytes::Bytes;

use super::notifier::{Channel, Job, Notice};
use super::sms_gateway::{self, SmsGateway};
use crate::services::calls::Calls;
use crate::stack::request;
use crate::stack::sip::{HeaderName, Method, Uri};
use crate::stack::transport::Peer;

/// Tells the sender what became of each delivery of its message.
pub struct SenderStatusChannel {
    /// For senders reached by SMS.
    pub gateway: Option<Arc<dyn SmsGateway>>,
}

impl Channel for SenderStatusChannel {
    fn name(&self) -> &'static str {
        "sender-status"
    }

    fn wants(&self, notice: &Notice) -> bool {
        matches!(notice, Notice::Settled { .. })
    }

    fn notify<'a>(&'a self, calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a> {
        Box::pin(async move {
            if let Notice::Settled {
                message_id,
                target,
                accepted,
            } = notice
            {
                report(calls, self.gateway.as_ref(), *message_id, target, *accepted).await;
            }
        })
    }
}

/// Tells the sender of `message_id` what became of its delivery to `target`.
async fn report(
    calls: &Arc<Calls>,
    gateway: Option<&Arc<dyn SmsGateway>>,
    message_id: i64,
    target: &str,
    accepted: bool,
) {
    let Some(m) = calls.message(message_id).await else {
        return;
    };
    let text = format!(
        "Your voice message {message_id} to {target} was {}.",
        if accepted { "heard" } else { "rejected" }
    );
    let bindings = calls.location.lookup(&m.sender, crate::store::unix_now());
    if let Some(b) = bindings.first() {
        let Ok(uri) = Uri::parse(b.contact.as_bytes()) else {
            return;
        };
        let peer = Peer {
            transport: b.transport,
            addr: b.source,
        };
        let domain = &calls.settings.domain;
        let mut req = request::out_of_dialog(
            Method::Message,
            uri,
            &format!("\"IVM\" <sip:ivm@{domain}>"),
            &format!("<sip:{}@{domain}>", m.sender),
            peer,
            calls.sip_addr(peer.transport),
        );
        req.headers.push(HeaderName::ContentType, "text/plain;charset=utf-8");
        req.body = Bytes::from(text.clone());
        tracing::info!(message_id, sender = %m.sender, target, accepted, "status to sender by MESSAGE");
        calls.core.send_and_forget(req, peer);
        return;
    }
    let profile = calls.profile(&m.sender).await;
    if let Some(msisdn) = profile.and_then(|p| p.msisdn) {
        tracing::info!(message_id, sender = %m.sender, target, accepted, "status to sender by SMS");
        sms_gateway::send(
            gateway,
            &format!("status:{message_id}:{target}:{accepted}"),
            &msisdn,
            &text,
        )
        .await;
    }
}
