//! A scriptable SIP phone over UDP: what the notification and retrieval
//! tests need beyond SIPp — act on what was heard (press a key once the
//! message has been played), count every request that arrives, and answer
//! several calls differently.
//!
//! A [`Phone`] owns one UDP socket (its SIP address) and an [`RtpSink`]
//! (its ear; every SDP it sends points there). A background thread records
//! every SIP message that arrives and answers requests the way a phone
//! would: `200` to NOTIFY, MESSAGE, INFO, OPTIONS and BYE; an INVITE is
//! answered by the next [`Answer`] in the phone's plan (pick up with SDP,
//! ring until CANCEL, or busy); a retransmitted INVITE gets the same
//! response again, a retransmitted `200` to our INVITE the same ACK.
//!
//! Like every real phone, it talks for the whole call: from the moment a call
//! is answered (the 200 it sent, or the ACK of the 200 it received) until
//! BYE or CANCEL, a talker thread sends 20 ms of RTP silence (PCMU `0xFF`,
//! PCMA `0xD5`) from the sink's socket to the server's SDP address; RFC 4733
//! key presses go out on the same stream (same SSRC, sequence numbers and
//! timestamps) with the audio paused meanwhile, as a phone does.
//! [`Phone::mute`] turns that off for tests of a silent peer.
//!
//! The test thread drives it: [`Phone::register`] (digest, from the phone's
//! own socket so the server calls it there), [`Phone::call`] (an INVITE with
//! an SDP offer, digest when asked, the ACK), then on the [`Call`] SIP INFO
//! or RFC 4733 key presses, BYE, and waiting for the server's BYE.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};

use crate::ivm::Law;
use crate::ports::free_port;
use crate::rtp::{RtpSink, build_packet};
use crate::sip::{DigestCredentials, Request, canonical_header_name, digest_params, unique};

/// The realm/domain of the test servers (`BASE_CONFIG`).
pub const DOMAIN: &str = "ivm.local";

/// One SIP message the phone received.
#[derive(Clone, Debug)]
pub struct SipMsg {
    /// The request or status line.
    pub start: String,
    /// Headers in order (folded lines joined).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub source: SocketAddr,
    pub arrival: Instant,
    pub wall: SystemTime,
    raw: Vec<u8>,
}

impl SipMsg {
    /// Parses one datagram; `None` if it is not a SIP message.
    pub fn parse(data: &[u8], source: SocketAddr) -> Option<SipMsg> {
        let split = data.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(i) => (&data[..i], &data[i + 4..]),
            None => (data, &b""[..]),
        };
        let head = String::from_utf8_lossy(head);
        let mut lines: Vec<String> = Vec::new();
        for line in head.split("\r\n") {
            if (line.starts_with(' ') || line.starts_with('\t')) && lines.len() > 1 {
                if let Some(last) = lines.last_mut() {
                    last.push(' ');
                    last.push_str(line.trim());
                }
            } else {
                lines.push(line.to_string());
            }
        }
        let start = lines.first()?.trim().to_string();
        if !start.starts_with("SIP/2.0 ") && !start.ends_with(" SIP/2.0") {
            return None;
        }
        let headers = lines[1..]
            .iter()
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(SipMsg {
            start,
            headers,
            body: body.to_vec(),
            source,
            arrival: Instant::now(),
            wall: SystemTime::now(),
            raw: data.to_vec(),
        })
    }

    pub fn is_request(&self) -> bool {
        !self.start.starts_with("SIP/2.0 ")
    }

    /// The request's method, or for a response the method of its CSeq.
    pub fn method(&self) -> String {
        if self.is_request() {
            self.start.split(' ').next().unwrap_or_default().to_string()
        } else {
            self.cseq().1
        }
    }

    /// The request's Request-URI.
    pub fn request_uri(&self) -> Option<String> {
        self.is_request()
            .then(|| self.start.split(' ').nth(1).unwrap_or_default().to_string())
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if self.is_request() {
            return None;
        }
        self.start.split(' ').nth(1).and_then(|s| s.parse().ok())
    }

    /// The first header `name` (compact forms match).
    pub fn header(&self, name: &str) -> Option<&str> {
        let want = canonical_header_name(name);
        self.headers
            .iter()
            .find(|(n, _)| canonical_header_name(n) == want)
            .map(|(_, v)| v.as_str())
    }

    /// Every header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let want = canonical_header_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| canonical_header_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn call_id(&self) -> String {
        self.header("Call-ID").unwrap_or_default().to_string()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> (u32, String) {
        let v = self.header("CSeq").unwrap_or_default();
        let mut it = v.split_whitespace();
        let n = it.next().and_then(|n| n.parse().ok()).unwrap_or(0);
        (n, it.next().unwrap_or_default().to_string())
    }

    /// The `tag` parameter of the From or To header.
    pub fn tag(&self, header: &str) -> Option<String> {
        tag_of(self.header(header)?)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The whole message as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// The `tag` parameter of a From/To value.
pub fn tag_of(value: &str) -> Option<String> {
    let after = match value.rfind('>') {
        Some(i) => &value[i..],
        None => value,
    };
    after
        .split(';')
        .skip(1)
        .filter_map(|p| p.split_once('='))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("tag"))
        .map(|(_, v)| v.trim().to_string())
}

/// The URI inside `<>` of a name-addr (or the value up to `;`).
pub fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if b > a => value[a + 1..b].to_string(),
        _ => value.split(';').next().unwrap_or_default().trim().to_string(),
    }
}

