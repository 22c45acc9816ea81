#!/usr/bin/env python3
"""An smpplib (PyPI) peer of the ivm-smsc built-in SMSC, driven by the Rust tests.

    smpplib_peer.py HOST PORT --expect N [--submit-to MSISDN --submit-text TEXT] [--timeout S]

Binds one session as a *receiver* (system_id "watcher") and prints every message the SMSC
delivers to it, then, with --submit-to, binds a *transceiver* (system_id "pyesme"), submits one
message with a delivery receipt requested and prints the submit_sm_resp and the receipt.
Prints JSON lines on stdout: {"kind": "ready"} once bound, then "message", "submitted",
"receipt"; exits 0 when N messages (and the receipt, if submitting) arrived, 1 on timeout.
"""

import argparse
import json
import select
import sys
import time

import smpplib.client
import smpplib.consts
import smpplib.gsm

GSM_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = {0x0A: "\f", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|", 0x65: "€"}


def as_bytes(v):
    if v is None:
        return b""
    if isinstance(v, bytes):
        return v
    return str(v).encode("latin-1")


def decode(data_coding, esm_class, sm):
    sm = as_bytes(sm)
    if esm_class & 0x40 and sm:
        sm = sm[1 + sm[0]:]
    if data_coding == 8:
        return sm.decode("utf-16-be", errors="replace")
    out, esc = [], False
    for b in sm:
        if esc:
            out.append(GSM_EXT.get(b, GSM_BASIC[b] if b < 128 else "?"))
            esc = False
        elif b == 0x1B:
            esc = True
        else:
            out.append(GSM_BASIC[b] if b < 128 else "?")
    return "".join(out)


def emit(**kw):
    print(json.dumps(kw, ensure_ascii=False), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("--expect", type=int, default=1)
    ap.add_argument("--submit-to")
    ap.add_argument("--submit-text", default="hello from smpplib")
    ap.add_argument("--timeout", type=float, default=20.0)
    args = ap.parse_args()

    seen = {"messages": 0, "receipt": args.submit_to is None}

    watcher = smpplib.client.Client(args.host, args.port, timeout=1, allow_unknown_opt_params=True)

    def on_message(pdu):
        text = decode(pdu.data_coding, pdu.esm_class, pdu.short_message)
        if pdu.esm_class & 0x04:
            emit(kind="watcher-receipt", text=text)
            return
        seen["messages"] += 1
        emit(
            kind="message",
            source=as_bytes(pdu.source_addr).decode(),
            destination=as_bytes(pdu.destination_addr).decode(),
            data_coding=pdu.data_coding,
            text=text,
        )

    watcher.set_message_received_handler(on_message)
    watcher.connect()
    watcher.bind_receiver(system_id="watcher", password="x")
    clients = [watcher]

    if args.submit_to:
        esme = smpplib.client.Client(args.host, args.port, timeout=1, allow_unknown_opt_params=True)

        def on_sent(pdu):
            emit(kind="submitted", message_id=as_bytes(pdu.message_id).decode())

        def on_receipt(pdu):
            text = decode(pdu.data_coding, pdu.esm_class, pdu.short_message)
            emit(kind="receipt", esm_class=pdu.esm_class, text=text,
                 receipted_message_id=as_bytes(getattr(pdu, "receipted_message_id", b"")).decode())
            seen["receipt"] = True

        esme.set_message_sent_handler(on_sent)
        esme.set_message_received_handler(on_receipt)
        esme.connect()
        esme.bind_transceiver(system_id="pyesme", password="x")
        clients.append(esme)

    emit(kind="ready")

    if args.submit_to:
        parts, encoding, esm_class = smpplib.gsm.make_parts(args.submit_text)
        for part in parts:
            esme.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr="PYTEST",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                destination_addr=args.submit_to,
                short_message=part,
                data_coding=encoding,
                esm_class=esm_class,
                registered_delivery=True,
            )

    deadline = time.time() + args.timeout
    while time.time() < deadline:
        if seen["messages"] >= args.expect and seen["receipt"]:
            for c in clients:
                try:
                    c.unbind()
                    c.disconnect()
                except Exception:  # noqa: BLE001 - best effort on the way out
                    pass
            return 0
        readable, _, _ = select.select([c._socket for c in clients], [], [], 0.2)
        for c in clients:
            if c._socket in readable:
                c.read_once()
    emit(kind="timeout", messages=seen["messages"], receipt=seen["receipt"])
    return 1


if __name__ == "__main__":
    sys.exit(main())
