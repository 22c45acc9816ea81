//! SDP offer/answer (RFC 3264) for IVM's one audio stream: reading the far end's offer or
//! answer ([`parse`], [`accept_answer`]), choosing the codec ([`negotiate`]), and writing our
//! answer or offer ([`answer`], [`offer`]). Parsing and printing go through `ezk-sdp-types`;
//! this module owns the choices: which `m=` line is ours, which codec and telephone-event
//! payload type, which direction, and the `o=` version of our side of the session.
//!
//! What we write is plain RTP/AVP G.711 that SIPp, Asterisk and FreeSWITCH accept:
//!
//! ```text
//! v=0
//! o=ivm 1234567 1 IN IP4 192.0.2.10
//! s=ivm
//! c=IN IP4 192.0.2.10
//! t=0 0
//! m=audio 20000 RTP/AVP 0 101
//! a=sendrecv
//! a=rtpmap:0 PCMU/8000
//! a=rtpmap:101 telephone-event/8000
//! a=fmtp:101 0-16
//! a=ptime:20
//! ```
//!
//! An answer keeps one `m=` line per offered line (RFC 3264 §6): the lines we do not use
//! (video, a second audio stream) are answered with port 0.

use crate::codec::{Codec, FRAME_MS};
use crate::dtmf::SUPPORTED_EVENTS;
use bytes::Bytes;
use bytesstr::BytesStr;
use ezk_sdp_types::{
    Connection, Direction as SdpDirection, Fmtp, Media, MediaDescription, MediaType, Origin, RtpMap,
    SessionDescription, TaggedAddress, Time, TransportProtocol, UnknownAttribute,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The encoding name of RFC 4733 events in `a=rtpmap`.
const TELEPHONE_EVENT: &str = "telephone-event";

/// The telephone-event payload type IVM offers.
pub const DEFAULT_TELEPHONE_EVENT_PT: u8 = 101;

/// Why an SDP body could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body is not valid UTF-8")]
    NotUtf8,
    #[error("SDP syntax error: {0}")]
    Syntax(String),
    #[error("SDP has no audio stream (no m=audio line)")]
    NoAudio,
    #[error("SDP offers media type {0:?}, which IVM does not handle")]
    UnsupportedMedia(String),
    #[error("the audio stream uses transport {0}; only RTP/AVP (plain RTP) is supported")]
    UnsupportedTransport(String),
    #[error("the audio stream has no connection address (no c= line at session or media level)")]
    NoConnection,
    #[error("connection address {0:?} is a host name; only IP addresses are supported")]
    HostName(String),
    #[error("the audio stream is declined (m=audio port 0)")]
    Declined,
    #[error("no common codec: offered payload types {offered:?}, IVM supports PCMU (0) and PCMA (8)")]
    NoCommonCodec { offered: Vec<u8> },
    #[error("SDP body of {0} bytes; at most {MAX_SDP_BYTES} are taken")]
    TooLarge(usize),
    #[error("SDP with {0} media lines; at most {MAX_MEDIA_LINES} are taken")]
    TooManyMedia(usize),
}

/// The largest SDP body read (a phone's offer is well under 2 KiB).
pub const MAX_SDP_BYTES: usize = 16 * 1024;
/// The most `m=` lines an offer may have: each gets a line in the answer, which must still fit
/// one UDP datagram.
pub const MAX_MEDIA_LINES: usize = 16;

impl SdpError {
    /// The SIP status that refuses an offer with this error: 400 for a body we cannot read,
    /// 488 (Not Acceptable Here) for a readable session we cannot take part in.
    pub fn sip_status(&self) -> u16 {
        match self {
            SdpError::NotUtf8 | SdpError::Syntax(_) => 400,
            _ => 488,
        }
    }
}

