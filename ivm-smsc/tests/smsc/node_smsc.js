// A tiny SMSC built on node-smpp (npm `smpp`), used as a third-party peer by the ivm-smsc tests.
//
//   node node_smsc.js [PORT]        (PORT 0 or absent: any free port)
//
// Prints one JSON line per event on stdout: {"listening": PORT} first, then {"event": "bind"},
// {"event": "submit", ...} for every submit_sm (decoded text, addresses, UDH), {"event": "receipt"}
// for every delivery receipt sent. Message ids are given out in upper-case hex, zero-padded; the
// receipts carry the same id in decimal, as some carriers do.
'use strict';

const smpp = require('smpp');

const port = Number(process.argv[2] || 0);
let next = 0x1F000;

function out(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

function stamp(d) {
	const p = (n) => String(n).padStart(2, '0');
	return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) + p(d.getUTCHours()) + p(d.getUTCMinutes());
}

const server = smpp.createServer((session) => {
	let systemId = null;
	const bind = (pdu) => {
		systemId = pdu.system_id;
		out({ event: 'bind', command: pdu.command, system_id: pdu.system_id, interface_version: pdu.interface_version });
		session.send(pdu.response());
	};
	session.on('bind_transceiver', bind);
	session.on('bind_transmitter', bind);
	session.on('bind_receiver', bind);
	session.on('enquire_link', (pdu) => session.send(pdu.response()));
	session.on('unbind', (pdu) => {
		session.send(pdu.response());
		session.close();
	});
	session.on('deliver_sm_resp', () => {});
	session.on('error', () => {});
	session.on('submit_sm', (pdu) => {
		const n = next++;
		const id = n.toString(16).toUpperCase().padStart(8, '0');
		const sm = pdu.short_message || {};
		const udh = (sm.udh || []).map((u) => Array.from(u));
		out({
			event: 'submit',
			system_id: systemId,
			message_id: id,
			source_addr: pdu.source_addr,
			source_addr_ton: pdu.source_addr_ton,
			destination_addr: pdu.destination_addr,
			dest_addr_ton: pdu.dest_addr_ton,
			dest_addr_npi: pdu.dest_addr_npi,
			data_coding: pdu.data_coding,
			esm_class: pdu.esm_class,
			registered_delivery: pdu.registered_delivery,
			text: typeof sm === 'string' ? sm : String(sm.message),
			udh: udh,
		});
		session.send(pdu.response({ message_id: id }));
		if ((pdu.registered_delivery & 0x03) === 0) {
			return;
		}
		setTimeout(() => {
			const now = stamp(new Date());
			const text = 'id:' + n + ' sub:001 dlvrd:001 submit date:' + now + ' done date:' + now + ' stat:DELIVRD err:000 text:';
			session.deliver_sm({
				source_addr: pdu.destination_addr,
				destination_addr: pdu.source_addr,
				esm_class: 0x04,
				data_coding: 0x00,
				short_message: text,
			});
			out({ event: 'receipt', message_id: id, receipt_id: String(n) });
		}, 30);
	});
});

server.listen(port, '127.0.0.1', () => out({ listening: server.address().port }));
