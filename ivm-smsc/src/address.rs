//! SMPP addresses: owns how an MSISDN or a sender name becomes `addr`, `addr_ton`, `addr_npi`.
//!
//! `+4917012345` → TON 1 (international), NPI 1 (E.164), `4917012345`; `017012345` → TON 0, NPI 1;
//! a sender name such as `IVM` → TON 5 (alphanumeric), NPI 0.

/// An address ready for a PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The digits or the name, as sent.
    pub addr: String,
    /// Type of number.
    pub ton: u8,
    /// Numbering plan.
    pub npi: u8,
}

/// Most digits SMPP 3.4 carries in an address (`destination_addr` is a C-octet string of 21).
pub const MAX_DIGITS: usize = 20;
/// Most characters of an alphanumeric sender (GSM limit).
pub const MAX_ALPHANUMERIC: usize = 11;

impl Address {
    /// A destination MSISDN: optional `+`, then 1 to 20 digits; spaces, dots, dashes and
    /// parentheses are dropped.
    pub fn destination(msisdn: &str) -> Result<Address, String> {
        let cleaned: String = msisdn
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let (international, digits) = match cleaned.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, cleaned.as_str()),
        };
        if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{msisdn:?} is not a phone number (expected + and up to {MAX_DIGITS} digits)"
            ));
        }
        Ok(Address {
            addr: digits.to_string(),
            ton: if international { 1 } else { 0 },
            npi: 1,
        })
    }

    /// A sender: a number as for [`Address::destination`], or an alphanumeric name of at most 11
    /// printable ASCII characters; empty means "let the SMSC choose".
    pub fn source(source: &str) -> Result<Address, String> {
        if source.is_empty() {
            return Ok(Address {
                addr: String::new(),
                ton: 0,
                npi: 0,
            });
        }
        let numeric = source.strip_prefix('+').unwrap_or(source);
        if !numeric.is_empty() && numeric.bytes().all(|b| b.is_ascii_digit()) {
            return Address::destination(source);
        }
        if source.len() > MAX_ALPHANUMERIC || !source.bytes().all(|b| (0x20..0x7F).contains(&b)) {
            return Err(format!(
                "{source:?} is neither a number nor an alphanumeric sender of at most {MAX_ALPHANUMERIC} ASCII characters"
            ));
        }
        Ok(Address {
            addr: source.to_string(),
            ton: 5,
            npi: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_names() {
        assert_eq!(
            Address::destination("+49 170 1234567"),
            Ok(Address {
                addr: "491701234567".into(),
                ton: 1,
                npi: 1
            })
        );
        assert_eq!(
            Address::destination("0170-1234567"),
            Ok(Address {
                addr: "01701234567".into(),
                ton: 0,
                npi: 1
            })
        );
        assert!(Address::destination("").is_err());
        assert!(Address::destination("+").is_err());
        assert!(Address::destination("12ab").is_err());
        assert!(Address::destination(&"1".repeat(21)).is_err());
        assert_eq!(
            Address::source("IVM"),
            Ok(Address {
                addr: "IVM".into(),
                ton: 5,
                npi: 0
            })
        );
        assert_eq!(
            Address::source("555"),
            Ok(Address {
                addr: "555".into(),
                ton: 0,
                npi: 1
            })
        );
        assert!(Address::source("Twelve chars").is_err());
        assert_eq!(Address::source("").map(|a| a.ton), Ok(0));
    }
}
