//! Presence (RFC 3856 event package `presence`, documents in PIDF, RFC 3863, with the RPID
//! activities of RFC 4480): what a subscriber's phone PUBLISHes about itself (RFC 3903) — open
//! or closed, busy, on the phone, do not disturb — kept per address-of-record with its entity
//! tag and lifetime, in memory (phones refresh their publications). The call layer asks
//! [`Presence::availability`] before it rings a target: a busy, do-not-disturb or closed target
//! is not called; its message is stored and it is notified at once, by its own rules.
//!
//! PIDF is read with `roxmltree` (a small, well-kept read-only XML parser): only the elements
//! that say whether to ring are looked at, by local name, whatever their namespace prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::services::registrar::auth::{AuthOutcome, DigestAuth};
use crate::stack::endpoint::SipCore;
use crate::stack::router::{Incoming, Service};
use crate::stack::sip::message::random_token;
use crate::stack::sip::{HeaderName, Method, Request, Response, SipHeaders};
use crate::stack::transport::Peer;

/// The event package.
pub const PACKAGE: &str = "presence";
/// The document type we read.
pub const PIDF: &str = "application/pidf+xml";
const MIN_EXPIRES: u32 = 60;
const MAX_EXPIRES: u32 = 86_400;
const DEFAULT_EXPIRES: u32 = 3600;

/// Whether a subscriber wants to be rung, from what it published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Open, or nothing published: ring it.
    Available,
    /// `busy` or `on-the-phone` (RFC 4480 activities).
    Busy,
    /// A note or activity saying "do not disturb".
    DoNotDisturb,
    /// `<basic>closed</basic>`: the person is not reachable.
    Offline,
}

impl Availability {
    /// Whether a call may ring it.
    pub fn reachable(self) -> bool {
        self == Availability::Available
    }

    /// The status a call that was not placed reports (the delivery's `sip_status`).
    pub fn status(self) -> u16 {
        match self {
            Availability::Available => 200,
            Availability::Busy => 486,
            Availability::DoNotDisturb | Availability::Offline => 480,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Availability::Available => "available",
            Availability::Busy => "busy",
            Availability::DoNotDisturb => "do-not-disturb",
            Availability::Offline => "offline",
        }
    }
}

/// Why a PIDF document was not understood.
#[derive(Debug, thiserror::Error)]
pub enum PidfError {
    #[error("not XML: {0}")]
    Xml(#[from] roxmltree::Error),
    #[error("the root element is <{0}>, not <presence>")]
    NotPresence(String),
}

/// What a PIDF document says about ringing its presentity: the first tuple's `<basic>`, then
/// any activity or note (person or tuple) that says busy or do-not-disturb.
pub fn parse_pidf(body: &str) -> Result<Availability, PidfError> {
    let doc = roxmltree::Document::parse(body)?;
    let root = doc.root_element();
    if root.tag_name().name() != "presence" {
        return Err(PidfError::NotPresence(root.tag_name().name().to_owned()));
    }
    let named = |name: &'static str| {
        root.descendants()
            .filter(move |n| n.is_element() && n.tag_name().name() == name)
    };
    let dnd = |text: &str| {
        let t = text.to_ascii_lowercase();
        t.contains("do not disturb") || t.contains("do-not-disturb") || t.trim() == "dnd"
    };
    let activities: Vec<&str> = named("activities")
        .flat_map(|a| a.children().filter(|c| c.is_element()))
        .map(|c| c.tag_name().name())
        .collect();
    if activities.iter().any(|a| dnd(a)) || named("note").any(|n| n.text().is_some_and(dnd)) {
        return Ok(Availability::DoNotDisturb);
    }
    if activities.iter().any(|a| matches!(*a, "busy" | "on-the-phone")) {
        return Ok(Availability::Busy);
    }
    let basic = named("basic").next().and_then(|b| b.text()).map(str::trim);
    if basic.is_some_and(|b| b.eq_ignore_ascii_case("closed")) {
        return Ok(Availability::Offline);
    }
    Ok(Availability::Available)
}

struct Publication {
    etag: String,
    expires_at: Instant,
    availability: Availability,
}

/// What subscribers published; shared by the service and the call layer.
#[derive(Clone, Default)]
pub struct Presence {
    by_aor: Arc<Mutex<HashMap<String, Publication>>>,
}