/// The display name of a name-addr (quotes removed), if any.
pub fn display_name_of(value: &str) -> Option<String> {
    let before = &value[..value.find('<')?];
    let d = before.trim().trim_matches('"').trim();
    (!d.is_empty()).then(|| d.to_string())
}

/// The user part of a `sip:user@host` URI.
pub fn user_of(uri: &str) -> Option<String> {
    let rest = uri.strip_prefix("sip:").or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    Some(user.to_string())
}

/// The audio media of an SDP body: where to send RTP, the first payload
/// type of the m= line and the telephone-event payload type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SdpMedia {
    pub rtp: SocketAddr,
    pub pt: u8,
    pub telephone_event: Option<u8>,
}

/// Reads `c=` / `m=audio` / `a=rtpmap:N telephone-event` of an SDP body.
pub fn parse_sdp(body: &str) -> Option<SdpMedia> {
    let mut ip = None;
    let mut port = None;
    let mut pts: Vec<u8> = Vec::new();
    let mut te = None;
    for line in body.lines().map(str::trim) {
        if let Some(c) = line.strip_prefix("c=IN IP4 ") {
            ip = c.trim().parse::<Ipv4Addr>().ok();
        } else if let Some(m) = line.strip_prefix("m=audio ") {
            let mut it = m.split_whitespace();
            port = it.next().and_then(|p| p.parse::<u16>().ok());
            pts = it.skip(1).filter_map(|p| p.parse().ok()).collect();
        } else if let Some(a) = line.strip_prefix("a=rtpmap:") {
            let (pt, enc) = a.split_once(' ')?;
            if enc.to_ascii_lowercase().starts_with("telephone-event/") {
                te = pt.parse().ok();
            }
        }
    }
    let pt = pts.into_iter().find(|p| Some(*p) != te)?;
    Some(SdpMedia {
        rtp: SocketAddr::from((ip?, port?)),
        pt,
        telephone_event: te,
    })
}

/// An SDP offer/answer with one audio codec and telephone-event 101.
pub fn sdp(rtp_port: u16, law: Law) -> String {
    let pt = law.payload_type();
    format!(
        "v=0\r\no=- {n} 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {rtp_port} RTP/AVP {pt} 101\r\n\
         a=rtpmap:{pt} {}/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n",
        law.name(),
        n = std::process::id()
    )
}

/// How the phone answers the next INVITE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// 180, then 200 with an SDP answer pointing at the phone's sink.
    Pickup,
    /// 180, and nothing more until CANCEL (200, then 487).
    Ring,
    /// 486 Busy Here.
    Busy,
}

struct UasCall {
    invite: SipMsg,
    to_tag: String,
    last_response: Vec<u8>,
    answered: bool,
}

/// The RTP a call sends: where, in which codec, and where its sequence and
/// timestamp stand.
struct Talk {
    dest: SocketAddr,
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    started: bool,
    /// Key presses are being sent on this stream: no audio meanwhile.
    paused: bool,
}

