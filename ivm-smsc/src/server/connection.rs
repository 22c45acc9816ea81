//! One ESME connection to the built-in SMSC: a reader that decodes PDUs and answers them, and a
//! writer that batches responses and `deliver_sm`s into few socket writes, holds delayed
//! `submit_sm_resp`s, and keeps unacknowledged `deliver_sm`s to hand back to the router if the
//! connection goes away.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use bytes::BytesMut;
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DeliverSm, SubmitSm, SubmitSmResp};
use rusmpp::tlvs::{MessageDeliveryRequestTlvValue, TlvValue};
use rusmpp::types::{COctetString, EmptyOrFullCOctetString, OctetString};
use rusmpp::values::{
    DataCoding, EsmClass, InterfaceVersion, MessageState, PriorityFlag, RegisteredDelivery, ReplaceIfPresentFlag,
    ServiceType,
};
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::codec::{self, Frame};
use super::router::{BindKind, Out};
use super::state::{self, ReceivedMessage, ServerState};
use crate::encoding;
use crate::receipt;

/// Largest PDU accepted.
const MAX_PDU: usize = 64 * 1024;
/// Most `deliver_sm` written and not yet acknowledged per connection.
const DELIVER_WINDOW: usize = 1000;
/// Flush the write buffer once it holds this much.
const WRITE_BATCH: usize = 64 * 1024;

struct Bound {
    system_id: String,
    kind: BindKind,
}