/// How a PUBLISH changes the state (RFC 3903 §6).
enum Publish {
    Initial(Availability),
    Refresh,
    Modify(Availability),
    Remove,
}

impl Presence {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Publication>> {
        self.by_aor.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What `aor` published last (unexpired), or [`Availability::Available`].
    pub fn availability(&self, aor: &str) -> Availability {
        self.lock()
            .get(aor)
            .filter(|p| p.expires_at > Instant::now())
            .map_or(Availability::Available, |p| p.availability)
    }

    /// Applies a PUBLISH; the new entity tag, or `None` when `if_match` names no live
    /// publication of `aor` (`412`).
    fn apply(&self, aor: &str, if_match: Option<&str>, op: Publish, expires: u32) -> Option<String> {
        let mut map = self.lock();
        let now = Instant::now();
        let live = map
            .get(aor)
            .filter(|p| p.expires_at > now && if_match.is_some_and(|m| m == p.etag))
            .map(|p| p.availability);
        let availability = match (op, live) {
            (Publish::Initial(a), _) => a,
            (Publish::Remove, Some(_)) => {
                map.remove(aor);
                return Some(random_token(10));
            }
            (Publish::Refresh, Some(a)) => a,
            (Publish::Modify(a), Some(_)) => a,
            (_, None) => return None,
        };
        let etag = random_token(10);
        map.insert(
            aor.to_owned(),
            Publication {
                etag: etag.clone(),
                expires_at: now + Duration::from_secs(u64::from(expires)),
                availability,
            },
        );
        Some(etag)
    }
}

/// The presence service on the router: a `PUBLISH` of `presence` for one's own address,
/// digest-authenticated. Other event packages are not claimed (the router answers `489`).
pub struct PresenceService {
    pub presence: Presence,
    pub auth: Arc<DigestAuth>,
    pub core: SipCore,
}

impl Service for PresenceService {
    fn name(&self) -> &'static str {
        "presence"
    }

    fn methods(&self) -> &'static [Method] {
        &[Method::Publish]
    }

    fn events(&self) -> &'static [&'static str] {
        &[PACKAGE]
    }

    fn claims(&self, request: &Request) -> bool {
        request.method == Method::Publish && request.event().is_some_and(|e| e.package.eq_ignore_ascii_case(PACKAGE))
    }

    fn handle(&self, incoming: Incoming) {
        let (presence, auth, core) = (self.presence.clone(), self.auth.clone(), self.core.clone());
        tokio::spawn(async move {
            let resp = publish(&presence, &auth, &incoming.request, &incoming.source).await;
            incoming.reply(&core, resp);
        });
    }
}

