//! SMS text encoding: owns how a Rust `&str` becomes the `short_message` octets of one or more
//! `submit_sm` PDUs, and back.
//!
//! - GSM 03.38 (3GPP TS 23.038) 7-bit default alphabet plus its extension table (`€ [ ] { } ^ ~ \ |`
//!   and form feed, each sent as `ESC` + code and counted as two septets), `data_coding` 0.
//!   On SMPP the septets travel **unpacked**, one per octet, which is what SMSCs (and node-smpp,
//!   smpplib, Kannel) expect for `data_coding` 0; [`pack_septets`] / [`unpack_septets`] give the
//!   packed air-interface form for SMSCs that want it ([`crate::SmscConfig::gsm_packed`]).
//! - UCS-2 (UTF-16BE, `data_coding` 8) for any text with a character outside GSM 7-bit; characters
//!   beyond the BMP (emoji) are sent as surrogate pairs, which handsets render.
//! - Long texts are split into concatenated parts with an 8-bit-reference UDH (`05 00 03 ref n i`,
//!   `esm_class` 0x40): 160 septets in one part or 153 per part for GSM, 70 or 67 UTF-16 units for
//!   UCS-2. An escape sequence or a surrogate pair is never cut between two parts.

use std::fmt;

/// Most parts one concatenated message can have (the UDH counts them in one octet).
pub const MAX_PARTS: usize = 255;
/// Septets in a single GSM 7-bit message.
pub const GSM_SINGLE: usize = 160;
/// Septets per part of a concatenated GSM 7-bit message (7 septets go to the UDH).
pub const GSM_PART: usize = 153;
/// UTF-16 code units in a single UCS-2 message.
pub const UCS2_SINGLE: usize = 70;
/// UTF-16 code units per part of a concatenated UCS-2 message.
pub const UCS2_PART: usize = 67;

const ESC: u8 = 0x1B;

/// GSM 03.38 default alphabet, indexed by septet value.
const GSM_BASIC: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', '\u{1B}', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// GSM 03.38 extension table: (character, code sent after `ESC`).
const GSM_EXTENSION: [(char, u8); 10] = [
    ('\u{0C}', 0x0A),
    ('^', 0x14),
    ('{', 0x28),
    ('}', 0x29),
    ('\\', 0x2F),
    ('[', 0x3C),
    ('~', 0x3D),
    (']', 0x3E),
    ('|', 0x40),
    ('€', 0x65),
];

/// The alphabet a message is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// GSM 03.38 7-bit default alphabet, `data_coding` 0.
    Gsm7,
    /// UCS-2 / UTF-16BE, `data_coding` 8.
    Ucs2,
}

impl Coding {
    /// The SMPP `data_coding` value.
    pub fn data_coding(self) -> u8 {
        match self {
            Coding::Gsm7 => 0x00,
            Coding::Ucs2 => 0x08,
        }
    }
}

/// Why a text cannot be sent as SMS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    /// The text is empty.
    #[error("the text is empty")]
    Empty,
    /// The text needs more than [`MAX_PARTS`] parts.
    #[error("the text needs {parts} SMS parts, at most {MAX_PARTS} are possible")]
    TooLong {
        /// Parts it would need.
        parts: usize,
    },
}

/// One `submit_sm` worth of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPart {
    /// The `short_message` octets, UDH first when [`EncodedPart::udhi`] is set.
    pub short_message: Vec<u8>,
    /// Whether `short_message` starts with a UDH (`esm_class` |= 0x40).
    pub udhi: bool,
}

/// A text encoded for SMPP: its alphabet and its parts in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// The alphabet, the same for every part.
    pub coding: Coding,
    /// One entry per `submit_sm`.
    pub parts: Vec<EncodedPart>,
}

/// Concatenation info read from a UDH (`IEI` 0x00 or 0x08).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    /// Reference shared by all parts of one message.
    pub reference: u16,
    /// Number of parts.
    pub total: u8,
    /// This part's number, from 1.
    pub seq: u8,
}

impl fmt::Display for Concat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ref {} part {}/{}", self.reference, self.seq, self.total)
    }
}

/// A received `short_message` turned back into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedMessage {
    /// The text of this part.
    pub text: String,
    /// Concatenation info when the part had a UDH with it.
    pub concat: Option<Concat>,
}