/// Media direction (RFC 3264 §5.1), from the point of view of the side that wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Direction {
    #[default]
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction seen from the other side: sendonly ↔ recvonly.
    pub fn reversed(self) -> Direction {
        match self {
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            other => other,
        }
    }

    /// Whether the side with this direction sends media.
    pub fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }

    /// Whether the side with this direction receives media.
    pub fn receives(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::RecvOnly)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    fn from_sdp(d: SdpDirection) -> Direction {
        match d {
            SdpDirection::SendRecv => Direction::SendRecv,
            SdpDirection::SendOnly => Direction::SendOnly,
            SdpDirection::RecvOnly => Direction::RecvOnly,
            SdpDirection::Inactive => Direction::Inactive,
        }
    }

    fn to_sdp(self) -> SdpDirection {
        match self {
            Direction::SendRecv => SdpDirection::SendRecv,
            Direction::SendOnly => SdpDirection::SendOnly,
            Direction::RecvOnly => SdpDirection::RecvOnly,
            Direction::Inactive => SdpDirection::Inactive,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `m=` line of a received SDP, kept so that an answer can mirror the offer's layout.
#[derive(Debug, Clone)]
pub struct MediaLine {
    media: MediaType,
    port: u16,
    proto: TransportProtocol,
    formats: Vec<u8>,
}

impl MediaLine {
    /// The media type: `audio`, `video`, `text` or `application`.
    pub fn media_type(&self) -> &'static str {
        match self.media {
            MediaType::Audio => "audio",
            MediaType::Video => "video",
            MediaType::Text => "text",
            MediaType::App => "application",
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The transport protocol as written (`RTP/AVP`, `RTP/SAVP`, …).
    pub fn proto(&self) -> String {
        self.proto.to_string()
    }

    pub fn formats(&self) -> &[u8] {
        &self.formats
    }
}

/// The far end's audio stream, from its offer or answer.
#[derive(Debug, Clone)]
pub struct RemoteMedia {
    /// Where to send RTP: the media-level `c=` (else the session-level one) and the `m=` port.
    /// Port 0 means the stream is declined; IP 0.0.0.0 is the old way to put a call on hold.
    pub addr: SocketAddr,
    /// The payload types of the `m=` line, in the far end's order of preference.
    pub formats: Vec<u8>,
    /// The G.711 payload types among them: static 0/8 without `a=rtpmap`, or mapped by name.
    pub codecs: Vec<(u8, Codec)>,
    /// The payload type of `telephone-event/8000`, if offered.
    pub telephone_event: Option<u8>,
    /// The far end's direction (media level, else session level, else sendrecv).
    pub direction: Direction,
    /// `a=ptime`, if given.
    pub ptime: Option<u32>,
    /// Every `m=` line of the SDP, in order.
    pub media_lines: Vec<MediaLine>,
    /// The index in `media_lines` of the audio stream described above.
    pub media_index: usize,
}

impl RemoteMedia {
    /// The G.711 codec that payload type `pt` carries in this SDP.
    pub fn codec_for(&self, pt: u8) -> Option<Codec> {
        self.codecs.iter().find(|(p, _)| *p == pt).map(|(_, c)| *c)
    }

    /// Whether the far end puts us on hold: it does not want to receive (sendonly, inactive),
    /// or it gave the RFC 2543 hold address 0.0.0.0.
    pub fn on_hold(&self) -> bool {
        !self.direction.receives() || self.addr.ip().is_unspecified()
    }
}

/// The outcome of offer/answer for our audio stream.
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub codec: Codec,
    /// The payload type that carries `codec` in this session.
    pub payload_type: u8,
    /// The telephone-event payload type, if both sides do RFC 4733.
    pub telephone_event: Option<u8>,
    /// Where the far end wants RTP (before latching; see `endpoint`).
    pub remote: SocketAddr,
    /// Our direction.
    pub direction: Direction,
    /// The `m=` lines of the offer, to mirror in an answer; empty means "just our audio line".
    pub media_lines: Vec<MediaLine>,
    /// The index of our audio stream in `media_lines`.
    pub media_index: usize,
}

/// The `o=` line's session id and version of our side of one SDP session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionVersion {
    id: u64,
    version: u64,
}

impl Default for SessionVersion {
    fn default() -> Self {
        SessionVersion::new()
    }
}

impl SessionVersion {
    /// A random session id (31 bits, which every parser stores) at version 1.
    pub fn new() -> SessionVersion {
        SessionVersion {
            id: rand::random_range(1..=i32::MAX as u64),
            version: 1,
        }
    }

    pub fn from_parts(id: u64, version: u64) -> SessionVersion {
        SessionVersion { id, version }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn version(&self) -> u64 {
        self.version
    }

    /// Increments the version; call it before writing an SDP whose content differs from the
    /// last one sent in this session (see [`same_content`]), never for an unchanged one.
    pub fn bump(&mut self) {
        self.version = self.version.wrapping_add(1);
    }
}

/// Whether two SDP bodies say the same thing apart from their `o=` line: decides whether a
/// new answer or offer in the same session needs [`SessionVersion::bump`].
pub fn same_content(a: &str, b: &str) -> bool {
    let lines = |s: &'_ str| {
        s.lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty() && !l.starts_with("o="))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    lines(a) == lines(b)
}

/// Reads an SDP body and returns its audio stream: the first `m=audio` line with plain RTP
/// (`RTP/AVP`, or `RTP/AVPF`) and a non-zero port, else the first such line with port 0.
pub fn parse(body: &[u8]) -> Result<RemoteMedia, SdpError> {
    if body.len() > MAX_SDP_BYTES {
        return Err(SdpError::TooLarge(body.len()));
    }
    // Counted over lines ended by LF or by a lone CR, as the parser reads them (the fuzz
    // target found 17 m= lines joined by bare CRs passing a count over LF alone).
    let media_lines = body
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| l.starts_with(b"m="))
        .count();
    if media_lines > MAX_MEDIA_LINES {
        return Err(SdpError::TooManyMedia(media_lines));
    }
    let text = BytesStr::from_utf8_bytes(Bytes::copy_from_slice(body)).map_err(|_| SdpError::NotUtf8)?;
    let sdp = match SessionDescription::parse(&text) {
        Ok(sdp) => sdp,
        Err(e) => essentials(&text)?.ok_or_else(|| SdpError::Syntax(e.to_string()))?,
    };

    let usable = |md: &MediaDescription| {
        md.media.media_type == MediaType::Audio
            && matches!(md.media.proto, TransportProtocol::RtpAvp | TransportProtocol::RtpAvpf)
    };
    let mds = &sdp.media_descriptions;
    let media_index = mds
        .iter()
        .position(|md| usable(md) && md.media.port != 0)
        .or_else(|| mds.iter().position(usable))
        .ok_or_else(|| match mds.iter().find(|md| md.media.media_type == MediaType::Audio) {
            Some(md) => SdpError::UnsupportedTransport(md.media.proto.to_string()),
            None => SdpError::NoAudio,
        })?;
    let md = &mds[media_index];

    let port = md.media.port;
    let ip = match md.connection.as_ref().or(sdp.connection.as_ref()).map(|c| &c.address) {
        Some(TaggedAddress::IP4(ip)) => IpAddr::V4(*ip),
        Some(TaggedAddress::IP6(ip)) => IpAddr::V6(*ip),
        // A declined stream needs no address.
        _ if port == 0 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(TaggedAddress::IP4FQDN(host) | TaggedAddress::IP6FQDN(host)) => {
            return Err(SdpError::HostName(host.to_string()));
        }
        None => return Err(SdpError::NoConnection),
    };

    let rtpmap = |pt: u8| md.rtpmap.iter().find(|m| m.payload == pt);
    let mut codecs = Vec::new();
    let mut telephone_event = None;
    for &pt in &md.media.fmts {
        match rtpmap(pt) {
            Some(map) => {
                let mono = map.params.as_ref().is_none_or(|p| p.trim() == "1");
                if map.clock_rate == crate::codec::SAMPLE_RATE && mono {
                    if let Some(codec) = Codec::from_name(&map.encoding) {
                        codecs.push((pt, codec));
                    } else if map.encoding.eq_ignore_ascii_case(TELEPHONE_EVENT) && telephone_event.is_none() {
                        telephone_event = Some(pt);
                    }
                }
            }
            None => codecs.extend(Codec::from_payload_type(pt).map(|c| (pt, c))),
        }
    }

    let ptime_of = |attrs: &[UnknownAttribute]| {
        attrs
            .iter()
            .find(|a| a.name.eq_ignore_ascii_case("ptime"))
            .and_then(|a| a.value.as_ref())
            .and_then(|v| v.trim().parse::<u32>().ok())
    };

    Ok(RemoteMedia {
        addr: SocketAddr::new(ip, port),
        formats: md.media.fmts.clone(),
        codecs,
        telephone_event,
        direction: Direction::from_sdp(md.direction),
        ptime: ptime_of(&md.attributes).or_else(|| ptime_of(&sdp.attributes)),
        media_lines: mds
            .iter()
            .map(|md| MediaLine {
                media: md.media.media_type,
                port: md.media.port,
                proto: md.media.proto.clone(),
                formats: md.media.fmts.clone(),
            })
            .collect(),
        media_index,
    })
}