/// Serves one connection until the peer leaves, unbinds, breaks framing, or the server stops.
pub(crate) async fn run(
    id: u64,
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<ServerState>,
    shutdown: watch::Receiver<bool>,
) {
    state.counters.connections.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(%peer, session = id, "ESME connected");
    let (rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let mut reader = Reader {
        id,
        peer,
        state: state.clone(),
        tx,
        bound: None,
        outstanding: outstanding.clone(),
    };
    let writer = write_loop(wr, rx, state.clone(), outstanding, shutdown.clone());
    tokio::pin!(writer);
    let mut leftovers = None;
    tokio::select! {
        () = reader.read_loop(rd, shutdown) => {}
        left = &mut writer => leftovers = Some(left),
    }
    state.router.unregister(id);
    let system_id = reader.bound.as_ref().map(|b| b.system_id.clone());
    drop(reader);
    let leftovers = match leftovers {
        Some(l) => l,
        // The reader is done; the writer flushes what is queued (the unbind_resp) and stops.
        None => writer.await,
    };
    if let Some(system_id) = system_id {
        state.router.requeue(&system_id, leftovers);
    }
    state.counters.connections.fetch_sub(1, Ordering::Relaxed);
    tracing::debug!(%peer, session = id, "ESME disconnected");
}

struct Reader {
    id: u64,
    peer: SocketAddr,
    state: Arc<ServerState>,
    tx: mpsc::UnboundedSender<Out>,
    bound: Option<Bound>,
    outstanding: Arc<AtomicUsize>,
}

impl Reader {
    async fn read_loop(&mut self, mut rd: OwnedReadHalf, mut shutdown: watch::Receiver<bool>) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            loop {
                match codec::next_frame(&mut buf, MAX_PDU) {
                    Ok(Some(frame)) => {
                        if self.handle(frame).is_break() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(bad) => {
                        tracing::warn!(peer = %self.peer, length = bad.length, "bad command_length; closing");
                        self.nack(bad.sequence_number, CommandStatus::EsmeRinvcmdlen);
                        return;
                    }
                }
            }
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(peer = %self.peer, error = %e, "read failed");
                        return;
                    }
                },
                () = state::stopped(&mut shutdown) => return,
            }
        }
    }

    fn send(&self, out: Out) {
        let _ = self.tx.send(out);
    }

    fn respond(&self, status: CommandStatus, sequence: u32, pdu: impl Into<Pdu>) {
        self.send(Out::Now(Command::new(status, sequence, pdu)));
    }

    fn nack(&self, sequence: u32, status: CommandStatus) {
        self.state.counters.generic_nacks.fetch_add(1, Ordering::Relaxed);
        self.respond(status, sequence, Pdu::GenericNack);
    }

    fn handle(&mut self, frame: Frame) -> ControlFlow<()> {
        let command = match frame {
            Frame::Command(c) => c,
            Frame::Invalid {
                command_id,
                sequence_number,
                status,
            } => {
                tracing::warn!(peer = %self.peer, command_id = format!("0x{command_id:08x}"), sequence_number, "invalid PDU, generic_nack");
                self.nack(sequence_number, status);
                return ControlFlow::Continue(());
            }
        };
        let seq = command.sequence_number();
        match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => self.bind(
                seq,
                BindKind::Transmitter,
                b.system_id.as_str(),
                b.password.as_str(),
                b.address_range.as_str(),
            ),
            Some(Pdu::BindReceiver(b)) => self.bind(
                seq,
                BindKind::Receiver,
                b.system_id.as_str(),
                b.password.as_str(),
                b.address_range.as_str(),
            ),
            Some(Pdu::BindTransceiver(b)) => self.bind(
                seq,
                BindKind::Transceiver,
                b.system_id.as_str(),
                b.password.as_str(),
                b.address_range.as_str(),
            ),
            Some(Pdu::SubmitSm(sm)) => self.submit(seq, sm),
            Some(Pdu::EnquireLink) => self.respond(CommandStatus::EsmeRok, seq, Pdu::EnquireLinkResp),
            Some(Pdu::Unbind) => {
                self.respond(CommandStatus::EsmeRok, seq, Pdu::UnbindResp);
                return ControlFlow::Break(());
            }
            Some(Pdu::DeliverSmResp(_)) => {
                if command.status() != CommandStatus::EsmeRok {
                    tracing::info!(peer = %self.peer, seq, status = ?command.status(), "deliver_sm refused by the ESME");
                }
                self.state.counters.delivers_acked.fetch_add(1, Ordering::Relaxed);
                self.send(Out::Acked(seq));
            }
            Some(Pdu::EnquireLinkResp | Pdu::UnbindResp) => {}
            Some(Pdu::GenericNack) => {
                tracing::info!(peer = %self.peer, seq, status = ?command.status(), "generic_nack from the ESME")
            }
            None if command.id() == CommandId::DeliverSmResp => {
                self.state.counters.delivers_acked.fetch_add(1, Ordering::Relaxed);
                self.send(Out::Acked(seq));
            }
            _ if command.id().is_response() => {}
            _ => {
                tracing::info!(peer = %self.peer, id = ?command.id(), "unsupported operation, generic_nack");
                self.nack(seq, CommandStatus::EsmeRinvcmdid);
            }
        }
        ControlFlow::Continue(())
    }

    fn bind(&mut self, seq: u32, kind: BindKind, system_id: &str, password: &str, address_range: &str) {
        let status = if self.bound.is_some() {
            CommandStatus::EsmeRalybnd
        } else if self.state.cfg.system_id.as_deref().is_some_and(|s| s != system_id) {
            // Not "invalid system_id": that would tell a guesser which ids exist.
            CommandStatus::EsmeRbindfail
        } else if self.state.cfg.password.as_deref().is_some_and(|p| p != password) {
            CommandStatus::EsmeRinvpaswd
        } else {
            CommandStatus::EsmeRok
        };
        let me =
            COctetString::from_string(self.state.cfg.smsc_system_id.clone()).unwrap_or_else(|_| COctetString::empty());
        let version = Some(InterfaceVersion::Smpp3_4);
        match kind {
            BindKind::Transmitter => self.respond(status, seq, BindTransmitterResp::new(me, version)),
            BindKind::Receiver => self.respond(status, seq, BindReceiverResp::new(me, version)),
            BindKind::Transceiver => self.respond(status, seq, BindTransceiverResp::new(me, version)),
        }
        if status != CommandStatus::EsmeRok {
            tracing::warn!(peer = %self.peer, system_id, ?status, "bind refused");
            return;
        }
        self.state.counters.binds.fetch_add(1, Ordering::Relaxed);
        tracing::info!(peer = %self.peer, system_id, ?kind, address_range, "ESME bound");
        self.bound = Some(Bound {
            system_id: system_id.to_string(),
            kind,
        });
        self.state
            .router
            .register(self.id, system_id, kind, address_range, self.tx.clone());
    }

    fn submit(&mut self, seq: u32, sm: &SubmitSm) {
        let Some(bound) = self.bound.as_ref().filter(|b| b.kind.can_submit()) else {
            self.respond(
                CommandStatus::EsmeRinvbndsts,
                seq,
                SubmitSmResp::new(COctetString::empty(), Vec::new()),
            );
            return;
        };
        let destination = sm.destination_addr.to_string();
        if destination.is_empty() {
            self.respond(
                CommandStatus::EsmeRinvdstadr,
                seq,
                SubmitSmResp::new(COctetString::empty(), Vec::new()),
            );
            return;
        }
        let esm = u8::from(sm.esm_class);
        let dc = u8::from(sm.data_coding);
        let payload_tlv = sm.tlvs().iter().find_map(|t| match t.value() {
            Some(TlvValue::MessagePayload(p)) => Some(p.value.as_ref().to_vec()),
            _ => None,
        });
        let body: Vec<u8> = match payload_tlv {
            Some(p) if sm.short_message().is_empty() => p,
            _ => sm.short_message().as_ref().to_vec(),
        };
        let decoded = encoding::decode_short_message(dc, esm, &body);
        let message_id = self.state.next_message_id();
        let source = sm.source_addr.to_string();
        let registered = u8::from(sm.registered_delivery);
        if self.state.cfg.log_messages {
            match decoded.concat {
                Some(c) => {
                    tracing::info!(id = %message_id, system_id = %bound.system_id, from = %source, to = %destination, part = %c, text = %decoded.text, "SMS")
                }
                None => {
                    tracing::info!(id = %message_id, system_id = %bound.system_id, from = %source, to = %destination, text = %decoded.text, "SMS")
                }
            }
        }
        self.state.counters.submits.fetch_add(1, Ordering::Relaxed);
        let now_out = self.outstanding.fetch_add(1, Ordering::Relaxed) + 1;
        self.state
            .counters
            .max_outstanding
            .fetch_max(now_out, Ordering::Relaxed);
        let resp_at =
            (!self.state.cfg.submit_resp_delay.is_zero()).then(|| Instant::now() + self.state.cfg.submit_resp_delay);
        let resp_id = COctetString::from_string(message_id.clone()).unwrap_or_else(|_| COctetString::empty());
        self.send(Out::SubmitResp(
            resp_at,
            Command::new(CommandStatus::EsmeRok, seq, SubmitSmResp::new(resp_id, Vec::new())),
        ));

        let undeliverable = self
            .state
            .cfg
            .undeliverable_prefix
            .as_deref()
            .is_some_and(|p| destination.starts_with(p));
        let (stat, err) = if undeliverable {
            ("UNDELIV", "001")
        } else {
            ("DELIVRD", "000")
        };
        let wants = match registered & 0x03 {
            1 => true,
            2 => undeliverable,
            3 => !undeliverable,
            _ => false,
        };
        if wants {
            let rid = self.state.receipt_id(&message_id);
            let now = SystemTime::now();
            let text = receipt::format_receipt_text(
                &rid,
                now,
                now + self.state.cfg.receipt_delay,
                stat,
                err,
                &ascii_only(&decoded.text),
            );
            let dsm = receipt_pdu(sm, &rid, stat, text);
            let at = resp_at.unwrap_or_else(Instant::now) + self.state.cfg.receipt_delay;
            self.state.router.receipt(Some(at), self.id, &bound.system_id, dsm);
        }
        let copy = DeliverSm::new(
            ServiceType::default(),
            sm.source_addr_ton,
            sm.source_addr_npi,
            sm.source_addr.clone(),
            sm.dest_addr_ton,
            sm.dest_addr_npi,
            sm.destination_addr.clone(),
            EsmClass::from(esm & 0x40),
            sm.protocol_id,
            PriorityFlag::from(0),
            EmptyOrFullCOctetString::empty(),
            EmptyOrFullCOctetString::empty(),
            RegisteredDelivery::from(0),
            ReplaceIfPresentFlag::from(0),
            sm.data_coding,
            0,
            sm.short_message().clone(),
            Vec::new(),
        );
        self.state.router.copy_to_watchers(self.id, &destination, &copy);
        self.state.remember(ReceivedMessage {
            message_id,
            system_id: bound.system_id.clone(),
            source,
            source_ton: u8::from(sm.source_addr_ton),
            destination,
            destination_ton: u8::from(sm.dest_addr_ton),
            text: decoded.text,
            data_coding: dc,
            esm_class: esm,
            registered_delivery: registered,
            concat: decoded.concat,
        });
    }
}