/// Answers one PUBLISH.
async fn publish(presence: &Presence, auth: &DigestAuth, req: &Request, source: &Peer) -> Response {
    let tag = random_token(8);
    let aor = req
        .uri
        .as_sip()
        .and_then(|u| u.user_unescaped())
        .map(|u| String::from_utf8_lossy(&u).into_owned());
    let Some(aor) = aor else {
        return req.response(404, Some("Not Found (no user in the Request-URI)"), &tag);
    };
    match auth.check(req, Some(&aor), source).await {
        Ok(AuthOutcome::Ok(_)) => {}
        Ok(AuthOutcome::Challenge { stale }) => return auth.challenge(req, stale),
        Ok(AuthOutcome::Forbidden) => return req.response(403, None, &tag),
        Err(e) => {
            tracing::error!(error = %e, "publish: store unavailable");
            return req.response(500, Some("Server Internal Error (store unavailable)"), &tag);
        }
    }
    let expires = req.expires().unwrap_or(DEFAULT_EXPIRES);
    if expires != 0 && expires < MIN_EXPIRES {
        let mut resp = req.response(423, None, &tag);
        resp.headers.push(HeaderName::MinExpires, MIN_EXPIRES.to_string());
        return resp;
    }
    let expires = expires.min(MAX_EXPIRES);
    let if_match = req
        .headers
        .get(&HeaderName::Other("SIP-If-Match".into()))
        .map(|v| String::from_utf8_lossy(v).trim().to_owned());
    let op = if req.body.is_empty() {
        match (&if_match, expires) {
            (None, _) => return req.response(400, Some("Bad Request (an initial PUBLISH needs a body)"), &tag),
            (Some(_), 0) => Publish::Remove,
            (Some(_), _) => Publish::Refresh,
        }
    } else {
        let content_type = req
            .headers
            .get(&HeaderName::ContentType)
            .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
            .unwrap_or_default();
        if !content_type.trim().starts_with(PIDF) {
            let mut resp = req.response(415, None, &tag);
            resp.headers.push(HeaderName::Accept, PIDF);
            return resp;
        }
        let availability = match parse_pidf(&String::from_utf8_lossy(&req.body)) {
            Ok(a) => a,
            Err(e) => return req.response(400, Some(&format!("Bad Request (PIDF: {e})")), &tag),
        };
        tracing::info!(aor, state = availability.name(), "presence published");
        match (&if_match, expires) {
            (None, _) => Publish::Initial(availability),
            (Some(_), 0) => Publish::Remove,
            (Some(_), _) => Publish::Modify(availability),
        }
    };
    match presence.apply(&aor, if_match.as_deref(), op, expires) {
        Some(etag) => {
            let mut resp = req.response(200, None, &tag);
            resp.headers.push(HeaderName::Other("SIP-ETag".into()), etag);
            resp.headers.push(HeaderName::Expires, expires.to_string());
            resp
        }
        None => req.response(412, None, &tag),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(inner: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             entity=\"sip:1002@ivm.local\">{inner}</presence>"
        )
    }

    #[test]
    fn what_pidf_documents_of_the_field_mean() {
        let open = "<tuple id=\"t1\"><status><basic>open</basic></status></tuple>";
        assert_eq!(parse_pidf(&doc(open)).ok(), Some(Availability::Available));
        let closed = "<tuple id=\"t1\"><status><basic>closed</basic></status></tuple>";
        assert_eq!(parse_pidf(&doc(closed)).ok(), Some(Availability::Offline));
        let busy = format!("{open}<dm:person id=\"p\"><rpid:activities><rpid:busy/></rpid:activities></dm:person>");
        assert_eq!(parse_pidf(&doc(&busy)).ok(), Some(Availability::Busy));
        let phone =
            format!("{open}<dm:person id=\"p\"><rpid:activities><rpid:on-the-phone/></rpid:activities></dm:person>");
        assert_eq!(parse_pidf(&doc(&phone)).ok(), Some(Availability::Busy));
        let dnd = format!("{open}<dm:person id=\"p\"><dm:note>Do Not Disturb</dm:note></dm:person>");
        assert_eq!(parse_pidf(&doc(&dnd)).ok(), Some(Availability::DoNotDisturb));
        let away = format!("{open}<dm:person id=\"p\"><rpid:activities><rpid:away/></rpid:activities></dm:person>");
        assert_eq!(
            parse_pidf(&doc(&away)).ok(),
            Some(Availability::Available),
            "away still rings"
        );
        assert!(parse_pidf("<notpresence/>").is_err());
        assert!(parse_pidf("<presence").is_err());
    }

    #[test]
    fn publications_are_refreshed_modified_and_removed_by_their_entity_tag() {
        let p = Presence::default();
        assert_eq!(p.availability("1002"), Availability::Available, "nothing published");
        let e1 = p.apply("1002", None, Publish::Initial(Availability::Busy), 60);
        assert_eq!(p.availability("1002"), Availability::Busy);
        assert!(p.apply("1002", Some("wrong"), Publish::Refresh, 60).is_none(), "412");
        let e2 = p.apply("1002", e1.as_deref(), Publish::Modify(Availability::DoNotDisturb), 60);
        assert!(e2.is_some() && e2 != e1, "a new entity tag each time");
        assert_eq!(p.availability("1002"), Availability::DoNotDisturb);
        assert!(
            p.apply("1002", e1.as_deref(), Publish::Refresh, 60).is_none(),
            "the old tag is gone"
        );
        assert!(p.apply("1002", e2.as_deref(), Publish::Remove, 0).is_some());
        assert_eq!(p.availability("1002"), Availability::Available);
        let _ = p.apply("1003", None, Publish::Initial(Availability::Offline), 0);
        assert_eq!(p.availability("1003"), Availability::Available, "expired at once");
    }
}