fn gsm_code(c: char) -> Option<GsmChar> {
    if let Some(i) = GSM_BASIC.iter().position(|&g| g == c) {
        if i as u8 != ESC {
            return Some(GsmChar::Basic(i as u8));
        }
        return None;
    }
    GSM_EXTENSION
        .iter()
        .find(|(g, _)| *g == c)
        .map(|&(_, code)| GsmChar::Extension(code))
}

enum GsmChar {
    Basic(u8),
    Extension(u8),
}

/// Whether every character of `text` is in the GSM 03.38 default alphabet or its extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm_code(c).is_some())
}

/// The unpacked septets of `text` (extension characters as `ESC`, code), or `None` when a
/// character is not in GSM 03.38.
pub fn gsm7_septets(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match gsm_code(c)? {
            GsmChar::Basic(b) => out.push(b),
            GsmChar::Extension(code) => {
                out.push(ESC);
                out.push(code);
            }
        }
    }
    Some(out)
}

/// Decodes unpacked GSM 03.38 septets. An unknown extension code gives the basic character (as
/// the spec says); an octet above 0x7F gives U+FFFD.
pub fn decode_gsm7(septets: &[u8]) -> String {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().copied().peekable();
    while let Some(b) = iter.next() {
        if b == ESC {
            match iter.next() {
                Some(code) => match GSM_EXTENSION.iter().find(|(_, e)| *e == code) {
                    Some((c, _)) => out.push(*c),
                    None => out.push(GSM_BASIC.get(usize::from(code)).copied().unwrap_or('\u{FFFD}')),
                },
                None => out.push(' '),
            }
        } else {
            out.push(GSM_BASIC.get(usize::from(b)).copied().unwrap_or('\u{FFFD}'));
        }
    }
    out
}

/// Packs septets into octets (3GPP TS 23.038 §6.1.2.1), after `fill_bits` zero bits (the padding
/// that aligns text to a septet boundary after a UDH: 1 bit after a 6-octet UDH).
pub fn pack_septets(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let total_bits = usize::from(fill_bits) + septets.len() * 7;
    let mut out = vec![0u8; total_bits.div_ceil(8)];
    let mut bit = usize::from(fill_bits);
    for &s in septets {
        let s = u16::from(s & 0x7F);
        let byte = bit / 8;
        let shift = bit % 8;
        let v = s << shift;
        out[byte] |= (v & 0xFF) as u8;
        if shift > 1 && byte + 1 < out.len() {
            out[byte + 1] |= (v >> 8) as u8;
        }
        bit += 7;
    }
    out
}

/// Unpacks `count` septets from packed octets that start with `fill_bits` padding bits.
pub fn unpack_septets(packed: &[u8], count: usize, fill_bits: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(count);
    let mut bit = usize::from(fill_bits);
    for _ in 0..count {
        let byte = bit / 8;
        let shift = bit % 8;
        let lo = u16::from(packed.get(byte).copied().unwrap_or(0));
        let hi = u16::from(packed.get(byte + 1).copied().unwrap_or(0));
        out.push((((hi << 8 | lo) >> shift) & 0x7F) as u8);
        bit += 7;
    }
    out
}

/// The alphabet and part count `text` needs, without building the parts.
pub fn count_parts(text: &str) -> (Coding, usize) {
    match gsm7_septets(text) {
        Some(septets) => (Coding::Gsm7, split_gsm(&septets).len()),
        None => {
            let units: Vec<u16> = text.encode_utf16().collect();
            (Coding::Ucs2, split_ucs2(&units).len())
        }
    }
}

/// Splits GSM septets into per-part slices: one part up to 160, else 153 per part, never ending
/// a part on the `ESC` of an escape sequence.
fn split_gsm(septets: &[u8]) -> Vec<&[u8]> {
    if septets.len() <= GSM_SINGLE {
        return vec![septets];
    }
    let mut parts = Vec::new();
    let mut rest = septets;
    while !rest.is_empty() {
        let mut n = rest.len().min(GSM_PART);
        if n < rest.len() && rest[n - 1] == ESC && !escape_is_complete(&rest[..n]) {
            n -= 1;
        }
        let (head, tail) = rest.split_at(n);
        parts.push(head);
        rest = tail;
    }
    parts
}

/// Whether the trailing `ESC` of `septets` is itself the second octet of an escape sequence
/// (never the case for the codes we emit, but decoded input may contain `ESC ESC`).
fn escape_is_complete(septets: &[u8]) -> bool {
    let trailing = septets.iter().rev().take_while(|&&b| b == ESC).count();
    trailing % 2 == 0
}

