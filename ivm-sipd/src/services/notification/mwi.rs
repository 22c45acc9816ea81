//! The MWI channel: the message-waiting lamp follows the mailbox — a missed message (when the
//! target's profile chose MWI), a delivery heard or rejected, a message saved or deleted, and
//! the state again whenever the phone registers.

use std::sync::Arc;

use super::notifier::{Channel, Job, Notice};
use crate::services::calls::Calls;
use crate::services::mwi::Mwi;

/// Tells the MWI service which mailbox changed.
pub struct MwiChannel {
    pub mwi: Mwi,
}

impl Channel for MwiChannel {
    fn name(&self) -> &'static str {
        "mwi"
    }

    fn wants(&self, notice: &Notice) -> bool {
        match notice {
            Notice::Missed { profile, .. } => profile.as_ref().is_some_and(|p| p.notify_mwi),
            Notice::Settled { .. } | Notice::MailboxChanged { .. } | Notice::Registered { .. } => true,
        }
    }

    fn notify<'a>(&'a self, _calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a> {
        match notice {
            Notice::Missed { target, .. } | Notice::Settled { target, .. } => self.mwi.changed(target),
            Notice::MailboxChanged { owner } => self.mwi.changed(owner),
            Notice::Registered { aor } => self.mwi.registered(aor),
        }
        Box::pin(async {})
    }
}
