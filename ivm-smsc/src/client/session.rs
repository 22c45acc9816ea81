//! One SMPP 3.4 session to an SMSC over rusmppc: connect, `bind_transceiver`, `submit_sm` of
//! one encoded part, reading what the SMSC sends (delivery receipts, `unbind`), answering
//! `deliver_sm`, and `unbind` at the end. `enquire_link` is sent every
//! [`SmscConfig::enquire_link_secs`] and answered automatically by rusmppc; a missing answer ends
//! the session. The send window is a semaphore the caller takes a permit from per submit.

use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use rusmpp::pdus::{BindTransceiver, DeliverSm, DeliverSmResp, SubmitSm};
use rusmpp::tlvs::TlvValue;
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, Npi, PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag, ServiceType,
    Ton,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use rusmppc::{ConnectionBuilder, Event};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use super::kick::{Backlog, KickStream};
use crate::address::Address;
use crate::config::SmscConfig;
use crate::encoding::{self, EncodedPart};
use crate::error::SessionError;
use crate::receipt::{self, ReceiptOutcome};

/// How long to wait for the TCP connect and for the bind response.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for any response (submit_sm_resp, enquire_link_resp, unbind_resp).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest PDU accepted from the SMSC.
const MAX_COMMAND_LENGTH: usize = 64 * 1024;

/// A bound session. Cloning shares the connection.
#[derive(Clone, Debug)]
pub struct Session {
    client: rusmppc::Client,
    backlog: Arc<Backlog>,
    window: Arc<Semaphore>,
    source: Address,
    gsm_packed: bool,
    smsc_system_id: String,
}

/// One part ready for `submit_sm`.
#[derive(Debug, Clone)]
pub struct SubmitPart {
    /// Destination.
    pub to: Address,
    /// `data_coding`.
    pub data_coding: u8,
    /// Part payload (UDH included when `udhi`).
    pub part: EncodedPart,
    /// Ask for a delivery receipt.
    pub receipt: bool,
}

/// Something the SMSC sent on its own.
#[derive(Debug)]
pub enum SessionEvent {
    /// A delivery receipt; answer it with [`Session::ack_deliver`] once it is recorded.
    Receipt {
        /// `deliver_sm` sequence number.
        sequence: u32,
        /// The message id it reports on.
        smsc_id: String,
        /// What it says.
        outcome: ReceiptOutcome,
    },
    /// A mobile-originated or routed message (not a receipt); answered the same way.
    Message {
        /// `deliver_sm` sequence number.
        sequence: u32,
        /// Sender.
        from: String,
        /// Recipient.
        to: String,
        /// Decoded text.
        text: String,
    },
    /// The session is over (unbind from the SMSC, connection lost, keepalive timeout).
    Closed(String),
}

/// The SMSC-initiated side of a session.
pub struct SessionEvents {
    client: rusmppc::Client,
    backlog: Arc<Backlog>,
    stream: std::pin::Pin<Box<dyn Stream<Item = Event> + Send + Sync>>,
    closed: bool,
}

impl std::fmt::Debug for SessionEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionEvents").field("closed", &self.closed).finish()
    }
}

fn cstr<const MIN: usize, const MAX: usize>(what: &str, s: &str) -> Result<COctetString<MIN, MAX>, SessionError> {
    COctetString::from_string(s.to_string()).map_err(|e| SessionError::Pdu(format!("{what} {s:?}: {e}")))
}