/// Splits UTF-16 units: one part up to 70, else 67 per part, never cutting a surrogate pair.
fn split_ucs2(units: &[u16]) -> Vec<&[u16]> {
    if units.len() <= UCS2_SINGLE {
        return vec![units];
    }
    let mut parts = Vec::new();
    let mut rest = units;
    while !rest.is_empty() {
        let mut n = rest.len().min(UCS2_PART);
        if n < rest.len() && (0xD800..0xDC00).contains(&rest[n - 1]) {
            n -= 1;
        }
        let (head, tail) = rest.split_at(n);
        parts.push(head);
        rest = tail;
    }
    parts
}

fn udh(reference: u8, total: usize, seq: usize) -> [u8; 6] {
    // Callers keep total <= MAX_PARTS, so both fit in one octet.
    [0x05, 0x00, 0x03, reference, total as u8, seq as u8]
}

/// Encodes `text` for `submit_sm`: GSM 7-bit when every character allows it, UCS-2 otherwise,
/// split into UDH-concatenated parts with `concat_ref` when it does not fit one SMS. With
/// `gsm_packed`, GSM septets are packed 8-in-7 (with the fill bit after a UDH).
pub fn encode_message(text: &str, concat_ref: u8, gsm_packed: bool) -> Result<EncodedMessage, EncodingError> {
    if text.is_empty() {
        return Err(EncodingError::Empty);
    }
    // The payload of each part in its coding, then one UDH per part when there are several.
    let (coding, bodies): (Coding, Vec<Vec<u8>>) = match gsm7_septets(text) {
        Some(septets) => {
            let chunks = split_gsm(&septets);
            let fill_bits = if chunks.len() > 1 { 1 } else { 0 };
            let bodies = chunks
                .iter()
                .map(|chunk| {
                    if gsm_packed {
                        pack_septets(chunk, fill_bits)
                    } else {
                        chunk.to_vec()
                    }
                })
                .collect();
            (Coding::Gsm7, bodies)
        }
        None => {
            let units: Vec<u16> = text.encode_utf16().collect();
            let bodies = split_ucs2(&units)
                .iter()
                .map(|chunk| chunk.iter().flat_map(|u| u.to_be_bytes()).collect())
                .collect();
            (Coding::Ucs2, bodies)
        }
    };
    if bodies.len() > MAX_PARTS {
        return Err(EncodingError::TooLong { parts: bodies.len() });
    }
    let total = bodies.len();
    let concat = total > 1;
    let parts = bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let mut sm = Vec::with_capacity(body.len() + 6);
            if concat {
                sm.extend_from_slice(&udh(concat_ref, total, i + 1));
            }
            sm.extend(body);
            EncodedPart {
                short_message: sm,
                udhi: concat,
            }
        })
        .collect();
    Ok(EncodedMessage { coding, parts })
}

/// Reads a UDH at the start of `sm`: returns the concatenation info (if any) and the octets after
/// the header, or `None` when the header length runs past the message.
pub fn split_udh(sm: &[u8]) -> Option<(Option<Concat>, &[u8])> {
    let udhl = usize::from(*sm.first()?);
    let header = sm.get(1..1 + udhl)?;
    let body = &sm[1 + udhl..];
    let mut concat = None;
    let mut i = 0;
    while i + 2 <= header.len() {
        let iei = header[i];
        let len = usize::from(header[i + 1]);
        let Some(data) = header.get(i + 2..i + 2 + len) else {
            break;
        };
        match (iei, data) {
            (0x00, [r, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from(*r),
                    total: *total,
                    seq: *seq,
                });
            }
            (0x08, [r1, r2, total, seq]) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([*r1, *r2]),
                    total: *total,
                    seq: *seq,
                });
            }
            _ => {}
        }
        i += 2 + len;
    }
    Some((concat, body))
}

