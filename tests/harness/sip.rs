//! Raw SIP for the tests: build requests, exchange them over UDP/TCP,
//! parse what comes back, compute Digest credentials.
//!
//! Deliberately small and independent of the server's own parser: it reads
//! responses the way a test needs to (status, reason, headers by name with
//! compact forms, body), nothing more.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use md5::{Digest, Md5};

/// A SIP response as received.
#[derive(Clone, Debug)]
pub struct SipResponse {
    /// The bytes exactly as received (one datagram, or one framed message).
    pub raw: Vec<u8>,
    pub status: u16,
    pub reason: String,
    /// Headers in order, names as sent; folded lines are unfolded.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Where it came from.
    pub source: Option<SocketAddr>,
}

/// Full name (lowercase) of a compact header name, or the name lowercased.
pub fn canonical_header_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let full = match lower.as_str() {
        "i" => "call-id",
        "m" => "contact",
        "e" => "content-encoding",
        "l" => "content-length",
        "c" => "content-type",
        "f" => "from",
        "s" => "subject",
        "k" => "supported",
        "t" => "to",
        "v" => "via",
        "o" => "event",
        "u" => "allow-events",
        "r" => "refer-to",
        "b" => "referred-by",
        "x" => "session-expires",
        "a" => "accept-contact",
        "j" => "reject-contact",
        "d" => "request-disposition",
        "y" => "identity",
        _ => return lower,
    };
    full.to_string()
}

impl SipResponse {
    /// Parses one response. Errors if it is not a `SIP/2.0 NNN ...` message.
    pub fn parse(raw: &[u8]) -> anyhow::Result<SipResponse> {
        let (head, body) = match find(raw, b"\r\n\r\n") {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => (raw, &b""[..]),
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
        let Some(status_line) = lines.first() else {
            bail!("empty message")
        };
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if version != "SIP/2.0" {
            bail!("not a SIP/2.0 response: {status_line:?}");
        }
        let status: u16 = parts
            .next()
            .unwrap_or_default()
            .parse()
            .with_context(|| format!("bad status code in {status_line:?}"))?;
        let reason = parts.next().unwrap_or_default().to_string();
        let mut headers = Vec::new();
        for line in &lines[1..] {
            if line.is_empty() {
                continue;
            }
            let Some((name, value)) = line.split_once(':') else {
                bail!("header line without ':' : {line:?}");
            };
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
        Ok(SipResponse {
            raw: raw.to_vec(),
            status,
            reason,
            headers,
            body: body.to_vec(),
            source: None,
        })
    }

    /// Values of every header called `name` (compact forms match too).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        let want = canonical_header_name(name);
        self.headers
            .iter()
            .filter(|(n, _)| canonical_header_name(n) == want)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }

    /// Every comma-separated element of every `name` header (Contact, Allow,
    /// Supported, ...). Commas inside `<...>` or quotes do not split.
    pub fn header_elements(&self, name: &str) -> Vec<String> {
        self.header_values(name).into_iter().flat_map(split_commas).collect()
    }

    /// Whether this is a final response (>= 200).
    pub fn is_final(&self) -> bool {
        self.status >= 200
    }

    /// The status line, for messages.
    pub fn status_line(&self) -> String {
        format!("SIP/2.0 {} {}", self.status, self.reason)
    }

    /// The message as text (lossy), for failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.raw).into_owned()
    }
}

/// Splits a header value at top-level commas.
pub fn split_commas(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_angle, mut in_quote, mut escaped) = (false, false, false);
    for c in value.chars() {
        if in_quote {
            cur.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' => in_angle = true,
            '>' => in_angle = false,
            ',' if !in_angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `;name=value` parameters of a header element (Via, Contact, ...), names
/// lowercased; parameters without a value map to "".
pub fn header_params(element: &str) -> HashMap<String, String> {
    // Skip a <...> URI so its own ;params are not taken as header params.
    let tail = match (element.find('<'), element.find('>')) {
        (Some(a), Some(b)) if b > a => &element[b + 1..],
        _ => element,
    };
    tail.split(';')
        .skip(1)
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (n.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()),
            None => (p.trim().to_ascii_lowercase(), String::new()),
        })
        .collect()
}