impl Talk {
    fn new(dest: SocketAddr, pt: u8) -> Talk {
        let n = unique("ssrc")
            .bytes()
            .fold(0x811C_9DC5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
        Talk {
            dest,
            pt,
            ssrc: n,
            seq: (n >> 16) as u16,
            ts: n.rotate_left(7),
            started: false,
            paused: false,
        }
    }

    /// One 20 ms silence packet, advancing the stream.
    fn silence(&mut self) -> Vec<u8> {
        let fill = if self.pt == Law::Pcma.payload_type() {
            0xD5
        } else {
            0xFF
        };
        let packet = build_packet(self.pt, !self.started, self.seq, self.ts, self.ssrc, &[fill; 160]);
        self.started = true;
        self.seq = self.seq.wrapping_add(1);
        self.ts = self.ts.wrapping_add(160);
        packet
    }
}

struct Shared {
    received: Mutex<Vec<SipMsg>>,
    /// Calls in progress that send RTP, by Call-ID.
    talks: Mutex<HashMap<String, Talk>>,
    /// Record-Route values the INVITEs we send carry, as a proxy in front would add them.
    record_route: Mutex<Vec<String>>,
    /// Request-URIs this phone no longer answers to: INVITEs for them get `404` (the contact
    /// of an earlier run of the phone).
    gone_contacts: Mutex<Vec<String>>,
    /// The status NOTIFYs are answered with (200 unless told otherwise).
    notify_status: std::sync::atomic::AtomicU16,
    muted: AtomicBool,
    arrived: Condvar,
    plan: Mutex<VecDeque<Answer>>,
    default_answer: Mutex<Answer>,
    uas: Mutex<HashMap<String, UasCall>>,
    /// ACKs we sent for 2xx responses, by Call-ID, re-sent if the 2xx is.
    acks: Mutex<HashMap<String, Vec<u8>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A SIP phone on its own UDP port with an RTP ear.
pub struct Phone {
    socket: UdpSocket,
    pub addr: SocketAddr,
    pub server: SocketAddr,
    pub sink: Arc<RtpSink>,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    talker: Option<JoinHandle<()>>,
    register_call_id: String,
    register_cseq: AtomicU32,
}

/// A response to `req` with the given status (copies Via, From, To — with
/// `to_tag` added when To has none — Call-ID and CSeq).
pub fn response_to(
    req: &SipMsg,
    status: u16,
    reason: &str,
    to_tag: &str,
    extra: &[(&str, String)],
    body: &str,
) -> Vec<u8> {
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for v in req.headers_named("Via") {
        let _ = write!(s, "Via: {v}\r\n");
    }
    let _ = write!(s, "From: {}\r\n", req.header("From").unwrap_or_default());
    let to = req.header("To").unwrap_or_default();
    if tag_of(to).is_some() || to_tag.is_empty() {
        let _ = write!(s, "To: {to}\r\n");
    } else {
        let _ = write!(s, "To: {to};tag={to_tag}\r\n");
    }
    let _ = write!(s, "Call-ID: {}\r\n", req.call_id());
    let _ = write!(s, "CSeq: {}\r\n", req.header("CSeq").unwrap_or_default());
    for (n, v) in extra {
        let _ = write!(s, "{n}: {v}\r\n");
    }
    let _ = write!(s, "Content-Length: {}\r\n\r\n{body}", body.len());
    s.into_bytes()
}

impl Phone {
    /// A phone on `ip` (127.0.0.x) at a free port, talking to `server`.
    /// INVITEs are picked up unless [`Phone::answer_with`] / [`Phone::plan`]
    /// say otherwise.
    pub fn new(ip: &str, server: SocketAddr) -> anyhow::Result<Phone> {
        let ip: Ipv4Addr = ip.parse().context("phone IP")?;
        let mut socket = None;
        for _ in 0..20 {
            if let Ok(s) = UdpSocket::bind((ip, free_port())) {
                socket = Some(s);
                break;
            }
        }
        let socket = socket.with_context(|| format!("no free UDP port on {ip} for the phone"))?;
        socket.set_read_timeout(Some(Duration::from_millis(50)))?;
        let addr = socket.local_addr()?;
        let sink = Arc::new(RtpSink::bind()?);
        let shared = Arc::new(Shared {
            received: Mutex::new(Vec::new()),
            talks: Mutex::new(HashMap::new()),
            record_route: Mutex::new(Vec::new()),
            notify_status: std::sync::atomic::AtomicU16::new(200),
            gone_contacts: Mutex::new(Vec::new()),
            muted: AtomicBool::new(false),
            arrived: Condvar::new(),
            plan: Mutex::new(VecDeque::new()),
            default_answer: Mutex::new(Answer::Pickup),
            uas: Mutex::new(HashMap::new()),
            acks: Mutex::new(HashMap::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, shared, stop, rtp_port) = (socket.try_clone()?, shared.clone(), stop.clone(), sink.port());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    let Some(msg) = SipMsg::parse(&buf[..n], from) else {
                        continue;
                    };
                    if msg.is_request() {
                        answer_request(&socket, &shared, &msg, rtp_port, addr);
                    } else if msg.status().is_some_and(|s| (200..300).contains(&s))
                        && msg.method() == "INVITE"
                        && let Some(ack) = lock(&shared.acks).get(&msg.call_id())
                    {
                        let _ = socket.send_to(ack, from);
                    }
                    lock(&shared.received).push(msg);
                    shared.arrived.notify_all();
                }
            })
        };
        let talker = {
            let (sink, shared, stop) = (sink.clone(), shared.clone(), stop.clone());
            std::thread::spawn(move || talk(&sink, &shared, &stop))
        };
        Ok(Phone {
            socket,
            addr,
            server,
            sink,
            shared,
            stop,
            thread: Some(thread),
            talker: Some(talker),
            register_call_id: unique("reg-"),
            register_cseq: AtomicU32::new(0),
        })
    }

    /// Stops (or restarts) sending RTP on every call: a peer that sends no media.
    pub fn mute(&self, muted: bool) {
        self.shared.muted.store(muted, Ordering::Relaxed);
    }

    /// Sends the INVITEs it places with these Record-Route values, as a record-routing proxy
    /// in front of the phone would (RFC 3261 §16.6 step 4).
    pub fn record_route(&self, values: &[String]) {
        *lock(&self.shared.record_route) = values.to_vec();
    }