fn ascii_only(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii() && !c.is_ascii_control() { c } else { '?' })
        .collect()
}

/// The receipt `deliver_sm` for `sm`: from its destination back to its source.
fn receipt_pdu(sm: &SubmitSm, id: &str, stat: &str, text: String) -> DeliverSm {
    let rid = COctetString::from_string(id.to_string()).unwrap_or_else(|_| COctetString::empty());
    let body = OctetString::from_vec(text.into_bytes()).unwrap_or_else(|_| OctetString::empty());
    DeliverSm::new(
        ServiceType::default(),
        sm.dest_addr_ton,
        sm.dest_addr_npi,
        sm.destination_addr.clone(),
        sm.source_addr_ton,
        sm.source_addr_npi,
        sm.source_addr.clone(),
        EsmClass::from(0x04),
        0,
        PriorityFlag::from(0),
        EmptyOrFullCOctetString::empty(),
        EmptyOrFullCOctetString::empty(),
        RegisteredDelivery::from(0),
        ReplaceIfPresentFlag::from(0),
        DataCoding::from(0),
        0,
        body,
        vec![
            MessageDeliveryRequestTlvValue::ReceiptedMessageId(rid),
            MessageDeliveryRequestTlvValue::MessageState(MessageState::from(receipt::message_state_of_stat(stat))),
        ],
    )
}