/// Decodes a received `short_message` by its `data_coding` and `esm_class` (UDHI bit 0x40):
/// 0 GSM 7-bit unpacked, 1 IA5/ASCII, 3 Latin-1, 8 UCS-2, the 0xF0 group by its alphabet bit;
/// anything else (binary) is shown as hex.
pub fn decode_short_message(data_coding: u8, esm_class: u8, sm: &[u8]) -> DecodedMessage {
    let (concat, body) = if esm_class & 0x40 != 0 {
        match split_udh(sm) {
            Some((concat, body)) => (concat, body),
            None => (None, sm),
        }
    } else {
        (None, sm)
    };
    let text = match data_coding {
        0x00 => decode_gsm7(body),
        0x01 => body
            .iter()
            .map(|&b| if b.is_ascii() { char::from(b) } else { '\u{FFFD}' })
            .collect(),
        0x03 => body.iter().map(|&b| char::from(b)).collect(),
        0x08 => decode_ucs2(body),
        dc if dc & 0xF0 == 0xF0 && dc & 0x04 == 0 => decode_gsm7(body),
        _ => body.iter().map(|b| format!("{b:02x}")).collect(),
    };
    DecodedMessage { text, concat }
}

fn decode_ucs2(body: &[u8]) -> String {
    let units: Vec<u16> = body.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
    String::from_utf16_lossy(&units)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_gsm_including_extension_chars() {
        assert!(is_gsm7("Hello @ £$¥ èé ÄÖÑÜ§ ¿¡ äöñüà ΔΦΓΛΩΠΨΣΘΞ"));
        assert!(is_gsm7("€ [ ] { } ^ ~ \\ |"));
        assert!(!is_gsm7("ç"), "small c cedilla is not in the default alphabet");
        assert!(!is_gsm7("Привет"));
        assert!(!is_gsm7("hi 👋"));
        assert!(!is_gsm7("\u{1B}"), "a raw ESC is not a character");
    }

    #[test]
    fn extension_chars_take_two_septets() {
        let s = gsm7_septets("€[]{}^~\\|").expect("gsm");
        assert_eq!(
            s,
            vec![
                0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E, 0x1B, 0x28, 0x1B, 0x29, 0x1B, 0x14, 0x1B, 0x3D, 0x1B, 0x2F, 0x1B,
                0x40
            ]
        );
        assert_eq!(decode_gsm7(&s), "€[]{}^~\\|");
        assert_eq!(gsm7_septets("@£$"), Some(vec![0x00, 0x01, 0x02]));
    }

    #[test]
    fn packs_and_unpacks_septets() {
        // 3GPP TS 23.038 example: "hellohello" packs to E8 32 9B FD 46 97 D9 EC 37.
        let s = gsm7_septets("hellohello").expect("gsm");
        let packed = pack_septets(&s, 0);
        assert_eq!(packed, vec![0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]);
        assert_eq!(unpack_septets(&packed, s.len(), 0), s);
        // With the fill bit after a 6-octet UDH, 153 septets fit 134 octets (6 + 134 = 140).
        let long = vec![0x41u8; 153];
        let packed = pack_septets(&long, 1);
        assert_eq!(packed.len(), 134);
        assert_eq!(unpack_septets(&packed, 153, 1), long);
        // Eight septets pack into exactly seven octets.
        assert_eq!(pack_septets(&[0x7F; 8], 0), vec![0xFF; 7]);
    }

    #[test]
    fn short_gsm_text_is_one_part_without_udh() {
        let m = encode_message("Hello world", 7, false).expect("encode");
        assert_eq!(m.coding, Coding::Gsm7);
        assert_eq!(m.parts.len(), 1);
        assert!(!m.parts[0].udhi);
        assert_eq!(m.parts[0].short_message, b"Hello world".to_vec());
        let exactly = "a".repeat(160);
        assert_eq!(encode_message(&exactly, 1, false).expect("encode").parts.len(), 1);
        // 159 plain + one extension char = 161 septets: two parts.
        let over = format!("{}€", "a".repeat(159));
        assert_eq!(count_parts(&over), (Coding::Gsm7, 2));
    }

    #[test]
    fn gsm_300_chars_split_in_two_parts_with_udh() {
        let text: String = (0..300).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
        let m = encode_message(&text, 0x42, false).expect("encode");
        assert_eq!(m.coding, Coding::Gsm7);
        assert_eq!(m.parts.len(), 2);
        for (i, p) in m.parts.iter().enumerate() {
            assert!(p.udhi);
            assert_eq!(&p.short_message[..6], &[0x05, 0x00, 0x03, 0x42, 2, i as u8 + 1]);
        }
        assert_eq!(m.parts[0].short_message.len(), 6 + 153);
        assert_eq!(m.parts[1].short_message.len(), 6 + 147);
        let joined: String = m
            .parts
            .iter()
            .map(|p| decode_short_message(0, 0x40, &p.short_message).text)
            .collect();
        assert_eq!(joined, text);
        let d = decode_short_message(0, 0x40, &m.parts[1].short_message);
        assert_eq!(
            d.concat,
            Some(Concat {
                reference: 0x42,
                total: 2,
                seq: 2
            })
        );
    }

    #[test]
    fn escape_sequence_is_never_split() {
        // 152 'a' then '€': the ESC would be septet 153; it moves to part 2 whole.
        let text = format!("{}€{}", "a".repeat(152), "b".repeat(20));
        let m = encode_message(&text, 1, false).expect("encode");
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.parts[0].short_message.len(), 6 + 152);
        assert_eq!(&m.parts[1].short_message[6..8], &[0x1B, 0x65]);
        let joined: String = m
            .parts
            .iter()
            .map(|p| decode_short_message(0, 0x40, &p.short_message).text)
            .collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn non_gsm_text_is_ucs2() {
        let m = encode_message("Привет", 1, false).expect("encode");
        assert_eq!(m.coding, Coding::Ucs2);
        assert_eq!(m.coding.data_coding(), 8);
        assert_eq!(m.parts.len(), 1);
        assert_eq!(
            m.parts[0].short_message,
            vec![0x04, 0x1F, 0x04, 0x40, 0x04, 0x38, 0x04, 0x32, 0x04, 0x35, 0x04, 0x42]
        );
        assert_eq!(decode_short_message(8, 0, &m.parts[0].short_message).text, "Привет");
    }

    #[test]
    fn emoji_text_splits_into_ucs2_parts_without_cutting_pairs() {
        // 40 emoji = 80 UTF-16 units: more than 70, so two parts of at most 67 units; the 34th
        // pair would straddle unit 67, so part one carries 33 pairs (66 units).
        let text = "😀".repeat(40);
        let m = encode_message(&text, 9, false).expect("encode");
        assert_eq!(m.coding, Coding::Ucs2);
        assert_eq!(m.parts.len(), 2);
        assert_eq!(m.parts[0].short_message.len(), 6 + 66 * 2);
        assert_eq!(m.parts[1].short_message.len(), 6 + 14 * 2);
        let joined: String = m
            .parts
            .iter()
            .map(|p| decode_short_message(8, 0x40, &p.short_message).text)
            .collect();
        assert_eq!(joined, text);
        assert_eq!(count_parts(&"é".repeat(70)), (Coding::Gsm7, 1));
        assert_eq!(count_parts(&"ж".repeat(70)), (Coding::Ucs2, 1));
        assert_eq!(count_parts(&"ж".repeat(71)), (Coding::Ucs2, 2));
        assert_eq!(count_parts(&"ж".repeat(134)), (Coding::Ucs2, 2));
        assert_eq!(count_parts(&"ж".repeat(135)), (Coding::Ucs2, 3));
    }

    #[test]
    fn packed_gsm_parts_fit_140_octets() {
        let text = "x".repeat(306);
        let m = encode_message(&text, 3, true).expect("encode");
        assert_eq!(m.parts.len(), 2);
        assert!(m.parts.iter().all(|p| p.short_message.len() <= 140));
        let p0 = &m.parts[0].short_message;
        assert_eq!(unpack_septets(&p0[6..], 153, 1), vec![b'x'; 153]);
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(encode_message("", 0, false), Err(EncodingError::Empty));
        let huge = "a".repeat(153 * 256);
        assert_eq!(
            encode_message(&huge, 0, false),
            Err(EncodingError::TooLong { parts: 256 })
        );
    }

    #[test]
    fn decodes_other_codings_and_bad_udh() {
        assert_eq!(decode_short_message(3, 0, &[0x63, 0xE9]).text, "cé");
        assert_eq!(decode_short_message(1, 0, b"abc").text, "abc");
        assert_eq!(decode_short_message(4, 0, &[0xDE, 0xAD]).text, "dead");
        // A UDH length past the end is treated as text, not a panic.
        let d = decode_short_message(0, 0x40, &[0x20, 0x41]);
        assert_eq!(d.concat, None);
        // 16-bit reference concatenation (IEI 0x08).
        let d = decode_short_message(0, 0x40, &[0x06, 0x08, 0x04, 0x12, 0x34, 0x03, 0x02, 0x41]);
        assert_eq!(
            d.concat,
            Some(Concat {
                reference: 0x1234,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(d.text, "A");
    }
}