    /// Sends a re-INVITE in a call the phone answered (`call_id`), offering its media in
    /// `direction` (`sendonly` holds, `sendrecv` resumes), and ACKs a 2xx; returns the final
    /// response.
    pub fn reinvite_answered(&self, call_id: &str, direction: &str) -> anyhow::Result<SipMsg> {
        let (invite, to_tag) = {
            let uas = lock(&self.shared.uas);
            let call = uas
                .get(call_id)
                .with_context(|| format!("no answered call {call_id}"))?;
            (call.invite.clone(), call.to_tag.clone())
        };
        let target = invite
            .header("Contact")
            .map(uri_of)
            .context("the INVITE had no Contact")?;
        let from = format!("{};tag={to_tag}", invite.header("To").unwrap_or_default());
        let to = invite.header("From").unwrap_or_default().to_string();
        let cseq = self.register_cseq.fetch_add(1, Ordering::Relaxed) + 100;
        let law = offered_law(&invite);
        let body = sdp(self.sink.port(), law).replace("a=sendrecv", &format!("a={direction}"));
        let req = format!(
            "INVITE {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} INVITE\r\nContact: <sip:phone@{}>\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.via(),
            self.addr,
            body.len()
        );
        self.send(req.as_bytes())?;
        let resp = self.final_response(call_id, cseq, Duration::from_secs(5))?;
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            let ack = format!(
                "ACK {target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
                self.via(),
                resp.header("To").unwrap_or_default()
            );
            self.send(ack.as_bytes())?;
        }
        Ok(resp)
    }

    /// Answers INVITEs to `uri` with `404` from now on, as a phone that restarted and no
    /// longer knows the Contact it had registered before.
    pub fn forget_contact(&self, uri: &str) {
        lock(&self.shared.gone_contacts).push(uri.to_owned());
    }

    /// Answers NOTIFYs with `status` from now on (e.g. 481, as a phone that rebooted and
    /// forgot its subscription does).
    pub fn answer_notify_with(&self, status: u16) {
        self.shared.notify_status.store(status, Ordering::Relaxed);
    }

    /// How INVITEs are answered once the plan is used up.
    pub fn answer_with(&self, a: Answer) {
        *lock(&self.shared.default_answer) = a;
    }

    /// How the next INVITEs are answered, in order.
    pub fn plan(&self, answers: &[Answer]) {
        lock(&self.shared.plan).extend(answers.iter().copied());
    }

    pub fn send(&self, bytes: &[u8]) -> anyhow::Result<()> {
        self.socket.send_to(bytes, self.server).context("phone: send")?;
        Ok(())
    }

    /// Everything received so far, in arrival order.
    pub fn received(&self) -> Vec<SipMsg> {
        lock(&self.shared.received).clone()
    }

    /// How many messages were received so far (a mark for
    /// [`Phone::wait_for_after`]).
    pub fn mark(&self) -> usize {
        lock(&self.shared.received).len()
    }

    /// Received requests with `method`.
    pub fn requests(&self, method: &str) -> Vec<SipMsg> {
        self.received()
            .into_iter()
            .filter(|m| m.is_request() && m.method() == method)
            .collect()
    }

    /// The first received message (from index `mark` on) for which `pred`
    /// holds, waiting up to `limit`. `pred` runs under the phone's lock: it
    /// must not call the phone (poll with [`crate::wait_for`] for that).
    pub fn wait_for_after(
        &self,
        mark: usize,
        limit: Duration,
        what: &str,
        pred: impl Fn(&SipMsg) -> bool,
    ) -> anyhow::Result<SipMsg> {
        let deadline = Instant::now() + limit;
        let mut got = lock(&self.shared.received);
        loop {
            if let Some(m) = got.iter().skip(mark).find(|m| pred(m)) {
                return Ok(m.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = got.iter().map(|m| format!("{} ({})", m.start, m.call_id())).collect();
                bail!(
                    "phone {}: no {what} within {limit:?}; it received:\n  {}",
                    self.addr,
                    seen.join("\n  ")
                );
            }
            got = self
                .shared
                .arrived
                .wait_timeout(got, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// [`Phone::wait_for_after`] over everything received.
    pub fn wait_for(&self, limit: Duration, what: &str, pred: impl Fn(&SipMsg) -> bool) -> anyhow::Result<SipMsg> {
        self.wait_for_after(0, limit, what, pred)
    }

    /// The final response to (Call-ID, CSeq number).
    fn final_response(&self, call_id: &str, cseq: u32, limit: Duration) -> anyhow::Result<SipMsg> {
        self.wait_for(limit, &format!("final response to CSeq {cseq} of {call_id}"), |m| {
            m.status().is_some_and(|s| s >= 200) && m.call_id() == call_id && m.cseq().0 == cseq
        })
    }

    fn via(&self) -> String {
        format!("SIP/2.0/UDP {};rport;branch={}", self.addr, unique("z9hG4bK-ph-"))
    }

    /// REGISTERs `sip:NUMBER@ivm.local` with Contact `sip:NUMBER@<phone>`
    /// from the phone's socket (the server calls it there), answering the
    /// digest challenge; returns the final response.
    pub fn register(&self, number: &str, password: &str, expires: u32) -> anyhow::Result<SipMsg> {
        let contact = format!("sip:{number}@{}", self.addr);
        self.register_contact(number, password, expires, &contact, &self.register_call_id.clone())
    }

    /// Like [`Phone::register`] with another Contact and Call-ID: what the phone sends after a
    /// restart (a new process registers a new Contact from the same address).
    pub fn register_contact(
        &self,
        number: &str,
        password: &str,
        expires: u32,
        contact: &str,
        call_id: &str,
    ) -> anyhow::Result<SipMsg> {
        let mut req = Request::register(number, contact, Some(expires), self.server, self.addr);
        req.set("Call-ID", call_id);
        req.set("From", &format!("<sip:{number}@{DOMAIN}>;tag={}", unique("tag")));
        let mut cseq = self.register_cseq.fetch_add(1, Ordering::Relaxed) * 2 + 1;
        req.next_transaction(cseq);
        self.send(&req.to_bytes())?;
        let first = self.final_response(call_id, cseq, Duration::from_secs(5))?;
        if first.status() != Some(401) {
            return Ok(first);
        }
        let challenge = md5_challenge(&first)?;
        cseq += 1;
        req.next_transaction(cseq);
        let auth = DigestCredentials::new(number, password).authorization(
            &challenge,
            "REGISTER",
            &req.uri.clone(),
            &unique("cn"),
            1,
        )?;
        req.set("Authorization", &auth);
        self.send(&req.to_bytes())?;
        self.final_response(call_id, cseq, Duration::from_secs(5))
    }

    /// Calls `dialed` at the server as `from_user` (digest with `creds` if
    /// challenged), offering `law` + telephone-event 101 with the sink as
    /// the RTP address; ACKs the 200 and returns the call. An error if the
    /// call is not answered 200 within `limit`.
    pub fn call(
        &self,
        dialed: &str,
        from_user: &str,
        creds: Option<&DigestCredentials>,
        law: Law,
        limit: Duration,
    ) -> anyhow::Result<Call<'_>> {
        match self.try_call(dialed, from_user, creds, law, limit)? {
            Dialed::Answered(call) => Ok(call),
            Dialed::Refused(resp) => bail!(
                "INVITE {dialed} from {from_user} was answered {}:\n{}",
                resp.start,
                resp.text()
            ),
        }
    }

    /// Like [`Phone::call`], but a final response other than 2xx (ACKed) is
    /// returned as [`Dialed::Refused`].
    pub fn try_call(
        &self,
        dialed: &str,
        from_user: &str,
        creds: Option<&DigestCredentials>,
        law: Law,
        limit: Duration,
    ) -> anyhow::Result<Dialed<'_>> {
        let uri = format!("sip:{dialed}@{}", self.server);
        let call_id = unique("ph-call-");
        let from = format!("<sip:{from_user}@{DOMAIN}>;tag={}", unique("ph"));
        let to = format!("<sip:{dialed}@{DOMAIN}>");
        let body = sdp(self.sink.port(), law);
        let record_route = lock(&self.shared.record_route).clone();
        let invite = |cseq: u32, auth: Option<&str>| {
            let mut s = format!(
                "INVITE {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} INVITE\r\nContact: <sip:{from_user}@{}>\r\nContent-Type: application/sdp\r\n",
                self.via(),
                self.addr
            );
            if let Some(a) = auth {
                let _ = write!(s, "Authorization: {a}\r\n");
            }
            for rr in &record_route {
                let _ = write!(s, "Record-Route: {rr}\r\n");
            }
            let _ = write!(s, "Content-Length: {}\r\n\r\n{body}", body.len());
            s
        };
        // RFC 3261 §17.1.1.3: the ACK of a non-2xx final response.
        let ack_failure = |sent: &str, resp: &SipMsg, cseq: u32| {
            let via = sent
                .lines()
                .find_map(|l| l.strip_prefix("Via: "))
                .unwrap_or_default()
                .to_string();
            self.send(
                format!(
                    "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\nCall-ID: {call_id}\r\n\
                     CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
                    resp.header("To").unwrap_or_default()
                )
                .as_bytes(),
            )
        };
        let mut sent = invite(1, None);
        self.send(sent.as_bytes())?;
        let mut resp = self.final_response(&call_id, 1, limit)?;
        let mut cseq = 1;
        if resp.status() == Some(401)
            && let Some(creds) = creds
        {
            ack_failure(&sent, &resp, cseq)?;
            let challenge = md5_challenge(&resp)?;
            let auth = creds.authorization(&challenge, "INVITE", &uri, &unique("cn"), 1)?;
            cseq = 2;
            sent = invite(cseq, Some(&auth));
            self.send(sent.as_bytes())?;
            resp = self.final_response(&call_id, cseq, limit)?;
        }
        if !resp.status().is_some_and(|s| (200..300).contains(&s)) {
            ack_failure(&sent, &resp, cseq)?;
            return Ok(Dialed::Refused(resp));
        }
        let to_hdr = resp.header("To").unwrap_or_default().to_string();
        let remote_target = resp.header("Contact").map(uri_of).unwrap_or_else(|| uri.clone());
        let ack = format!(
            "ACK {remote_target} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to_hdr}\r\nCall-ID: {call_id}\r\n\
             CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
            self.via()
        );
        self.send(ack.as_bytes())?;
        lock(&self.shared.acks).insert(call_id.clone(), ack.into_bytes());
        let media = parse_sdp(&resp.body_text());
        if let Some(m) = media {
            lock(&self.shared.talks).insert(call_id.clone(), Talk::new(m.rtp, m.pt));
        }
        Ok(Dialed::Answered(Call {
            phone: self,
            call_id,
            from,
            to: to_hdr,
            remote_target,
            cseq: cseq + 1,
            ok: resp,
            media,
            dtmf_seq: 1000,
            dtmf_ts: 80_000,
        }))
    }

    /// SUBSCRIBEs to `number`'s `message-summary` (RFC 3842) from the
    /// phone's socket with `Expires: expires`, answering the digest
    /// challenge; returns the final response. The server's NOTIFYs arrive
    /// at the phone (answered 200) and are in [`Phone::requests`].
    pub fn subscribe_mwi(&self, number: &str, password: &str, expires: u32) -> anyhow::Result<SipMsg> {
        let uri = format!("sip:{number}@{}", self.server);
        let call_id = unique("ph-sub-");
        let from = format!("<sip:{number}@{DOMAIN}>;tag={}", unique("ph"));
        let request = |cseq: u32, auth: Option<&str>| {
            let mut s = format!(
                "SUBSCRIBE {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{number}@{DOMAIN}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\nContact: <sip:{number}@{}>\r\nEvent: message-summary\r\n\
                 Accept: application/simple-message-summary\r\nExpires: {expires}\r\n",
                self.via(),
                self.addr
            );
            if let Some(a) = auth {
                let _ = write!(s, "Authorization: {a}\r\n");
            }
            s.push_str("Content-Length: 0\r\n\r\n");
            s
        };
        self.with_digest((number, password), "SUBSCRIBE", &uri, &call_id, request)
    }

    /// Sends `request(1, None)`; on a 401 answers the MD5 challenge with `creds` and sends
    /// `request(2, Some(authorization))`. The final response.
    fn with_digest(
        &self,
        creds: (&str, &str),
        method: &str,
        uri: &str,
        call_id: &str,
        request: impl Fn(u32, Option<&str>) -> String,
    ) -> anyhow::Result<SipMsg> {
        self.send(request(1, None).as_bytes())?;
        let first = self.final_response(call_id, 1, Duration::from_secs(5))?;
        if first.status() != Some(401) {
            return Ok(first);
        }
        let challenge = md5_challenge(&first)?;
        let auth = DigestCredentials::new(creds.0, creds.1).authorization(&challenge, method, uri, &unique("cn"), 1)?;
        self.send(request(2, Some(&auth)).as_bytes())?;
        self.final_response(call_id, 2, Duration::from_secs(5))
    }

    /// PUBLISHes presence (RFC 3903) for `number`: `pidf` as the body (`None` for a refresh or,
    /// with `expires` 0, a removal), `if_match` the entity tag of the publication it changes;
    /// answers the digest challenge; returns the final response.
    pub fn publish(
        &self,
        number: &str,
        password: &str,
        pidf: Option<&str>,
        if_match: Option<&str>,
        expires: u32,
    ) -> anyhow::Result<SipMsg> {
        let uri = format!("sip:{number}@{}", self.server);
        let call_id = unique("ph-pub-");
        let from = format!("<sip:{number}@{DOMAIN}>;tag={}", unique("ph"));
        let body = pidf.unwrap_or_default();
        let request = |cseq: u32, auth: Option<&str>| {
            let mut s = format!(
                "PUBLISH {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: <sip:{number}@{DOMAIN}>\r\n\
                 Call-ID: {call_id}\r\nCSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n",
                self.via(),
            );
            if let Some(tag) = if_match {
                let _ = write!(s, "SIP-If-Match: {tag}\r\n");
            }
            if let Some(a) = auth {
                let _ = write!(s, "Authorization: {a}\r\n");
            }
            if !body.is_empty() {
                s.push_str("Content-Type: application/pidf+xml\r\n");
            }
            let _ = write!(s, "Content-Length: {}\r\n\r\n{body}", body.len());
            s
        };
        self.with_digest((number, password), "PUBLISH", &uri, &call_id, request)
    }
}

/// A PIDF document (RFC 3863) for `number`: `basic` open or closed, and RPID activities
/// (`busy`, `on-the-phone`, …) and a note when given.
pub fn pidf(number: &str, basic: &str, activity: Option<&str>, note: Option<&str>) -> String {
    let activity = activity
        .map(|a| format!("<rpid:activities><rpid:{a}/></rpid:activities>"))
        .unwrap_or_default();
    let note = note.map(|n| format!("<dm:note>{n}</dm:note>")).unwrap_or_default();
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
         xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" \
         entity=\"sip:{number}@{DOMAIN}\"><tuple id=\"t1\"><status><basic>{basic}</basic></status></tuple>\
         <dm:person id=\"p1\">{activity}{note}</dm:person></presence>"
    )
}