/// The URI inside `<...>` of a name-addr, or the element up to the first ';'.
pub fn element_uri(element: &str) -> String {
    match (element.find('<'), element.find('>')) {
        (Some(a), Some(b)) if b > a => element[a + 1..b].to_string(),
        _ => element.split(';').next().unwrap_or_default().trim().to_string(),
    }
}

/// Parameters of a `Digest ...` challenge or credentials header, names
/// lowercased, quotes removed.
pub fn digest_params(value: &str) -> anyhow::Result<HashMap<String, String>> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix("Digest").or_else(|| value.strip_prefix("digest")) else {
        bail!("not a Digest header: {value:?}");
    };
    let mut out = HashMap::new();
    for part in split_commas(rest) {
        if let Some((n, v)) = part.split_once('=') {
            out.insert(n.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string());
        }
    }
    Ok(out)
}

fn md5_hex(s: &str) -> String {
    let digest = Md5::digest(s.as_bytes());
    let mut out = String::with_capacity(32);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Digest credentials (RFC 2617/7616, MD5, qop=auth when offered).
#[derive(Clone, Debug)]
pub struct DigestCredentials {
    pub username: String,
    pub password: String,
}

impl DigestCredentials {
    pub fn new(username: &str, password: &str) -> Self {
        DigestCredentials {
            username: username.into(),
            password: password.into(),
        }
    }

    /// An `Authorization` header value answering `challenge` (the
    /// WWW-Authenticate value) for `method` and `uri`.
    pub fn authorization(
        &self,
        challenge: &str,
        method: &str,
        uri: &str,
        cnonce: &str,
        nc: u32,
    ) -> anyhow::Result<String> {
        let p = digest_params(challenge)?;
        let realm = p.get("realm").context("challenge without realm")?;
        let nonce = p.get("nonce").context("challenge without nonce")?;
        let algorithm = p.get("algorithm").map(String::as_str).unwrap_or("MD5");
        if !algorithm.eq_ignore_ascii_case("MD5") {
            bail!("harness only computes MD5 digests, challenge asks for {algorithm}");
        }
        let ha1 = md5_hex(&format!("{}:{}:{}", self.username, realm, self.password));
        let ha2 = md5_hex(&format!("{method}:{uri}"));
        let qop_auth = p
            .get("qop")
            .is_some_and(|q| q.split(',').any(|x| x.trim().eq_ignore_ascii_case("auth")));
        let mut h = format!(
            "Digest username=\"{}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5",
            self.username
        );
        if qop_auth {
            let nc = format!("{nc:08x}");
            let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
            let _ = write!(h, ", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
        } else {
            let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
            let _ = write!(h, ", response=\"{response}\"");
        }
        if let Some(opaque) = p.get("opaque") {
            let _ = write!(h, ", opaque=\"{opaque}\"");
        }
        Ok(h)
    }
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A process-unique token for branches, tags and Call-IDs.
pub fn unique(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

/// A SIP request under construction. `to_bytes()` adds Content-Length.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// A request with Via (`;rport`, fresh branch, sent-by = `local`),
    /// Max-Forwards, From (with tag), To, Call-ID and CSeq 1.
    pub fn new(method: &str, uri: &str, local: SocketAddr, transport: &str) -> Request {
        Request {
            method: method.into(),
            uri: uri.into(),
            headers: vec![
                (
                    "Via".into(),
                    format!("SIP/2.0/{transport} {local};rport;branch={}", unique("z9hG4bK-e2e-")),
                ),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), format!("<sip:e2e@{local}>;tag={}", unique("tag"))),
                ("To".into(), format!("<{uri}>")),
                ("Call-ID".into(), unique("call-")),
                ("CSeq".into(), format!("1 {method}")),
            ],
            body: Vec::new(),
        }
    }

    /// A REGISTER for `sip:NUMBER@ivm.local` binding `contact` (a URI,
    /// without <>), Request-URI `sip:<server>`.
    pub fn register(
        number: &str,
        contact: &str,
        expires: Option<u32>,
        server: SocketAddr,
        local: SocketAddr,
    ) -> Request {
        let mut r = Request::new("REGISTER", &format!("sip:{server}"), local, "UDP");
        let aor = format!("<sip:{number}@ivm.local>");
        r.set("From", &format!("{aor};tag={}", unique("tag")));
        r.set("To", &aor);
        r.set("Contact", &format!("<{contact}>"));
        if let Some(e) = expires {
            r.set("Expires", &e.to_string());
        }
        r
    }

    /// Replaces the first header `name` (or appends it).
    pub fn set(&mut self, name: &str, value: &str) -> &mut Self {
        match self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)) {
            Some(h) => h.1 = value.into(),
            None => self.headers.push((name.into(), value.into())),
        }
        self
    }

    /// Appends a header (repeats allowed).
    pub fn add(&mut self, name: &str, value: &str) -> &mut Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Removes every header called `name`.
    pub fn remove(&mut self, name: &str) -> &mut Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A new Via branch and the CSeq number `cseq` (a new transaction of
    /// the same dialog/registration).
    pub fn next_transaction(&mut self, cseq: u32) -> &mut Self {
        let via = self.header("Via").unwrap_or_default().to_string();
        let new_via = match via.find(";branch=") {
            Some(i) => {
                let rest = &via[i + 8..];
                let end = rest.find(';').map(|j| &rest[j..]).unwrap_or("");
                format!("{};branch={}{end}", &via[..i], unique("z9hG4bK-e2e-"))
            }
            None => format!("{via};branch={}", unique("z9hG4bK-e2e-")),
        };
        let method = self.method.clone();
        self.set("Via", &new_via);
        self.set("CSeq", &format!("{cseq} {method}"))
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = format!("{} {} SIP/2.0\r\n", self.method, self.uri);
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        let _ = write!(s, "Content-Length: {}\r\n\r\n", self.body.len());
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A UDP socket on 127.0.0.1 (or ::1 for a server on IPv6; its own port) to talk to the server.
pub struct UdpClient {
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
}

impl UdpClient {
    pub fn new(server: SocketAddr) -> anyhow::Result<UdpClient> {
        let local: SocketAddr = if server.is_ipv6() {
            SocketAddr::new(std::net::Ipv6Addr::LOCALHOST.into(), 0)
        } else {
            SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into()
        };
        let socket = UdpSocket::bind(local).context("bind UDP client")?;
        let local = socket.local_addr()?;
        Ok(UdpClient { socket, local, server })
    }

    pub fn send(&self, datagram: &[u8]) -> anyhow::Result<()> {
        self.socket
            .send_to(datagram, self.server)
            .context("send UDP datagram")?;
        Ok(())
    }

    /// Collects every response arriving within `wait` (datagrams that do
    /// not parse as responses are reported as errors).
    pub fn collect(&self, wait: Duration) -> anyhow::Result<Vec<SipResponse>> {
        self.collect_until(wait, None)
    }

    /// Collects responses until `wait` elapses or, when `linger` is given,
    /// until `linger` after the first final response (to catch duplicates
    /// without always waiting the full time).
    pub fn collect_until(&self, wait: Duration, linger: Option<Duration>) -> anyhow::Result<Vec<SipResponse>> {
        let mut deadline = Instant::now() + wait;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            self.socket.set_read_timeout(Some(deadline - now))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let mut r = SipResponse::parse(&buf[..n]).with_context(|| {
                        format!(
                            "unparsable datagram from {from}: {:?}",
                            String::from_utf8_lossy(&buf[..n])
                        )
                    })?;
                    r.source = Some(from);
                    if let Some(l) = linger.filter(|_| r.is_final()) {
                        deadline = deadline.min(Instant::now() + l);
                    }
                    out.push(r);
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("recv UDP"),
            }
        }
    }

    /// Sends `request` and returns the first final response (skipping 1xx),
    /// waiting at most `wait`.
    pub fn transact(&self, request: &Request, wait: Duration) -> anyhow::Result<SipResponse> {
        self.send(&request.to_bytes())?;
        self.final_response(wait)
            .with_context(|| format!("no final response to {} within {wait:?}", request.method))
    }

    /// The next final response, skipping provisional ones.
    pub fn final_response(&self, wait: Duration) -> anyhow::Result<SipResponse> {
        let deadline = Instant::now() + wait;
        let mut buf = vec![0u8; 65_536];
        loop {
            let now = Instant::now();
            if now >= deadline {
                bail!("timed out");
            }
            self.socket.set_read_timeout(Some(deadline - now))?;
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let mut r = SipResponse::parse(&buf[..n])?;
                    r.source = Some(from);
                    if r.is_final() {
                        return Ok(r);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e).context("recv UDP"),
            }
        }
    }

    /// An OPTIONS request to the server from this socket.
    pub fn options(&self) -> Request {
        Request::new("OPTIONS", &format!("sip:{}", self.server), self.local, "UDP")
    }

    /// A REGISTER from this socket (see [`Request::register`]).
    pub fn register_request(&self, number: &str, contact: &str, expires: Option<u32>) -> Request {
        Request::register(number, contact, expires, self.server, self.local)
    }

    /// Sends `request`; on a 401 answers the challenge (first MD5 one) with
    /// `creds` and returns the final response to that. Any other first
    /// final response is returned as it is. `request` is left as sent last.
    pub fn send_authenticated(
        &self,
        request: &mut Request,
        creds: &DigestCredentials,
        wait: Duration,
    ) -> anyhow::Result<SipResponse> {
        let first = self.transact(request, wait)?;
        if first.status != 401 {
            return Ok(first);
        }
        let challenge = first
            .header_values("WWW-Authenticate")
            .into_iter()
            .find(|c| {
                digest_params(c)
                    .map(|p| p.get("algorithm").is_none_or(|a| a.eq_ignore_ascii_case("MD5")))
                    .unwrap_or(false)
            })
            .with_context(|| format!("401 without an MD5 Digest challenge:\n{}", first.text()))?
            .to_string();
        let cseq: u32 = request
            .header("CSeq")
            .and_then(|c| c.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        request.next_transaction(cseq + 1);
        let auth = creds.authorization(
            &challenge,
            &request.method.clone(),
            &request.uri.clone(),
            &unique("cn"),
            1,
        )?;
        request.set("Authorization", &auth);
        self.transact(request, wait)
    }
}