/// The lines of an SDP that offer/answer needs; anything else is dropped when it does not parse.
const ESSENTIAL_LINES: &[&str] = &[
    "v=",
    "o=",
    "s=",
    "c=",
    "t=",
    "m=",
    "a=rtpmap:",
    "a=fmtp:",
    "a=ptime:",
    "a=sendrecv",
    "a=sendonly",
    "a=recvonly",
    "a=inactive",
];

/// Second chance for an SDP that `ezk-sdp-types` refused: be liberal in what we accept (an
/// attribute we do not use, such as a malformed `a=candidate` or `a=ssrc`, must not fail the
/// call), so parse again with only the lines offer/answer needs. `Ok(None)` when that fails too.
/// A media type the parser does not know (`m=image` for T.38, `m=message`) is refused with 488.
fn essentials(text: &str) -> Result<Option<SessionDescription>, SdpError> {
    let mut kept = String::with_capacity(text.len());
    for line in text.split(['\r', '\n']).filter(|l| !l.is_empty()) {
        if let Some(m) = line.strip_prefix("m=") {
            let kind = m.split(' ').next().unwrap_or_default();
            if !matches!(kind, "audio" | "video" | "text" | "application") {
                return Err(SdpError::UnsupportedMedia(kind.to_owned()));
            }
        }
        if ESSENTIAL_LINES.iter().any(|prefix| line.starts_with(prefix)) {
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    Ok(SessionDescription::parse(&BytesStr::from(kept)).ok())
}

/// Chooses the codec of an offer: the first offered format that is one of `supported`
/// (RFC 3264 §6.1 lets the answerer take the offerer's preference). `NoCommonCodec` and
/// `Declined` mean the caller answers 488.
pub fn negotiate(offer: &RemoteMedia, supported: &[Codec]) -> Result<Negotiated, SdpError> {
    if offer.addr.port() == 0 {
        return Err(SdpError::Declined);
    }
    let (payload_type, codec) = offer
        .formats
        .iter()
        .find_map(|&pt| offer.codec_for(pt).filter(|c| supported.contains(c)).map(|c| (pt, c)))
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: offer.formats.clone(),
        })?;
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event: offer.telephone_event,
        remote: offer.addr,
        direction: offer.direction.reversed(),
        media_lines: offer.media_lines.clone(),
        media_index: offer.media_index,
    })
}