/// Writes what the reader and the router queue, batching into few writes. Returns the
/// `deliver_sm`s not acknowledged (and not yet written) when it stops.
async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
    state: Arc<ServerState>,
    outstanding: Arc<AtomicUsize>,
    mut shutdown: watch::Receiver<bool>,
) -> Vec<DeliverSm> {
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    let mut delayed: VecDeque<(Instant, Command)> = VecDeque::new();
    let mut unacked: BTreeMap<u32, DeliverSm> = BTreeMap::new();
    let mut waiting: VecDeque<DeliverSm> = VecDeque::new();
    let mut next_seq: u32 = 1;
    let leftovers = |unacked: BTreeMap<u32, DeliverSm>, waiting: VecDeque<DeliverSm>| -> Vec<DeliverSm> {
        unacked.into_values().chain(waiting).filter(is_receipt).collect()
    };
    let mut open = true;
    while open {
        let next_due = delayed.front().map(|(t, _)| *t);
        tokio::select! {
            biased;
            () = state::stopped(&mut shutdown) => return leftovers(unacked, waiting),
            msg = rx.recv() => {
                let mut msg = msg;
                loop {
                    match msg {
                        None => { open = false; break; }
                        Some(Out::Now(c)) => codec::encode(&c, &mut buf),
                        Some(Out::SubmitResp(None, c)) => {
                            codec::encode(&c, &mut buf);
                            outstanding.fetch_sub(1, Ordering::Relaxed);
                        }
                        Some(Out::SubmitResp(Some(at), c)) => delayed.push_back((at, c)),
                        Some(Out::Deliver(d)) => waiting.push_back(d),
                        Some(Out::Acked(seq)) => { unacked.remove(&seq); }
                    }
                    if buf.len() >= WRITE_BATCH {
                        break;
                    }
                    msg = match rx.try_recv() {
                        Ok(m) => Some(m),
                        Err(mpsc::error::TryRecvError::Empty) => break,
                        Err(mpsc::error::TryRecvError::Disconnected) => None,
                    };
                }
            }
            _ = tokio::time::sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {}
        }
        let now = Instant::now();
        while delayed.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, c)) = delayed.pop_front() {
                codec::encode(&c, &mut buf);
                outstanding.fetch_sub(1, Ordering::Relaxed);
            }
        }
        while unacked.len() < DELIVER_WINDOW {
            let Some(d) = waiting.pop_front() else { break };
            let seq = next_seq;
            next_seq = next_seq.wrapping_add(1).max(1);
            codec::encode(
                &Command::new(CommandStatus::EsmeRok, seq, Pdu::DeliverSm(d.clone())),
                &mut buf,
            );
            unacked.insert(seq, d);
            state.counters.delivers_sent.fetch_add(1, Ordering::Relaxed);
        }
        if !buf.is_empty() {
            if let Err(e) = wr.write_all(&buf).await {
                tracing::debug!(error = %e, "write failed");
                return leftovers(unacked, waiting);
            }
            buf.clear();
        }
    }
    // Delayed responses still due are dropped with the connection.
    let _ = wr.shutdown().await;
    leftovers(unacked, waiting)
}

/// Receipts are worth keeping for the next receiver; routed copies are not.
fn is_receipt(d: &DeliverSm) -> bool {
    u8::from(d.esm_class) & 0x04 != 0
}