/// What became of an INVITE the phone sent.
pub enum Dialed<'a> {
    Answered(Call<'a>),
    /// The final non-2xx response (already ACKed).
    Refused(SipMsg),
}

/// The `Voice-Message` value (`new/old`) of an MWI NOTIFY body.
pub fn voice_message(notify: &SipMsg) -> Option<String> {
    notify
        .body_text()
        .lines()
        .find_map(|l| l.strip_prefix("Voice-Message:"))
        .map(|v| v.trim().to_string())
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Some(t) = self.talker.take() {
            let _ = t.join();
        }
    }
}

/// The talker thread: every 20 ms, one silence packet on each call in progress.
fn talk(sink: &RtpSink, shared: &Shared, stop: &AtomicBool) {
    let period = Duration::from_millis(20);
    let mut due = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        due += period;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        } else {
            due = now; // late (a loaded machine): no burst to make up
        }
        if shared.muted.load(Ordering::Relaxed) {
            continue;
        }
        let mut talks = lock(&shared.talks);
        for t in talks.values_mut().filter(|t| !t.paused) {
            let packet = t.silence();
            let _ = sink.send_to(&packet, t.dest);
        }
    }
}

/// Answers one request the way a phone would (runs on the phone's thread).
fn answer_request(socket: &UdpSocket, shared: &Shared, req: &SipMsg, rtp_port: u16, local: SocketAddr) {
    let send = |bytes: &[u8]| {
        let _ = socket.send_to(bytes, req.source);
    };
    let contact = ("Contact", format!("<sip:phone@{local}>"));
    match req.method().as_str() {
        "INVITE" => {
            let mut uas = lock(&shared.uas);
            if let Some(call) = uas.get(&req.call_id()) {
                if call.invite.cseq() == req.cseq() {
                    send(&call.last_response); // a retransmission
                } else {
                    // re-INVITE: keep the media as it is
                    let law = offered_law(req);
                    send(&response_to(
                        req,
                        200,
                        "OK",
                        &call.to_tag.clone(),
                        &[contact, ct_sdp()],
                        &sdp(rtp_port, law),
                    ));
                }
                return;
            }
            if lock(&shared.gone_contacts)
                .iter()
                .any(|u| Some(u.as_str()) == req.request_uri().as_deref())
            {
                let tag = unique("phtag");
                let not_found = response_to(req, 404, "Not Found", &tag, &[], "");
                send(&not_found);
                uas.insert(
                    req.call_id(),
                    UasCall {
                        invite: req.clone(),
                        to_tag: tag,
                        last_response: not_found,
                        answered: false,
                    },
                );
                return;
            }
            let answer = lock(&shared.plan).pop_front().unwrap_or(*lock(&shared.default_answer));
            let tag = unique("phtag");
            let ringing = response_to(req, 180, "Ringing", &tag, std::slice::from_ref(&contact), "");
            let (last, answered) = match answer {
                Answer::Pickup => {
                    send(&ringing);
                    let law = offered_law(req);
                    if let Some(offer) = parse_sdp(&req.body_text()) {
                        lock(&shared.talks).insert(req.call_id(), Talk::new(offer.rtp, law.payload_type()));
                    }
                    (
                        response_to(req, 200, "OK", &tag, &[contact, ct_sdp()], &sdp(rtp_port, law)),
                        true,
                    )
                }
                Answer::Ring => (ringing, false),
                Answer::Busy => (response_to(req, 486, "Busy Here", &tag, &[], ""), false),
            };
            send(&last);
            uas.insert(
                req.call_id(),
                UasCall {
                    invite: req.clone(),
                    to_tag: tag,
                    last_response: last,
                    answered,
                },
            );
        }
        "ACK" => {}
        "CANCEL" => {
            lock(&shared.talks).remove(&req.call_id());
            let mut uas = lock(&shared.uas);
            match uas.get_mut(&req.call_id()) {
                Some(call) => {
                    send(&response_to(req, 200, "OK", &call.to_tag, &[], ""));
                    if !call.answered {
                        let terminated = response_to(&call.invite, 487, "Request Terminated", &call.to_tag, &[], "");
                        send(&terminated);
                        call.last_response = terminated;
                        call.answered = true;
                    }
                }
                None => send(&response_to(req, 481, "Call/Transaction Does Not Exist", "", &[], "")),
            }
        }
        method => {
            if method == "BYE" {
                lock(&shared.talks).remove(&req.call_id());
            }
            let tag = lock(&shared.uas)
                .get(&req.call_id())
                .map(|c| c.to_tag.clone())
                .unwrap_or_else(|| unique("phtag"));
            let status = match method {
                "NOTIFY" => shared.notify_status.load(Ordering::Relaxed),
                _ => 200,
            };
            let reason = if status == 200 { "OK" } else { "Refused" };
            send(&response_to(req, status, reason, &tag, &[], ""));
        }
    }
}