/// Sends one datagram from a fresh socket and collects what comes back
/// within `wait`.
pub fn udp_exchange(server: SocketAddr, datagram: &[u8], wait: Duration) -> anyhow::Result<Vec<SipResponse>> {
    let c = UdpClient::new(server)?;
    c.send(datagram)?;
    c.collect(wait)
}

/// A TCP connection to the server, reading responses framed by
/// Content-Length.
pub struct TcpClient {
    pub stream: TcpStream,
    pub local: SocketAddr,
    pub server: SocketAddr,
    buf: Vec<u8>,
}

impl TcpClient {
    pub fn connect(server: SocketAddr) -> anyhow::Result<TcpClient> {
        let stream = TcpStream::connect_timeout(&server, Duration::from_secs(5))
            .with_context(|| format!("TCP connect to {server}"))?;
        stream.set_nodelay(true)?;
        let local = stream.local_addr()?;
        Ok(TcpClient {
            stream,
            local,
            server,
            buf: Vec::new(),
        })
    }

    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).context("TCP write")?;
        Ok(())
    }

    /// The next response on the connection, or `Ok(None)` if the server
    /// closed it; errors after `wait`.
    pub fn read_response(&mut self, wait: Duration) -> anyhow::Result<Option<SipResponse>> {
        let deadline = Instant::now() + wait;
        loop {
            // Skip keep-alive CRLFs between messages.
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if let Some(end) = find(&self.buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let len = head
                    .split("\r\n")
                    .filter_map(|l| l.split_once(':'))
                    .find(|(n, _)| canonical_header_name(n) == "content-length")
                    .map(|(_, v)| v.trim().parse::<usize>())
                    .transpose()
                    .context("bad Content-Length in response")?
                    .unwrap_or(0);
                let total = end + 4 + len;
                if self.buf.len() >= total {
                    let msg: Vec<u8> = self.buf.drain(..total).collect();
                    let mut r = SipResponse::parse(&msg)?;
                    r.source = Some(self.server);
                    return Ok(Some(r));
                }
            }
            let now = Instant::now();
            if now >= deadline {
                bail!(
                    "no complete response on TCP within {wait:?} (have {} bytes)",
                    self.buf.len()
                );
            }
            self.stream.set_read_timeout(Some(deadline - now))?;
            let mut chunk = [0u8; 16_384];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
                Err(e) => return Err(e).context("TCP read"),
            }
        }
    }

    /// The next final response, skipping provisional ones.
    pub fn final_response(&mut self, wait: Duration) -> anyhow::Result<SipResponse> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_response(left)? {
                Some(r) if r.is_final() => return Ok(r),
                Some(_) => {}
                None => bail!("server closed the TCP connection"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_rfc2617_example() {
        let creds = DigestCredentials::new("Mufasa", "Circle Of Life");
        let challenge = r#"Digest realm="testrealm@host.com", qop="auth,auth-int", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let h = creds
            .authorization(challenge, "GET", "/dir/index.html", "0a4f113b", 1)
            .expect("digest");
        let p = digest_params(&h).expect("params");
        assert_eq!(p["response"], "6629fae49393a05397450978507c4ef1");
        assert_eq!(p["nc"], "00000001");
        assert_eq!(p["opaque"], "5ccc069c403ebaf9f0171e9517f40e41");
    }

    #[test]
    fn parses_compact_and_folded_headers() {
        let raw = b"SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:5060;rport=5060;received=127.0.0.1\r\nm: <sip:a@b;x=1>;expires=60,\r\n <sip:c@d>;expires=30\r\nl: 0\r\n\r\n";
        let r = SipResponse::parse(raw).expect("parse");
        assert_eq!((r.status, r.reason.as_str()), (200, "OK"));
        assert_eq!(r.header("Via"), r.header("v"));
        let contacts = r.header_elements("Contact");
        assert_eq!(contacts.len(), 2, "{contacts:?}");
        assert_eq!(element_uri(&contacts[0]), "sip:a@b;x=1");
        assert_eq!(header_params(&contacts[0])["expires"], "60");
        assert_eq!(header_params(&contacts[1])["expires"], "30");
        assert!(SipResponse::parse(b"INVITE sip:a@b SIP/2.0\r\n\r\n").is_err());
    }

    #[test]
    fn commas_inside_quotes_and_angles_do_not_split() {
        assert_eq!(
            split_commas(r#""Doe, J" <sip:j@x;a=1,2>, <sip:k@y>"#),
            [r#""Doe, J" <sip:j@x;a=1,2>"#, "<sip:k@y>"]
        );
    }

    #[test]
    fn next_transaction_keeps_via_params() {
        let local: SocketAddr = "127.0.0.1:4000".parse().expect("addr");
        let mut r = Request::new("REGISTER", "sip:127.0.0.1:5060", local, "UDP");
        let before = r.header("Via").expect("via").to_string();
        r.next_transaction(7);
        let after = r.header("Via").expect("via").to_string();
        assert_ne!(before, after);
        assert!(
            after.starts_with("SIP/2.0/UDP 127.0.0.1:4000;rport;branch=z9hG4bK"),
            "{after}"
        );
        assert_eq!(r.header("CSeq"), Some("7 REGISTER"));
    }
}