/// Reads the answer to our [`offer`] of `offered` codecs and `te_pt` telephone-events: the
/// first answered format we offered. RFC 3264 asks the answerer to keep our payload type
/// numbers; if it renumbers, `payload_type` and `telephone_event` are the answer's numbers.
pub fn accept_answer(answer_body: &[u8], offered: &[Codec], te_pt: u8) -> Result<Negotiated, SdpError> {
    let answer = parse(answer_body)?;
    if answer.addr.port() == 0 {
        return Err(SdpError::Declined);
    }
    let (payload_type, codec) = answer
        .formats
        .iter()
        .find_map(|&pt| answer.codec_for(pt).filter(|c| offered.contains(c)).map(|c| (pt, c)))
        .ok_or_else(|| SdpError::NoCommonCodec {
            offered: answer.formats.clone(),
        })?;
    // The answerer may echo telephone-event under another number; prefer ours when present.
    let telephone_event = if answer.formats.contains(&te_pt) && answer.telephone_event.is_some() {
        Some(te_pt)
    } else {
        answer.telephone_event
    };
    Ok(Negotiated {
        codec,
        payload_type,
        telephone_event,
        remote: answer.addr,
        direction: answer.direction.reversed(),
        media_lines: Vec::new(),
        media_index: 0,
    })
}

/// Our answer to an offer negotiated into `neg`, with RTP at `local` (the address the far end
/// must send to: never 0.0.0.0 unless holding).
pub fn answer(local: SocketAddr, neg: &Negotiated, session: &SessionVersion) -> String {
    let proto = neg
        .media_lines
        .get(neg.media_index)
        .map(|l| l.proto.clone())
        .unwrap_or(TransportProtocol::RtpAvp);
    let audio = audio_description(
        local.port(),
        proto,
        &[(neg.payload_type, neg.codec)],
        neg.telephone_event,
        neg.direction,
    );
    let media_descriptions = if neg.media_lines.is_empty() {
        vec![audio]
    } else {
        let mut audio = Some(audio);
        neg.media_lines
            .iter()
            .enumerate()
            .map(|(i, line)| match audio.take_if(|_| i == neg.media_index) {
                Some(audio) => audio,
                None => rejected_description(line),
            })
            .collect()
    };
    session_description(local.ip(), session, media_descriptions).to_string()
}

/// Our offer: one audio stream at `local` with `codecs` in order of preference (each under its
/// static payload type) and telephone-events under `telephone_event_pt`.
pub fn offer(
    local: SocketAddr,
    codecs: &[Codec],
    telephone_event_pt: u8,
    direction: Direction,
    session: &SessionVersion,
) -> String {
    let formats: Vec<(u8, Codec)> = codecs.iter().map(|&c| (c.payload_type(), c)).collect();
    let audio = audio_description(
        local.port(),
        TransportProtocol::RtpAvp,
        &formats,
        Some(telephone_event_pt),
        direction,
    );
    session_description(local.ip(), session, vec![audio]).to_string()
}

fn session_description(ip: IpAddr, session: &SessionVersion, media: Vec<MediaDescription>) -> SessionDescription {
    SessionDescription {
        origin: Origin {
            username: BytesStr::from_static("ivm"),
            session_id: session.id.to_string().into(),
            session_version: session.version.to_string().into(),
            address: ip.into(),
        },
        name: BytesStr::from_static("ivm"),
        connection: Some(Connection {
            address: ip.into(),
            ttl: None,
            num: None,
        }),
        bandwidth: Vec::new(),
        time: Time { start: 0, stop: 0 },
        direction: SdpDirection::SendRecv,
        group: Vec::new(),
        extmap: Vec::new(),
        extmap_allow_mixed: false,
        ice_lite: false,
        ice_options: Default::default(),
        ice_ufrag: None,
        ice_pwd: None,
        setup: None,
        fingerprint: Vec::new(),
        attributes: Vec::new(),
        media_descriptions: media,
    }
}

fn audio_description(
    port: u16,
    proto: TransportProtocol,
    formats: &[(u8, Codec)],
    telephone_event: Option<u8>,
    direction: Direction,
) -> MediaDescription {
    let mut md = MediaDescription::rejected(MediaType::Audio);
    md.media = Media {
        media_type: MediaType::Audio,
        port,
        ports_num: None,
        proto,
        fmts: formats.iter().map(|(pt, _)| *pt).chain(telephone_event).collect(),
    };
    md.direction = direction.to_sdp();
    md.rtpmap = formats
        .iter()
        .map(|&(pt, codec)| RtpMap {
            payload: pt,
            encoding: BytesStr::from_static(codec.name()),
            clock_rate: crate::codec::SAMPLE_RATE,
            params: None,
        })
        .collect();
    if let Some(pt) = telephone_event {
        md.rtpmap.push(RtpMap {
            payload: pt,
            encoding: BytesStr::from_static(TELEPHONE_EVENT),
            clock_rate: crate::codec::SAMPLE_RATE,
            params: None,
        });
        md.fmtp.push(Fmtp {
            format: pt,
            params: BytesStr::from_static(SUPPORTED_EVENTS),
        });
    }
    md.attributes.push(UnknownAttribute {
        name: BytesStr::from_static("ptime"),
        value: Some(FRAME_MS.to_string().into()),
    });
    md
}

