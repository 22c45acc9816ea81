//! The SMS channel: a missed message announced by text to the target's MSISDN (or, for a
//! number behind a trunk, to that number), with its length and retrieval number.

use std::sync::Arc;

use super::notifier::{Channel, Job, Notice, is_phone_number};
use super::sms_gateway::{self, SmsGateway};
use crate::services::calls::Calls;

/// Sends the missed-message SMS through the SMSC client.
pub struct SmsChannel {
    pub gateway: Option<Arc<dyn SmsGateway>>,
}

impl SmsChannel {
    /// Where the text goes: the subscriber's MSISDN when it wants SMS, or the target itself
    /// when it is a phone number and no subscriber.
    fn recipient(notice: &Notice) -> Option<&str> {
        match notice {
            Notice::Missed { profile: Some(p), .. } => p.msisdn.as_deref().filter(|_| p.notify_sms),
            Notice::Missed {
                target, profile: None, ..
            } => Some(target.as_str()).filter(|t| is_phone_number(t)),
            _ => None,
        }
    }
}

impl Channel for SmsChannel {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn wants(&self, notice: &Notice) -> bool {
        SmsChannel::recipient(notice).is_some()
    }

    fn notify<'a>(&'a self, calls: &'a Arc<Calls>, notice: &'a Notice) -> Job<'a> {
        Box::pin(async move {
            let (Some(to), Notice::Missed { message_id, target, .. }) = (SmsChannel::recipient(notice), notice) else {
                return;
            };
            let Some(m) = calls.message(*message_id).await else {
                return;
            };
            let Some(number) = calls.retrieval_number(*message_id) else {
                return;
            };
            let text = missed_text(&m.sender, m.duration_ms, &number);
            let key = sms_gateway::missed_key(*message_id, target);
            sms_gateway::send(self.gateway.as_ref(), &key, to, &text).await;
        })
    }
}

/// The text announcing a missed message; its length in whole seconds, rounded to the nearest
/// (5.02 s is "5 s"), never "0 s".
pub fn missed_text(sender: &str, duration_ms: i64, retrieval_number: &str) -> String {
    let secs = ((duration_ms + 500) / 1000).max(1);
    format!("Voice message from {sender} ({secs} s). Call {retrieval_number} to listen.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::mailbox::Profile;

    fn profile(msisdn: Option<&str>, notify_sms: bool) -> Profile {
        Profile {
            number: "1001".into(),
            msisdn: msisdn.map(str::to_owned),
            pin_hash: None,
            notify_sms,
            notify_callerid: false,
            notify_mwi: false,
            forward_by_call: false,
            unsolicited_mwi: false,
        }
    }

    fn missed(target: &str, profile: Option<Profile>) -> Notice {
        Notice::Missed {
            message_id: 1,
            target: target.into(),
            profile,
        }
    }

    #[test]
    fn goes_to_the_msisdn_a_subscriber_chose_or_to_a_trunk_number() {
        let chosen = missed("1001", Some(profile(Some("+4915112345678"), true)));
        assert_eq!(SmsChannel::recipient(&chosen), Some("+4915112345678"));
        assert_eq!(
            SmsChannel::recipient(&missed("1001", Some(profile(Some("+49151"), false)))),
            None
        );
        assert_eq!(SmsChannel::recipient(&missed("1001", Some(profile(None, true)))), None);
        assert_eq!(SmsChannel::recipient(&missed("+4930123456", None)), Some("+4930123456"));
        assert_eq!(SmsChannel::recipient(&missed("sales", None)), None);
        let heard = Notice::Settled {
            message_id: 1,
            target: "1001".into(),
            accepted: true,
        };
        assert_eq!(SmsChannel::recipient(&heard), None);
    }

    #[test]
    fn missed_text_names_sender_length_and_number() {
        assert_eq!(
            missed_text("2001", 12_340, "980000121"),
            "Voice message from 2001 (12 s). Call 980000121 to listen."
        );
        assert_eq!(
            missed_text("2001", 5_020, "9").split(" (").nth(1),
            Some("5 s). Call 9 to listen.")
        );
        assert_eq!(
            missed_text("2001", 4_500, "9").split(" (").nth(1),
            Some("5 s). Call 9 to listen.")
        );
        assert_eq!(
            missed_text("2001", 200, "9").split(" (").nth(1),
            Some("1 s). Call 9 to listen.")
        );
    }
}
