//! What follows a delivery (SPEC §4 flows 2, 4, 6), driven by the events calls and the
//! registrar report: a missed message is announced once on every channel the target's profile
//! names — SMS, a smart caller-ID call, MWI; the sender hears whether its message was accepted
//! or rejected; a target that registers again gets its pending messages by its rule.
//! [`notifier`] turns events into notices; each channel is one file.

pub mod caller_id;
pub mod expiry;
pub mod mwi;
pub mod notifier;
pub mod sender_status;
pub mod sms;
pub mod sms_gateway;
pub mod store_forward;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::services::calls::Calls;
use crate::services::calls::events::CallEvent;
use crate::services::mwi::Mwi;
use crate::store::mailbox::UnsentNotice;
use notifier::Channel;
use sms_gateway::SmsGateway;

/// The channel set, in the order each notice visits them. A new channel is one file and one
/// line here.
pub fn channels(mwi: Mwi, sms: Option<Arc<dyn SmsGateway>>) -> Vec<Arc<dyn Channel>> {
    vec![
        Arc::new(mwi::MwiChannel { mwi }),
        Arc::new(sms::SmsChannel { gateway: sms.clone() }),
        Arc::new(caller_id::CallerIdChannel),
        Arc::new(sender_status::SenderStatusChannel { gateway: sms }),
        Arc::new(store_forward::StoreForwardChannel),
    ]
}

/// Starts the notifications: the notices a crash left `unsent` are sent first, then the
/// channels listen to `events` (from calls) and `registered` (AORs from the registrar); unsaved
/// messages expire after `expiry_days`.
pub fn start(
    calls: Arc<Calls>,
    mwi: Mwi,
    sms: Option<Arc<dyn SmsGateway>>,
    events: mpsc::UnboundedReceiver<CallEvent>,
    registered: mpsc::UnboundedReceiver<String>,
    unsent: Vec<UnsentNotice>,
    expiry_days: u64,
) {
    expiry::start(calls.clone(), mwi.clone(), expiry_days);
    notifier::run(calls, channels(mwi, sms), events, registered, unsent);
}
