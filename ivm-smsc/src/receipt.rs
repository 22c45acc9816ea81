//! Delivery receipts: owns the SMPP 3.4 Appendix B receipt text (`id:… sub:… dlvrd:… submit
//! date:… done date:… stat:… err:… text:…`), what a receipt's state means for a notification,
//! and how a receipt's message id is compared with the id `submit_sm_resp` gave.
//!
//! Carriers disagree on ids: one returns `0A1B2C` in `submit_sm_resp` and `662316` in the receipt,
//! another pads with zeros, another changes case. [`MessageIdKey`] reduces an id to three forms
//! (the text without leading zeros, lower-case; its value read as decimal; its value read as
//! hex), and [`MessageIdKey::matches`] compares them in the order the outbox does: same text
//! first, then hex-versus-decimal.

use std::time::{SystemTime, UNIX_EPOCH};

/// What a receipt says happened to a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Delivered to the handset (`DELIVRD`, message_state 2).
    Delivered,
    /// Final failure: the `stat` word and the `err` code, e.g. `UNDELIV err:001`.
    Failed(String),
    /// Not final (`ENROUTE`, `ACCEPTD`, `SCHEDULED`…): wait for the next receipt.
    Pending,
}

/// The fields of a receipt text that matter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReceiptText {
    /// `id:` value.
    pub id: String,
    /// `stat:` value, upper-case.
    pub stat: Option<String>,
    /// `err:` value.
    pub err: Option<String>,
}

/// Parses a receipt text. Keys are matched without regard to case; `id:` is required.
pub fn parse_receipt_text(text: &str) -> Option<ReceiptText> {
    let lower = text.to_ascii_lowercase();
    let id = value_after(text, &lower, "id:")?;
    if id.is_empty() {
        return None;
    }
    Some(ReceiptText {
        id,
        stat: value_after(text, &lower, "stat:").map(|s| s.to_ascii_uppercase()),
        err: value_after(text, &lower, "err:"),
    })
}

/// The word after `key` where `key` starts the text or follows a space.
fn value_after(text: &str, lower: &str, key: &str) -> Option<String> {
    let mut from = 0;
    while let Some(pos) = lower[from..].find(key) {
        let at = from + pos;
        if at == 0 || lower.as_bytes()[at - 1] == b' ' {
            let rest = &text[at + key.len()..];
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            return Some(rest[..end].to_string());
        }
        from = at + key.len();
    }
    None
}

/// Maps a receipt `stat` word (and `err` code) to an outcome.
pub fn outcome_of_stat(stat: &str, err: Option<&str>) -> ReceiptOutcome {
    let err = err.unwrap_or("000");
    match stat {
        "DELIVRD" | "DELIVERED" => ReceiptOutcome::Delivered,
        "EXPIRED" | "DELETED" | "UNDELIV" | "UNDELIVERABLE" | "REJECTD" | "REJECTED" | "UNKNOWN" | "FAILED" => {
            ReceiptOutcome::Failed(format!("{stat} err:{err}"))
        }
        _ => ReceiptOutcome::Pending,
    }
}

/// Maps a `message_state` TLV value (SMPP 3.4 §5.2.28) to an outcome.
pub fn outcome_of_message_state(state: u8) -> ReceiptOutcome {
    match state {
        2 => ReceiptOutcome::Delivered,
        3 => ReceiptOutcome::Failed("EXPIRED".into()),
        4 => ReceiptOutcome::Failed("DELETED".into()),
        5 => ReceiptOutcome::Failed("UNDELIV".into()),
        7 => ReceiptOutcome::Failed("UNKNOWN".into()),
        8 => ReceiptOutcome::Failed("REJECTD".into()),
        _ => ReceiptOutcome::Pending,
    }
}

/// The `message_state` value for a receipt `stat` word.
pub fn message_state_of_stat(stat: &str) -> u8 {
    match stat {
        "ENROUTE" => 1,
        "DELIVRD" => 2,
        "EXPIRED" => 3,
        "DELETED" => 4,
        "UNDELIV" => 5,
        "ACCEPTD" => 6,
        "REJECTD" => 8,
        _ => 7,
    }
}

/// Builds a receipt text the way SMSCs do (SMPP 3.4 Appendix B), with `text` cut to 20 chars.
pub fn format_receipt_text(
    id: &str,
    submit: SystemTime,
    done: SystemTime,
    stat: &str,
    err: &str,
    text: &str,
) -> String {
    let dlvrd = if stat == "DELIVRD" { "001" } else { "000" };
    let snippet: String = text.chars().take(20).collect();
    format!(
        "id:{id} sub:001 dlvrd:{dlvrd} submit date:{} done date:{} stat:{stat} err:{err} text:{snippet}",
        receipt_date(submit),
        receipt_date(done)
    )
}

/// `YYMMDDhhmm` in UTC.
pub fn receipt_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        y.rem_euclid(100),
        m,
        d,
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Days since 1970-01-01 to (year, month, day), H. Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A message id in the three forms receipts are matched by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageIdKey {
    /// Trimmed, lower-case, leading zeros removed (`"0"` stays `"0"`).
    pub text: String,
    /// The value read as a decimal number, in decimal, when the id is all decimal digits.
    pub dec: Option<String>,
    /// The value read as a hex number, in decimal, when the id is all hex digits.
    pub hex: Option<String>,
}

