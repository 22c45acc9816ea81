//! What calls report: the end of each delivery and changes to a mailbox, as events on a
//! channel. The call layer only emits them; the notification layer subscribes (it depends on
//! calls, never the other way round).

use tokio::sync::mpsc;

/// Something a call did that others may want to tell someone about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A delivery to `target` ended unanswered (nobody picked up, busy, unreachable).
    Missed { message_id: i64, target: String },
    /// A delivery to `target` ended accepted (heard live or retrieved) or rejected.
    Settled {
        message_id: i64,
        target: String,
        accepted: bool,
    },
    /// `owner`'s mailbox changed (a message saved or deleted).
    MailboxChanged { owner: String },
}

/// Where calls send their events; cheap to clone. Sending never waits and never fails: with
/// nobody subscribed the events are dropped.
#[derive(Clone, Debug)]
pub struct CallEvents {
    tx: mpsc::UnboundedSender<CallEvent>,
}

impl CallEvents {
    /// A sink and the stream of what is sent to it.
    pub fn channel() -> (CallEvents, mpsc::UnboundedReceiver<CallEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (CallEvents { tx }, rx)
    }

    pub fn emit(&self, event: CallEvent) {
        tracing::debug!(?event, "call event");
        let _ = self.tx.send(event);
    }
}