fn ct_sdp() -> (&'static str, String) {
    ("Content-Type", "application/sdp".to_string())
}

/// PCMA if the offer's first codec is PCMA, else PCMU.
fn offered_law(req: &SipMsg) -> Law {
    match parse_sdp(&req.body_text()) {
        Some(m) if m.pt == 8 => Law::Pcma,
        _ => Law::Pcmu,
    }
}

/// An answered call the phone placed.
pub struct Call<'a> {
    phone: &'a Phone,
    pub call_id: String,
    from: String,
    to: String,
    remote_target: String,
    cseq: u32,
    /// The server's 200 OK.
    pub ok: SipMsg,
    /// The server's RTP address and payload types from the 200's SDP.
    pub media: Option<SdpMedia>,
    dtmf_seq: u16,
    dtmf_ts: u32,
}

impl Call<'_> {
    fn request(&mut self, method: &str, extra: &[(&str, &str)], body: &str) -> (u32, String) {
        let cseq = self.cseq;
        self.cseq += 1;
        let mut s = format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.remote_target,
            self.phone.via(),
            self.from,
            self.to,
            self.call_id
        );
        for (n, v) in extra {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n{body}", body.len());
        (cseq, s)
    }

    /// Presses `digit` as SIP INFO (`application/dtmf-relay`); returns the
    /// final response.
    pub fn info(&mut self, digit: char) -> anyhow::Result<SipMsg> {
        let body = format!("Signal={digit}\r\nDuration=160\r\n");
        let (cseq, req) = self.request("INFO", &[("Content-Type", "application/dtmf-relay")], &body);
        self.phone.send(req.as_bytes())?;
        self.phone.final_response(&self.call_id, cseq, Duration::from_secs(5))
    }

    /// Presses each of `digits` as SIP INFO, one after the other.
    pub fn info_digits(&mut self, digits: &str) -> anyhow::Result<()> {
        for d in digits.chars() {
            let r = self.info(d)?;
            if r.status() != Some(200) {
                bail!("INFO {d} was answered {}", r.start);
            }
        }
        Ok(())
    }

    /// Presses each of `digits` as RFC 4733 telephone-events from the
    /// phone's RTP port (three updates, three end packets, 20 ms apart).
    pub fn rfc4733(&mut self, digits: &str) -> anyhow::Result<()> {
        let media = self.media.context("the 200 OK had no usable SDP")?;
        let pt = media
            .telephone_event
            .context("the server's SDP has no telephone-event")?;
        for d in digits.chars() {
            let event: u8 = match d {
                '0'..='9' => d as u8 - b'0',
                '*' => 10,
                '#' => 11,
                _ => bail!("no RFC 4733 event for {d:?}"),
            };
            // The event starts where the audio stream stands (RFC 4733 §2.5.1.2); the audio pauses.
            let (ssrc, start) = {
                let mut talks = lock(&self.phone.shared.talks);
                match talks.get_mut(&self.call_id) {
                    Some(t) => {
                        t.paused = true;
                        (t.ssrc, t.ts)
                    }
                    None => {
                        self.dtmf_ts = self.dtmf_ts.wrapping_add(8000);
                        (0x4D54_4D46, self.dtmf_ts)
                    }
                }
            };
            for i in 0..6u16 {
                let end = i >= 3;
                let duration = if end { 640 } else { (i + 1) * 160 };
                let [d0, d1] = duration.to_be_bytes();
                let payload = [event, if end { 0x80 | 10 } else { 10 }, d0, d1];
                let seq = {
                    let mut talks = lock(&self.phone.shared.talks);
                    match talks.get_mut(&self.call_id) {
                        Some(t) => {
                            let s = t.seq;
                            t.seq = t.seq.wrapping_add(1);
                            s
                        }
                        None => {
                            self.dtmf_seq = self.dtmf_seq.wrapping_add(1);
                            self.dtmf_seq
                        }
                    }
                };
                let packet = build_packet(pt, i == 0, seq, start, ssrc, &payload);
                self.phone.sink.send_to(&packet, media.rtp)?;
                std::thread::sleep(Duration::from_millis(20));
            }
            if let Some(t) = lock(&self.phone.shared.talks).get_mut(&self.call_id) {
                t.ts = start.wrapping_add(6 * 160);
                t.paused = false;
            }
            std::thread::sleep(Duration::from_millis(80));
        }
        Ok(())
    }

    /// Sends a re-INVITE offering our media in `direction` (`sendonly` holds the call,
    /// `sendrecv` resumes it, RFC 3264 §8.4) and ACKs a 2xx; returns the final response.
    pub fn reinvite(&mut self, direction: &str) -> anyhow::Result<SipMsg> {
        let law = match self.media.map(|m| m.pt) {
            Some(8) => Law::Pcma,
            _ => Law::Pcmu,
        };
        let body = sdp(self.phone.sink.port(), law).replace("a=sendrecv", &format!("a={direction}"));
        let contact = format!("<sip:phone@{}>", self.phone.addr);
        let headers = [("Contact", contact.as_str()), ("Content-Type", "application/sdp")];
        let (cseq, req) = self.request("INVITE", &headers, &body);
        self.phone.send(req.as_bytes())?;
        let resp = self.phone.final_response(&self.call_id, cseq, Duration::from_secs(5))?;
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            let ack = format!(
                "ACK {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\n\
                 CSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
                self.remote_target,
                self.phone.via(),
                self.from,
                self.to,
                self.call_id
            );
            self.phone.send(ack.as_bytes())?;
            lock(&self.phone.shared.acks).insert(self.call_id.clone(), ack.into_bytes());
        }
        Ok(resp)
    }

    /// Hangs up (BYE); returns the final response.
    pub fn bye(&mut self) -> anyhow::Result<SipMsg> {
        lock(&self.phone.shared.talks).remove(&self.call_id);
        let (cseq, req) = self.request("BYE", &[], "");
        self.phone.send(req.as_bytes())?;
        self.phone.final_response(&self.call_id, cseq, Duration::from_secs(5))
    }

    /// Waits for the server's BYE on this call.
    pub fn wait_bye(&self, limit: Duration) -> anyhow::Result<SipMsg> {
        let id = self.call_id.clone();
        self.phone.wait_for(limit, "BYE from the server", |m| {
            m.is_request() && m.method() == "BYE" && m.call_id() == id
        })
    }

    /// Whether the server has hung up.
    pub fn hung_up(&self) -> bool {
        self.phone
            .received()
            .iter()
            .any(|m| m.is_request() && m.method() == "BYE" && m.call_id() == self.call_id)
    }

    /// When the 200 OK arrived.
    pub fn answered_at(&self) -> Instant {
        self.ok.arrival
    }
}

