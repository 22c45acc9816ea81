#!/usr/bin/env bash
# Benchmark: submit_sm per second to the built-in SMSC on loopback, send window on.
#
#   ivm-smsc/bench.sh            # COUNT=100000 WINDOW=10 by default
#   COUNT=200000 WINDOW=50 ivm-smsc/bench.sh
#
# Runs `ivm-smsc serve` (logging every message at info, as `ivm-sipd run` does, to /dev/null)
# and then `ivm-smsc bench`:
#   session  - the client's submit path on one bound transceiver (window semaphore, rusmppc),
#              receipts answered; this is the figure against the >= 10,000/s goal;
#   outbox   - end to end through SmsClient: enqueue into the SQLite outbox (synchronous=FULL,
#              group commit), submit, receipt recorded;
# and the session figure again with the SMSC not logging (--quiet).
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
WINDOW=${WINDOW:-10}
OUTBOX_COUNT=${OUTBOX_COUNT:-$((COUNT / 5))}

cargo build --release -q -p ivm-smsc
bin=target/release/ivm-smsc
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

server_pid=
stop_server() { if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; server_pid=; fi; }
trap stop_server EXIT

start_server() {
    port=$(free_port)
    "$bin" serve --listen "127.0.0.1:$port" --receipt-delay-ms 0 "$@" >/dev/null 2>/dev/null &
    server_pid=$!
    for _ in $(seq 50); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "built-in SMSC did not start" >&2
    exit 1
}

echo "machine: $(nproc) cores, $(uname -sr)"
start_server
echo "== session: $COUNT submit_sm, window $WINDOW, SMSC logging each message"
"$bin" bench --smsc "127.0.0.1:$port" --count "$COUNT" --window "$WINDOW"
echo "== outbox: $OUTBOX_COUNT notifications end to end, window $WINDOW"
"$bin" bench --smsc "127.0.0.1:$port" --count "$OUTBOX_COUNT" --window "$WINDOW" --mode outbox
stop_server

start_server --quiet
echo "== session: $COUNT submit_sm, window $WINDOW, SMSC not logging"
"$bin" bench --smsc "127.0.0.1:$port" --count "$COUNT" --window "$WINDOW"
stop_server