impl Session {
    /// Connects to `cfg.address` and binds as a transceiver (SMPP 3.4).
    pub async fn connect(cfg: &SmscConfig) -> Result<(Session, SessionEvents), SessionError> {
        let source = Address::source(&cfg.source_addr).map_err(SessionError::Pdu)?;
        let addrs: Vec<_> = tokio::net::lookup_host(cfg.address.as_str())
            .await
            .map_err(|e| SessionError::Resolve {
                address: cfg.address.clone(),
                reason: e.to_string(),
            })?
            .collect();
        let Some(addr) = addrs.first().copied() else {
            return Err(SessionError::Resolve {
                address: cfg.address.clone(),
                reason: "no addresses".into(),
            });
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| SessionError::Connect {
                address: cfg.address.clone(),
                reason: "timed out".into(),
            })?
            .map_err(|e| SessionError::Connect {
                address: cfg.address.clone(),
                reason: e.to_string(),
            })?;
        let _ = stream.set_nodelay(true);
        let backlog = Arc::new(Backlog::default());
        let (client, events) = ConnectionBuilder::new()
            .disable_interface_version_check()
            .max_command_length(MAX_COMMAND_LENGTH)
            .enquire_link_interval(cfg.enquire_link_interval())
            .enquire_link_response_timeout(RESPONSE_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .connected(KickStream::new(stream, backlog.clone()));
        let bind = BindTransceiver::builder()
            .system_id(cstr("system_id", &cfg.system_id)?)
            .password(cstr("password", &cfg.password)?)
            .system_type(cstr("system_type", &cfg.system_type)?)
            .interface_version(InterfaceVersion::Smpp3_4)
            .addr_ton(Ton::Unknown)
            .addr_npi(Npi::Unknown)
            .address_range(COctetString::empty())
            .build();
        backlog.hand();
        let resp = match tokio::time::timeout(CONNECT_TIMEOUT, client.bind_transceiver(bind)).await {
            Err(_) => return Err(SessionError::BindRefused("no bind_transceiver_resp".into())),
            Ok(Ok(resp)) => resp,
            Ok(Err(rusmppc::error::Error::UnexpectedResponse { response })) => {
                let _ = client.close().await;
                return Err(SessionError::BindRefused(status_text(response.status())));
            }
            Ok(Err(e)) => {
                let _ = client.close().await;
                return Err(SessionError::Connection(e.to_string()));
            }
        };
        let session = Session {
            window: Arc::new(Semaphore::new(cfg.window)),
            source,
            gsm_packed: cfg.gsm_packed,
            smsc_system_id: resp.system_id.to_string(),
            client: client.clone(),
            backlog: backlog.clone(),
        };
        Ok((
            session,
            SessionEvents {
                client,
                backlog,
                stream: Box::pin(events),
                closed: false,
            },
        ))
    }

    /// The SMSC's `system_id` from the bind response.
    pub fn smsc_system_id(&self) -> &str {
        &self.smsc_system_id
    }

    /// The send window: take one permit per `submit_sm` and hold it until the response.
    pub fn window(&self) -> Arc<Semaphore> {
        self.window.clone()
    }

    /// Whether to pack GSM septets (from the config).
    pub fn gsm_packed(&self) -> bool {
        self.gsm_packed
    }

    /// Encodes `text` for `to` (the caller submits each part).
    pub fn encode(&self, to: &str, text: &str, concat_ref: u8) -> Result<Vec<SubmitPart>, SessionError> {
        let to = Address::destination(to).map_err(SessionError::Pdu)?;
        let msg = encoding::encode_message(text, concat_ref, self.gsm_packed)
            .map_err(|e| SessionError::Pdu(e.to_string()))?;
        let dc = msg.coding.data_coding();
        Ok(msg
            .parts
            .into_iter()
            .map(|part| SubmitPart {
                to: to.clone(),
                data_coding: dc,
                part,
                receipt: true,
            })
            .collect())
    }

    /// Sends one `submit_sm` and returns the SMSC's message id.
    pub async fn submit(&self, p: &SubmitPart) -> Result<String, SessionError> {
        let esm = if p.part.udhi { 0x40 } else { 0x00 };
        let registered = if p.receipt { 0x01 } else { 0x00 };
        let short_message = OctetString::from_vec(p.part.short_message.clone())
            .map_err(|e| SessionError::Pdu(format!("short_message: {e}")))?;
        let sm = SubmitSm::new(
            ServiceType::default(),
            Ton::from(self.source.ton),
            Npi::from(self.source.npi),
            cstr("source_addr", &self.source.addr)?,
            Ton::from(p.to.ton),
            Npi::from(p.to.npi),
            cstr("destination_addr", &p.to.addr)?,
            EsmClass::from(esm),
            0,
            PriorityFlag::from(0),
            EmptyOrFullCOctetString::empty(),
            EmptyOrFullCOctetString::empty(),
            RegisteredDelivery::from(registered),
            ReplaceIfPresentFlag::from(0),
            DataCoding::from(p.data_coding),
            0,
            short_message,
            Vec::new(),
        );
        self.backlog.hand();
        match self.client.submit_sm(sm).await {
            Ok(resp) => Ok(resp.message_id().to_string()),
            Err(rusmppc::error::Error::ConnectionClosed) => {
                self.backlog.forget();
                Err(SessionError::Connection("connection closed".into()))
            }
            Err(rusmppc::error::Error::UnexpectedResponse { response }) => {
                let status = response.status();
                if status == CommandStatus::EsmeRok {
                    return Err(SessionError::Connection(format!(
                        "unexpected response {:?}",
                        response.id()
                    )));
                }
                Err(SessionError::SubmitRefused {
                    status: status_text(status),
                    code: u32::from(status),
                })
            }
            Err(e) => Err(SessionError::Connection(e.to_string())),
        }
    }

    /// Answers a `deliver_sm` with OK.
    pub async fn ack_deliver(&self, sequence: u32) {
        self.backlog.hand();
        if let Err(e) = self.client.deliver_sm_resp(sequence, DeliverSmResp::default()).await {
            self.backlog.forget();
            tracing::debug!(sequence, error = %e, "deliver_sm_resp not sent");
        }
    }

    /// Whether the connection is still up.
    pub fn is_active(&self) -> bool {
        self.client.is_active()
    }

    /// Unbinds (waiting briefly for `unbind_resp`) and closes the connection.
    pub async fn close(&self) {
        self.backlog.hand();
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.unbind()).await;
        let _ = self.client.close().await;
        let _ = tokio::time::timeout(Duration::from_secs(2), self.client.closed()).await;
    }
}