/// The MD5 `WWW-Authenticate` challenge of a 401.
fn md5_challenge(resp: &SipMsg) -> anyhow::Result<String> {
    resp.headers_named("WWW-Authenticate")
        .into_iter()
        .find(|c| {
            digest_params(c)
                .map(|p| p.get("algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5")))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .with_context(|| format!("401 without an MD5 digest challenge:\n{}", resp.text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_requests_responses_and_name_addrs() {
        let from: SocketAddr = "127.0.0.1:5060".parse().expect("addr");
        let raw = b"NOTIFY sip:1001@127.0.0.1:4000 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n\
                    f: <sip:ivm@ivm.local>;tag=abc\r\nt: <sip:1001@ivm.local>;tag=def\r\ni: c1\r\nCSeq: 7 NOTIFY\r\n\
                    Content-Length: 24\r\n\r\nVoice-Message: 1/0\r\nX: y";
        let m = SipMsg::parse(raw, from).expect("parse");
        assert!(m.is_request());
        assert_eq!(m.method(), "NOTIFY");
        assert_eq!(m.request_uri().as_deref(), Some("sip:1001@127.0.0.1:4000"));
        assert_eq!(m.cseq(), (7, "NOTIFY".to_string()));
        assert_eq!(m.tag("From").as_deref(), Some("abc"));
        assert_eq!(voice_message(&m).as_deref(), Some("1/0"));
        let r = SipMsg::parse(b"SIP/2.0 200 OK\r\nCSeq: 2 INVITE\r\n\r\n", from).expect("parse");
        assert_eq!((r.status(), r.method().as_str()), (Some(200), "INVITE"));
        assert!(SipMsg::parse(b"\x80\x00garbage", from).is_none());
        let v = "\"IVM 7001\" <sip:980000011@ivm.local>;tag=x";
        assert_eq!(display_name_of(v).as_deref(), Some("IVM 7001"));
        assert_eq!(user_of(&uri_of(v)).as_deref(), Some("980000011"));
    }

    #[test]
    fn reads_the_media_of_an_sdp_answer() {
        let body = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                    m=audio 20002 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n";
        let m = parse_sdp(body).expect("sdp");
        assert_eq!(m.rtp, "127.0.0.1:20002".parse::<SocketAddr>().expect("addr"));
        assert_eq!((m.pt, m.telephone_event), (8, Some(101)));
        assert_eq!(parse_sdp(&sdp(4000, Law::Pcmu)).map(|m| m.pt), Some(0));
    }
}