impl MessageIdKey {
    /// Reduces `id`; numbers longer than 128 bits keep only the text form.
    pub fn new(id: &str) -> MessageIdKey {
        let t = id.trim().to_ascii_lowercase();
        let stripped = t.trim_start_matches('0');
        let text = if stripped.is_empty() && !t.is_empty() {
            "0".to_string()
        } else {
            stripped.to_string()
        };
        let dec = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            t.parse::<u128>().ok().map(|v| v.to_string())
        } else {
            None
        };
        let hex = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            u128::from_str_radix(&t, 16).ok().map(|v| v.to_string())
        } else {
            None
        };
        MessageIdKey { text, dec, hex }
    }

    /// Whether a receipt id (`self`) names the same message as a submit id (`submitted`): the same
    /// text ignoring case and leading zeros, or the same number with one side in hex and the
    /// other in decimal.
    pub fn matches(&self, submitted: &MessageIdKey) -> bool {
        if self.text == submitted.text {
            return true;
        }
        let cross = |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(x), Some(y)) if x == y);
        cross(&self.dec, &submitted.hex) || cross(&self.hex, &submitted.dec)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_the_appendix_b_format() {
        let r = parse_receipt_text(
            "id:0A1B2C sub:001 dlvrd:001 submit date:2501011200 done date:2501011201 stat:DELIVRD err:000 text:Hello id:x",
        )
        .expect("receipt");
        assert_eq!(r.id, "0A1B2C");
        assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
        assert_eq!(r.err.as_deref(), Some("000"));
        let r = parse_receipt_text("ID:77 Stat:undeliv Err:005").expect("receipt");
        assert_eq!(
            (r.id.as_str(), r.stat.as_deref(), r.err.as_deref()),
            ("77", Some("UNDELIV"), Some("005"))
        );
        assert_eq!(parse_receipt_text("hello there"), None);
        assert_eq!(parse_receipt_text("id: stat:DELIVRD"), None);
        // "messageid:" must not be read as "id:".
        assert_eq!(parse_receipt_text("messageid:5 stat:DELIVRD"), None);
    }

    #[test]
    fn maps_stat_words() {
        assert_eq!(outcome_of_stat("DELIVRD", Some("000")), ReceiptOutcome::Delivered);
        assert_eq!(
            outcome_of_stat("UNDELIV", Some("001")),
            ReceiptOutcome::Failed("UNDELIV err:001".into())
        );
        assert_eq!(outcome_of_stat("ENROUTE", None), ReceiptOutcome::Pending);
        assert_eq!(outcome_of_stat("ACCEPTD", None), ReceiptOutcome::Pending);
        assert_eq!(outcome_of_message_state(2), ReceiptOutcome::Delivered);
        assert_eq!(outcome_of_message_state(5), ReceiptOutcome::Failed("UNDELIV".into()));
        assert_eq!(outcome_of_message_state(1), ReceiptOutcome::Pending);
    }

    #[test]
    fn formats_dates_and_texts() {
        // 2025-03-04 05:06 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_741_064_760);
        assert_eq!(receipt_date(t), "2503040506");
        assert_eq!(receipt_date(UNIX_EPOCH), "7001010000");
        let s = format_receipt_text("42", t, t, "DELIVRD", "000", "a text longer than twenty chars");
        assert_eq!(
            s,
            "id:42 sub:001 dlvrd:001 submit date:2503040506 done date:2503040506 stat:DELIVRD err:000 text:a text longer than t"
        );
        assert_eq!(parse_receipt_text(&s).map(|r| r.id), Some("42".into()));
    }

    #[test]
    fn ids_match_across_hex_decimal_and_zero_padding() {
        let sub = MessageIdKey::new("0A1B2C");
        assert!(MessageIdKey::new("0a1b2c").matches(&sub), "case");
        assert!(MessageIdKey::new("A1B2C").matches(&sub), "leading zero dropped");
        assert!(
            MessageIdKey::new("662316").matches(&sub),
            "decimal receipt for a hex id"
        );
        assert!(MessageIdKey::new("0000662316").matches(&sub), "zero-padded decimal");
        assert!(!MessageIdKey::new("662317").matches(&sub));

        let sub = MessageIdKey::new("662316");
        assert!(MessageIdKey::new("A1B2C").matches(&sub), "hex receipt for a decimal id");
        assert!(MessageIdKey::new("00000000662316").matches(&sub));
        assert!(!MessageIdKey::new("A1B2D").matches(&sub));

        let uuid = MessageIdKey::new("3f2a-77");
        assert_eq!((uuid.dec.as_deref(), uuid.hex.as_deref()), (None, None));
        assert!(MessageIdKey::new("3F2A-77").matches(&uuid));
        assert_eq!(MessageIdKey::new("000").text, "0");
        assert!(MessageIdKey::new("0").matches(&MessageIdKey::new("00")));
    }
}