fn status_text(status: CommandStatus) -> String {
    format!("{status:?} (0x{:08x})", u32::from(status))
}

impl SessionEvents {
    /// The next thing the SMSC sent; `Closed` once, then `None`.
    pub async fn next(&mut self) -> Option<SessionEvent> {
        if self.closed {
            return None;
        }
        loop {
            let Some(event) = self.stream.next().await else {
                self.closed = true;
                return Some(SessionEvent::Closed("connection closed".into()));
            };
            match event {
                Event::Error(e) => {
                    self.closed = true;
                    return Some(SessionEvent::Closed(e.to_string()));
                }
                Event::Incoming(command) => {
                    if let Some(ev) = self.incoming(command).await {
                        if matches!(ev, SessionEvent::Closed(_)) {
                            self.closed = true;
                        }
                        return Some(ev);
                    }
                }
            }
        }
    }

    async fn incoming(&self, command: Command) -> Option<SessionEvent> {
        let sequence = command.sequence_number();
        let id = command.id();
        match command.pdu() {
            Some(Pdu::DeliverSm(dsm)) => Some(classify_deliver_sm(sequence, dsm)),
            Some(Pdu::Unbind) => {
                self.backlog.hand();
                let _ = self.client.unbind_resp(sequence).await;
                let _ = self.client.close().await;
                Some(SessionEvent::Closed("the SMSC unbound".into()))
            }
            _ if id == CommandId::EnquireLink => None,
            _ if id.is_response() => {
                tracing::debug!(sequence, ?id, "late or unexpected response from the SMSC");
                None
            }
            _ => {
                tracing::debug!(
                    sequence,
                    ?id,
                    "unsupported request from the SMSC, answered generic_nack"
                );
                self.backlog.hand();
                let _ = self
                    .client
                    .status(CommandStatus::EsmeRinvcmdid)
                    .generic_nack(sequence)
                    .await;
                None
            }
        }
    }
}

/// Reads a `deliver_sm` as a receipt (esm_class receipt bits, a `receipted_message_id` TLV, or
/// an `id:` text) or as a plain message.
pub fn classify_deliver_sm(sequence: u32, dsm: &DeliverSm) -> SessionEvent {
    let esm = u8::from(dsm.esm_class);
    let dc = u8::from(dsm.data_coding);
    let body = dsm.short_message().as_ref();
    let mut tlv_id = None;
    let mut tlv_state = None;
    for tlv in dsm.tlvs() {
        match tlv.value() {
            Some(TlvValue::ReceiptedMessageId(id)) => tlv_id = Some(id.to_string()),
            Some(TlvValue::MessageState(s)) => tlv_state = Some(u8::from(*s)),
            _ => {}
        }
    }
    let text = encoding::decode_short_message(dc, esm, body).text;
    let parsed = receipt::parse_receipt_text(&text);
    let is_receipt = esm & 0x3C != 0 || tlv_id.is_some() || (parsed.is_some() && text.contains("stat:"));
    if is_receipt {
        let smsc_id = tlv_id.or_else(|| parsed.as_ref().map(|p| p.id.clone()));
        if let Some(smsc_id) = smsc_id {
            let outcome = match (tlv_state, parsed.as_ref().and_then(|p| p.stat.clone())) {
                (_, Some(stat)) => receipt::outcome_of_stat(&stat, parsed.as_ref().and_then(|p| p.err.as_deref())),
                (Some(state), None) => receipt::outcome_of_message_state(state),
                (None, None) => ReceiptOutcome::Pending,
            };
            return SessionEvent::Receipt {
                sequence,
                smsc_id,
                outcome,
            };
        }
    }
    SessionEvent::Message {
        sequence,
        from: dsm.source_addr.to_string(),
        to: dsm.destination_addr.to_string(),
        text,
    }
}