/// An offered line we do not take, answered with port 0 and the offered formats (RFC 3264 §6).
/// The answer's line for a stream we do not take: port 0 with the offer's transport and
/// formats (RFC 3264 §6) — unless the offer's were not a well-formed `token/token` and at least
/// one format (the fuzz target found `m=audio 0 /400`, with none, echoed into an answer no
/// parser reads); then plain RTP/AVP 0, which says the same.
fn rejected_description(line: &MediaLine) -> MediaDescription {
    let mut md = MediaDescription::rejected(line.media);
    let proto = line.proto.to_string();
    let token = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-._".contains(&b));
    let well_formed = proto.split('/').count() >= 2 && proto.split('/').all(token);
    md.media.proto = if well_formed {
        line.proto.clone()
    } else {
        TransportProtocol::RtpAvp
    };
    md.media.fmts = if line.formats.is_empty() {
        vec![0]
    } else {
        line.formats.clone()
    };
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejected_stream_with_a_bad_transport_is_answered_with_a_readable_line() {
        // What the fuzz target found (its m= lines read as `127.0.m=4000` and `/400` with no
        // formats, and were echoed so).
        let offer: &[u8] = b"v=0\r\no=- 0 1 IN IP4 1/40.0.1o-s=\r=\n\r\nc=IN IP4 1.0.1o=\r\ns=-\r\nc=IN IP4 127.0.0.1\r\x1at=0 0\r\n\
            m=audio 4 127.0.m=4000 RT12\x00\x00\x00:0.1\r\ns=-\r\nc=IN IP4 127.0.m=1\r\nt=0 0\r\n\
            m=audio 40002/4012/400 RTP/AVP 0\r\na=pti2\x00\x00\x00:0.1\r\ns=-\r\nc=IN IP4 1\r\nm=audio 4000 RTP/AVP 0\r\na=ptime: 0";
        let remote = parse(offer).expect("the parser takes it");
        let neg = negotiate(&remote, BOTH).expect("the second stream is taken");
        let local = SocketAddr::from(([127, 0, 0, 1], 20000));
        let answer = answer(local, &neg, &SessionVersion::new());
        assert!(parse(answer.as_bytes()).is_ok(), "our answer does not parse:\n{answer}");
    }

    #[test]
    fn media_lines_joined_by_bare_crs_are_counted_too() {
        let mut body = String::from("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n");
        for _ in 0..=MAX_MEDIA_LINES {
            body.push_str("m=audio 4000 RTP/AVP 0\r");
        }
        assert_eq!(
            parse(body.as_bytes()).err(),
            Some(SdpError::TooManyMedia(MAX_MEDIA_LINES + 1))
        );
    }

    const BOTH: &[Codec] = &[Codec::Pcmu, Codec::Pcma];

    /// SIPp's built-in uac (`-sn uac`).
    const SIPP_UAC: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n\
        t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    /// Asterisk 20 (chan_pjsip) offering many codecs.
    const ASTERISK: &str = "v=0\r\no=- 1811431498 1811431498 IN IP4 10.0.0.5\r\ns=Asterisk\r\nc=IN IP4 10.0.0.5\r\n\
        t=0 0\r\nm=audio 14872 RTP/AVP 9 107 0 8 3 111 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:107 opus/48000/2\r\n\
        a=fmtp:107 useinbandfec=1\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:3 GSM/8000\r\n\
        a=rtpmap:111 G726-32/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n\
        a=maxptime:150\r\na=sendrecv\r\n";

    /// FreeSWITCH 1.10 from a Sofia profile, with a session-level direction and an extra video line.
    const FREESWITCH: &str = "v=0\n\
        o=FreeSWITCH 1706000000 1706000001 IN IP4 203.0.113.9\n\
        s=FreeSWITCH\n\
        c=IN IP4 203.0.113.9\n\
        t=0 0\n\
        a=msid-semantic: WMS abc\n\
        m=audio 26780 RTP/AVP 8 0 102 101 13\n\
        a=rtpmap:8 PCMA/8000\n\
        a=rtpmap:0 PCMU/8000\n\
        a=rtpmap:102 opus/48000/2\n\
        a=fmtp:102 useinbandfec=1; maxaveragebitrate=30000\n\
        a=rtpmap:101 telephone-event/8000\n\
        a=fmtp:101 0-16\n\
        a=rtpmap:13 CN/8000\n\
        a=ptime:20\n\
        a=rtcp:26781 IN IP4 203.0.113.9\n\
        m=video 26782 RTP/AVP 96\n\
        a=rtpmap:96 VP8/90000\n";

    fn sdp(lines: &[&str]) -> String {
        lines.iter().map(|l| format!("{l}\r\n")).collect()
    }

    #[test]
    fn sipp_default_offer() {
        let r = parse(SIPP_UAC.as_bytes()).expect("parse");
        assert_eq!(r.addr, "127.0.0.1:6000".parse().expect("addr"));
        assert_eq!(r.formats, [0]);
        assert_eq!(r.codecs, [(0, Codec::Pcmu)]);
        assert_eq!(
            (r.telephone_event, r.direction, r.ptime),
            (None, Direction::SendRecv, None)
        );
        let n = negotiate(&r, BOTH).expect("negotiate");
        assert_eq!((n.codec, n.payload_type, n.telephone_event), (Codec::Pcmu, 0, None));
        assert_eq!(n.direction, Direction::SendRecv);
        let local: SocketAddr = "127.0.0.1:20000".parse().expect("addr");
        let a = answer(local, &n, &SessionVersion::from_parts(42, 1));
        assert_eq!(
            a,
            "v=0\r\no=ivm 42 1 IN IP4 127.0.0.1\r\ns=ivm\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 0\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        );
    }

    #[test]
    fn asterisk_many_codecs() {
        let r = parse(ASTERISK.as_bytes()).expect("parse");
        assert_eq!(r.formats, [9, 107, 0, 8, 3, 111, 101]);
        assert_eq!(r.codecs, [(0, Codec::Pcmu), (8, Codec::Pcma)]);
        assert_eq!((r.telephone_event, r.ptime), (Some(101), Some(20)));
        // First offered that we support, whatever our own order.
        let n = negotiate(&r, &[Codec::Pcma, Codec::Pcmu]).expect("negotiate");
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::Pcmu, 0, Some(101))
        );
        let n = negotiate(&r, &[Codec::Pcma]).expect("negotiate");
        assert_eq!(n.codec, Codec::Pcma);
        let a = answer(
            "10.0.0.1:20002".parse().expect("addr"),
            &n,
            &SessionVersion::from_parts(7, 3),
        );
        assert!(a.contains("o=ivm 7 3 IN IP4 10.0.0.1\r\n"));
        assert!(a.contains("m=audio 20002 RTP/AVP 8 101\r\n"));
        assert!(a.contains("a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"));
        assert!(a.contains("a=ptime:20\r\n") && a.contains("a=sendrecv\r\n"));
        assert!(a.ends_with("\r\n") && !a.replace("\r\n", "").contains('\n'));
    }

    #[test]
    fn freeswitch_with_video_gets_video_rejected() {
        let r = parse(FREESWITCH.as_bytes()).expect("parse");
        assert_eq!(r.addr, "203.0.113.9:26780".parse().expect("addr"));
        assert_eq!(r.codecs, [(8, Codec::Pcma), (0, Codec::Pcmu)]);
        assert_eq!(r.telephone_event, Some(101));
        assert_eq!(r.media_lines.len(), 2);
        assert_eq!(
            (r.media_lines[1].media_type(), r.media_lines[1].port()),
            ("video", 26782)
        );
        let n = negotiate(&r, BOTH).expect("negotiate");
        assert_eq!(n.codec, Codec::Pcma);
        let a = answer("192.0.2.1:20004".parse().expect("addr"), &n, &SessionVersion::new());
        let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m_lines, ["m=audio 20004 RTP/AVP 8 101", "m=video 0 RTP/AVP 96"]);
        // Our own answer parses back to the same choice.
        let back = parse(a.as_bytes()).expect("parse answer");
        assert_eq!(
            (back.addr, back.codecs.clone()),
            ("192.0.2.1:20004".parse().expect("addr"), vec![(8, Codec::Pcma)])
        );
    }

    #[test]
    fn pcma_only_and_dynamic_g711() {
        let offer = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 4000 RTP/AVP 8",
        ]);
        let r = parse(offer.as_bytes()).expect("parse");
        assert_eq!(r.codecs, [(8, Codec::Pcma)]);
        assert_eq!(negotiate(&r, BOTH).expect("negotiate").codec, Codec::Pcma);
        assert!(matches!(
            negotiate(&r, &[Codec::Pcmu]),
            Err(SdpError::NoCommonCodec { .. })
        ));

        // PCMU under a dynamic number; an rtpmap with the wrong clock rate is not G.711.
        let offer = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 4000 RTP/AVP 97 96",
            "a=rtpmap:97 PCMA/16000",
            "a=rtpmap:96 pcmu/8000/1",
        ]);
        let r = parse(offer.as_bytes()).expect("parse");
        assert_eq!(r.codecs, [(96, Codec::Pcmu)]);
        let n = negotiate(&r, BOTH).expect("negotiate");
        assert_eq!((n.codec, n.payload_type), (Codec::Pcmu, 96));
        let a = answer("127.0.0.1:20000".parse().expect("addr"), &n, &SessionVersion::new());
        assert!(a.contains("m=audio 20000 RTP/AVP 96\r\n") && a.contains("a=rtpmap:96 PCMU/8000\r\n"));
    }

    #[test]
    fn g729_only_is_no_common_codec() {
        let offer = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 198.51.100.7",
            "s=-",
            "c=IN IP4 198.51.100.7",
            "t=0 0",
            "m=audio 4000 RTP/AVP 18 101",
            "a=rtpmap:18 G729/8000",
            "a=fmtp:18 annexb=no",
            "a=rtpmap:101 telephone-event/8000",
        ]);
        let r = parse(offer.as_bytes()).expect("parse");
        let err = negotiate(&r, BOTH).expect_err("no codec");
        assert_eq!(err, SdpError::NoCommonCodec { offered: vec![18, 101] });
        assert_eq!(err.sip_status(), 488);
        assert!(err.to_string().contains("[18, 101]"));
    }

    #[test]
    fn oversized_offers_are_refused_before_they_are_read() {
        let mut many = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
        for i in 0..2000 {
            many.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 10_000 + 2 * (i % 1000)));
        }
        assert_eq!(parse(many.as_bytes()).err(), Some(SdpError::TooLarge(many.len())));
        let mut seventeen = String::from("v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n");
        for i in 0..17 {
            seventeen.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 10_000 + 2 * i));
        }
        let e = parse(seventeen.as_bytes()).err();
        assert_eq!(e, Some(SdpError::TooManyMedia(17)));
        assert_eq!(e.map(|e| e.sip_status()), Some(488));
    }

    #[test]
    fn ipv6_and_media_level_connection() {
        let offer = sdp(&[
            "v=0",
            "o=alice 2890844526 2890844526 IN IP6 2001:db8::1",
            "s=-",
            "c=IN IP6 2001:db8::1",
            "t=0 0",
            "m=audio 49170 RTP/AVP 0 8",
            "c=IN IP6 2001:db8::2",
        ]);
        let r = parse(offer.as_bytes()).expect("parse");
        assert_eq!(r.addr, "[2001:db8::2]:49170".parse().expect("addr"));
        let n = negotiate(&r, BOTH).expect("negotiate");
        let a = answer(
            "[2001:db8::10]:20000".parse().expect("addr"),
            &n,
            &SessionVersion::from_parts(1, 1),
        );
        assert!(a.contains("o=ivm 1 1 IN IP6 2001:db8::10\r\n") && a.contains("c=IN IP6 2001:db8::10\r\n"));

        // c= only at media level, IPv4, and media-level c= wins over session-level.
        let offer = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 10.1.1.1",
            "s=-",
            "t=0 0",
            "m=audio 5004 RTP/AVP 0",
            "c=IN IP4 10.1.1.2",
        ]);
        assert_eq!(
            parse(offer.as_bytes()).expect("parse").addr,
            "10.1.1.2:5004".parse().expect("addr")
        );
    }

    #[test]
    fn declined_and_hold() {
        let declined = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 10.1.1.1",
            "s=-",
            "c=IN IP4 10.1.1.1",
            "t=0 0",
            "m=audio 0 RTP/AVP 0",
        ]);
        let r = parse(declined.as_bytes()).expect("parse");
        assert_eq!(r.addr.port(), 0);
        assert_eq!(negotiate(&r, BOTH).expect_err("declined"), SdpError::Declined);

        // A declined first audio line and a live second one: the live one is ours.
        let two = sdp(&[
            "v=0",
            "o=- 1 1 IN IP4 10.1.1.1",
            "s=-",
            "c=IN IP4 10.1.1.1",
            "t=0 0",
            "m=audio 0 RTP/SAVP 0",
            "m=audio 7000 RTP/AVP 0",
        ]);
        let r = parse(two.as_bytes()).expect("parse");
        assert_eq!((r.media_index, r.addr.port()), (1, 7000));
        let a = answer(
            "10.0.0.1:20000".parse().expect("addr"),
            &negotiate(&r, BOTH).expect("neg"),
            &SessionVersion::new(),
        );
        let m_lines: Vec<&str> = a.lines().filter(|l| l.starts_with("m=")).collect();
        assert_eq!(m_lines, ["m=audio 0 RTP/SAVP 0", "m=audio 20000 RTP/AVP 0"]);

        // Hold, RFC 3264 style: a=sendonly → we answer recvonly.
        let hold = SIPP_UAC.replace("a=rtpmap:0 PCMU/8000\r\n", "a=rtpmap:0 PCMU/8000\r\na=sendonly\r\n");
        let r = parse(hold.as_bytes()).expect("parse");
        assert_eq!(r.direction, Direction::SendOnly);
        assert!(r.on_hold());
        let n = negotiate(&r, BOTH).expect("negotiate");
        assert_eq!(n.direction, Direction::RecvOnly);
        assert!(
            answer("127.0.0.1:20000".parse().expect("addr"), &n, &SessionVersion::new()).contains("a=recvonly\r\n")
        );

        // Hold, RFC 2543 style: c=0.0.0.0.
        let old_hold = SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0");
        let r = parse(old_hold.as_bytes()).expect("parse");
        assert!(r.addr.ip().is_unspecified() && r.on_hold());
        assert_eq!(r.direction, Direction::SendRecv);

        // Session-level inactive is inherited by the media.
        let inactive = SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=inactive\r\n");
        let r = parse(inactive.as_bytes()).expect("parse");
        assert_eq!(negotiate(&r, BOTH).expect("negotiate").direction, Direction::Inactive);
    }

    #[test]
    fn bad_offers_get_typed_errors() {
        assert!(matches!(parse(b"\xff\xfe"), Err(SdpError::NotUtf8)));
        assert!(matches!(parse(b""), Err(SdpError::Syntax(_))));
        assert!(matches!(parse(b"v=0\r\no=garbage\r\n"), Err(SdpError::Syntax(_))));
        let base = ["v=0", "o=- 1 1 IN IP4 10.1.1.1", "s=-", "t=0 0"];
        let no_audio = sdp(&[&base[..], &["c=IN IP4 10.1.1.1", "m=video 5000 RTP/AVP 96"]].concat());
        assert_eq!(parse(no_audio.as_bytes()).expect_err("no audio"), SdpError::NoAudio);
        let srtp = sdp(&[&base[..], &["c=IN IP4 10.1.1.1", "m=audio 5000 RTP/SAVP 0"]].concat());
        assert_eq!(
            parse(srtp.as_bytes()).expect_err("srtp"),
            SdpError::UnsupportedTransport("RTP/SAVP".into())
        );
        let no_c = sdp(&[&base[..], &["m=audio 5000 RTP/AVP 0"]].concat());
        assert_eq!(parse(no_c.as_bytes()).expect_err("no c"), SdpError::NoConnection);
        let fqdn = sdp(&[&base[..], &["c=IN IP4 media.example.com", "m=audio 5000 RTP/AVP 0"]].concat());
        assert_eq!(
            parse(fqdn.as_bytes()).expect_err("fqdn"),
            SdpError::HostName("media.example.com".into())
        );
        assert_eq!(SdpError::NotUtf8.sip_status(), 400);

        // Attributes we do not use never fail an offer, even when malformed.
        let odd = sdp(&[
            &base[..],
            &[
                "c=IN IP4 10.1.1.1",
                "a=group:BUNDLE",
                "m=audio 5000 RTP/AVP 0",
                "a=ssrc:abc",
                "a=candidate:x",
                "a=rtcp:y",
            ],
        ]
        .concat());
        assert!(
            SessionDescription::parse(&BytesStr::from(odd.as_str())).is_err(),
            "exercises the second chance"
        );
        assert_eq!(
            parse(odd.as_bytes()).expect("liberal parse").addr,
            "10.1.1.1:5000".parse().expect("addr")
        );
        // T.38 (re-INVITE to fax) is refused with 488, not 400.
        let fax = sdp(&[&base[..], &["c=IN IP4 10.1.1.1", "m=image 5000 udptl t38"]].concat());
        let err = parse(fax.as_bytes()).expect_err("fax");
        assert_eq!(
            (err.clone(), err.sip_status()),
            (SdpError::UnsupportedMedia("image".into()), 488)
        );
    }

    #[test]
    fn parse_never_panics_on_mangled_offers() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for base in [SIPP_UAC, ASTERISK, FREESWITCH] {
            let bytes = base.as_bytes();
            for _ in 0..3000 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let mut m = bytes.to_vec();
                let at = (seed as usize) % m.len();
                match seed >> 60 {
                    0..=5 => m[at] = (seed >> 32) as u8,
                    6..=9 => m.truncate(at),
                    10..=12 => m.insert(at, b"\r\n:/ 0=a"[(seed >> 40) as usize % 8]),
                    _ => {
                        m.remove(at);
                    }
                }
                if let Ok(r) = parse(&m) {
                    let _ = negotiate(&r, BOTH)
                        .map(|n| answer("127.0.0.1:1".parse().expect("addr"), &n, &SessionVersion::new()));
                }
            }
        }
    }

    #[test]
    fn offer_answer_accept_round_trip() {
        let ours: SocketAddr = "192.0.2.10:20000".parse().expect("addr");
        let theirs: SocketAddr = "192.0.2.20:30000".parse().expect("addr");
        let mut session = SessionVersion::from_parts(1234567, 1);
        let o = offer(ours, BOTH, 101, Direction::SendRecv, &session);
        assert_eq!(
            o,
            "v=0\r\no=ivm 1234567 1 IN IP4 192.0.2.10\r\ns=ivm\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
             m=audio 20000 RTP/AVP 0 8 101\r\na=sendrecv\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
        );

        // The far end (here: ourselves as answerer) prefers PCMA.
        let remote_offer = parse(o.as_bytes()).expect("parse offer");
        assert_eq!(remote_offer.addr, ours);
        let their_choice = negotiate(&remote_offer, &[Codec::Pcma]).expect("negotiate");
        let their_answer = answer(theirs, &their_choice, &SessionVersion::from_parts(99, 1));

        let n = accept_answer(their_answer.as_bytes(), BOTH, 101).expect("accept");
        assert_eq!(
            (n.codec, n.payload_type, n.telephone_event),
            (Codec::Pcma, 8, Some(101))
        );
        assert_eq!((n.remote, n.direction), (theirs, Direction::SendRecv));

        // Hold re-offer: content changes, so the version is bumped; the answer is recvonly.
        let hold = offer(ours, BOTH, 101, Direction::SendOnly, &session);
        assert!(!same_content(&o, &hold));
        session.bump();
        let hold = offer(ours, BOTH, 101, Direction::SendOnly, &session);
        assert!(hold.contains("o=ivm 1234567 2 IN IP4") && hold.contains("a=sendonly\r\n"));
        let held = negotiate(&parse(hold.as_bytes()).expect("parse"), BOTH).expect("negotiate");
        let held_answer = answer(theirs, &held, &SessionVersion::from_parts(99, 2));
        assert!(held_answer.contains("a=recvonly\r\n"));
        assert_eq!(
            accept_answer(held_answer.as_bytes(), BOTH, 101)
                .expect("accept")
                .direction,
            Direction::SendOnly
        );
        // A refresh with the same content needs no bump.
        assert!(same_content(
            &hold,
            &offer(
                ours,
                BOTH,
                101,
                Direction::SendOnly,
                &SessionVersion::from_parts(1234567, 9)
            )
        ));

        // Answers we cannot use.
        let declined = their_answer.replace("m=audio 30000", "m=audio 0");
        assert_eq!(
            accept_answer(declined.as_bytes(), BOTH, 101).expect_err("declined"),
            SdpError::Declined
        );
        assert!(matches!(
            accept_answer(their_answer.as_bytes(), &[Codec::Pcmu], 101),
            Err(SdpError::NoCommonCodec { .. })
        ));
    }
}
