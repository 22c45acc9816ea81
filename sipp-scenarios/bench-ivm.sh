#!/usr/bin/env bash
# bench-ivm.sh - IVM call benchmark of ivm-sipd with SIPp: concurrent calls, each streaming
# G.711 RTP that the server records and streams live to a target.
#
# NOT a test: it prints figures. It builds nothing; build first with
#   cargo build --release -p ivm-sipd
# It starts ivm-sipd on a free 127.0.0.1 port with a temporary data directory, a wide RTP
# port range, a trunk `callers` trusting 127.0.0.2 (the callers, no digest) and a trunk
# `target` (route 1\d{3}) pointing at a SIPp UAS (ivm_target_answer.xml) that answers every
# call at once. Its SDP answer sends the message's RTP to an RTP counter (a small Python
# process on 127.0.0.1 that counts packets per SSRC and sequence-number gaps; SIPp itself
# does not read or echo RTP). Then SIPp callers (ivm_caller.xml from 127.0.0.2) dial 5551234
# at RATE calls/s, at most CONCURRENT at once, CALLS in all; each streams
# audio/sweep-4s.ul in a loop (rtp_stream, 20 ms PCMU packets) for HOLD seconds, then BYE.
#
# Printed afterwards:
#   * call set-up: calls created, the set-up rate achieved (calls created / time to create
#     them), peak concurrent calls (SIPp's CurrentCall, sampled every second), failed calls
#     and why, INVITE -> 200 response times;
#   * RTP: frames the server recorded from the callers and frames it streamed to the target
#     (summed from its own log lines "IVM message recorded frames=N" and "target leg ended
#     frames=N"), the nominal frames the callers sent (calls x HOLD x 50), packets counted at
#     the target, the target-side loss from sequence gaps per SSRC, and the counter socket's
#     kernel drops (loss at the measuring end, not the server's);
#   * ivm-sipd: CPU (utime+stime from /proc/PID/stat over the wall time from the first call to
#     the last BYE), peak RSS (VmHWM), RSS before the calls, and (VmHWM - that) per peak
#     concurrent call.
# Everything (server, SIPp, counter, temp dir) is cleaned up on exit.
#
# Knobs (environment variables):
#   CONCURRENT=200       max simultaneous calls (SIPp -l); also the default CALLS
#   RATE=50              call rate, calls/s (SIPp -r)
#   HOLD=20              seconds each caller streams before BYE (SIPp -d); the peak reaches
#                        CONCURRENT only if HOLD >= CONCURRENT / RATE
#   CALLS=$CONCURRENT    calls to make (SIPp -m)
#   TIME_LIMIT=          SIPp global timeout in seconds (default HOLD + CALLS/RATE + 60)
#   RTP_PORTS=20000-59999  ivm-sipd RTP range: 2 port pairs per call (caller and target leg)
#   SERVER_LOG=warn,ivm_sipd=info  RUST_LOG of ivm-sipd (the info lines are counted)
#   IVM_SIPD_BIN=        server binary (default: $CARGO_TARGET_DIR or <repo>/target, then
#                        release/ivm-sipd)
#   SIPP=sipp            sipp binary
#   PYTHON=python3       for the RTP counter
#   KEEP=                if non-empty, keep the temp dir (config, logs, SIPp statistics)
#   MAX_CALLS=           the server's [calls] max_calls (admission control; default: the
#                        shipped 2000). Calls beyond it get 503 and count as failed at the
#                        callers; e.g. MAX_CALLS=500 CONCURRENT=1000 is a run at twice capacity.
#
# Larger runs: CONCURRENT=1000 RATE=100 HOLD=30 sipp-scenarios/bench-ivm.sh
#              CONCURRENT=5000 RATE=200 HOLD=40 sipp-scenarios/bench-ivm.sh
# (needs about 4 file descriptors per call in ivm-sipd: the script raises `ulimit -n` as far
# as it may and says so when the limit is too low; on 2 cores SIPp and the counter share the
# CPU with the server, so check "SIPp CPU" before reading the server's figures as its limit.)
#
# Exit status: 0 when every call succeeded, 1 when some failed, 2 on setup errors.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

CONCURRENT="${CONCURRENT:-200}"
RATE="${RATE:-50}"
HOLD="${HOLD:-20}"
CALLS="${CALLS:-$CONCURRENT}"
RTP_PORTS="${RTP_PORTS:-20000-59999}"
SERVER_LOG="${SERVER_LOG:-warn,ivm_sipd=info}"
SIPP="${SIPP:-sipp}"
PYTHON="${PYTHON:-python3}"
KEEP="${KEEP:-}"
MAX_CALLS="${MAX_CALLS:-}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
BIN="${IVM_SIPD_BIN:-$target_dir/release/ivm-sipd}"

die() { echo "bench-ivm: $*" >&2; exit 2; }
# shellcheck source=bench-lib.sh
FREE_PORT_MIN=10000 FREE_PORT_SPAN=9990
. "$(dirname "$0")/bench-lib.sh"

for v in CONCURRENT RATE HOLD CALLS; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
    [ "${!v}" -ge 1 ] || die "$v must be at least 1"
done
TIME_LIMIT="${TIME_LIMIT:-$((HOLD + CALLS / RATE + 60))}"
is_uint "$TIME_LIMIT" || die "TIME_LIMIT must be an integer"
case "$RTP_PORTS" in *-*) ;; *) die "RTP_PORTS must be A-B" ;; esac
[ -x "$BIN" ] || die "no server binary at $BIN (cargo build --release -p ivm-sipd, or set IVM_SIPD_BIN)"
command -v "$SIPP" >/dev/null 2>&1 || die "sipp not found (apt-get install sip-tester, or set SIPP)"
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (the RTP counter needs it; set PYTHON)"
[ -r /proc/self/stat ] || die "needs Linux /proc"
audio="$here/audio/sweep-4s.ul"
[ -r "$audio" ] || die "missing $audio"

# File descriptors: ivm-sipd holds 4 UDP sockets per call (RTP + RTCP on two legs).
need_fds=$((CALLS < CONCURRENT ? CALLS * 4 + 1024 : CONCURRENT * 4 + 1024))
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
    ulimit -n "$need_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt "$need_fds" ]; then
        echo "bench-ivm: warning: open-file limit $(ulimit -n) < ~$need_fds needed for $CONCURRENT calls;" \
            "expect 503s (no RTP port) above ~$((($(ulimit -n) - 1024) / 4)) concurrent calls" >&2
    fi
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ivm-bench-XXXXXX")"
server_pid=""
target_pid=""
caller_pid=""
counter_pid=""

cleanup() {
    local rc=$?
    stop_pid "$caller_pid"
    stop_pid "$target_pid"
    stop_pid "$counter_pid"
    stop_pid "$server_pid"
    if [ -n "$KEEP" ]; then
        echo "kept $tmp" >&2
    else
        rm -rf "$tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A port on 127.0.0.x that no UDP/TCP socket uses (checked in /proc/net), in 10000..19999:
# below the default RTP range above and the ephemeral range. Not reserved: good enough for a
# manual run.

port="$(free_port)"
target_port="$(free_port)"
target_media="$(free_port)"
target_ctrl="$(free_port)"
caller_port="$(free_port)"
caller_media="$(free_port)"
caller_ctrl="$(free_port)"
counter_port="$(free_port)"
server="127.0.0.1:$port"

cat >"$tmp/ivm-sipd.toml" <<TOML
[sip]
# No TLS listener: 5061 may be taken (another server, a test run).
tls_listen = "off"

[registrar]
auth_algorithms = ["MD5"]

[media]
rtp_ports = "$RTP_PORTS"

# No SMS in this benchmark (and no SMSC port to clash with another server).
[smsc]
mode = "off"

[calls]
max_calls = ${MAX_CALLS:-2000}

[[trunk]]
name = "callers"
address = "127.0.0.2:5060"
trusted = ["127.0.0.2/32"]

[[trunk]]
name = "target"
address = "127.0.0.1:$target_port"
routes = ['1\\d{3}']
TOML
mkdir -p "$tmp/data"
printf 'SEQUENTIAL\n5551234;7001\n' >"$tmp/callers.inf"

# The RTP counter: counts packets per SSRC and the sequence-number span (loss = span -
# packets), until SIGTERM; then writes one JSON line.
cat >"$tmp/rtp_counter.py" <<'PY'
import json, signal, socket, sys
port, out = int(sys.argv[1]), sys.argv[2]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind(("127.0.0.1", port))
streams = {}  # ssrc -> [packets, first_ext, max_ext, last_seq, cycles]
junk = 0
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
s.settimeout(0.2)
buf = bytearray(2048)
while running:
    try:
        n = s.recv_into(buf)
    except socket.timeout:
        continue
    except InterruptedError:
        continue
    if n < 12 or buf[0] >> 6 != 2:
        junk += 1
        continue
    seq = (buf[2] << 8) | buf[3]
    ssrc = bytes(buf[8:12])
    st = streams.get(ssrc)
    if st is None:
        streams[ssrc] = [1, seq, seq, seq, 0]
        continue
    st[0] += 1
    if seq < st[3] and st[3] - seq > 32768:
        st[4] += 65536
    elif seq > st[3] and seq - st[3] > 32768:
        continue  # a late packet from before a wrap: counted, not extended
    ext = st[4] + seq
    st[3] = seq
    if ext > st[2]:
        st[2] = ext
packets = sum(v[0] for v in streams.values())
span = sum(v[2] - v[1] + 1 for v in streams.values())
with open(out, "w") as f:
    json.dump({"streams": len(streams), "packets": packets, "span": span, "junk": junk}, f)
PY
"$PYTHON" "$tmp/rtp_counter.py" "$counter_port" "$tmp/counter.json" 2>"$tmp/counter.err" &
counter_pid=$!

RUST_LOG="$SERVER_LOG" "$BIN" run --config "$tmp/ivm-sipd.toml" --data-dir "$tmp/data" --listen "$server" \
    </dev/null >"$tmp/ivm-sipd.log" 2>&1 &
server_pid=$!

# Ready when it answers OPTIONS (SIPp options.xml), within 10 s.
ready=""
for _ in $(seq 1 20); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd exited during startup"; }
    if (cd "$tmp" && timeout 5 "$SIPP" "$server" -sf "$here/options.xml" -i 127.0.0.1 -p "$caller_port" \
        -mp "$caller_media" -cp "$caller_ctrl" -m 1 -nostdin -timeout 1s -timeout_error -recv_timeout 500 \
        >/dev/null 2>&1); then
        ready=1
        break
    fi
    sleep 0.5
done
[ -n "$ready" ] || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd does not answer OPTIONS on $server"; }
rss_before_kb="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")"

# The target: answers every call, RTP to the counter, waits for the server's BYE.
(
    cd "$tmp" || exit 2
    exec timeout --kill-after=5 "$((TIME_LIMIT + 60))" "$SIPP" -sf "$here/ivm_target_answer.xml" \
        -i 127.0.0.1 -p "$target_port" -mp "$target_media" -cp "$target_ctrl" -m "$CALLS" \
        -key rtp_port "$counter_port" -key rtp_ip 127.0.0.1 -key pt 0 -key codec PCMU \
        -recv_timeout "$(((HOLD + 60) * 1000))" -timeout "$((TIME_LIMIT + 30))s" -timeout_error -nostdin \
        -trace_stat -stf "$tmp/target-stats.csv" -fd 1 -trace_err -error_file "$tmp/target-errors.log" \
        >"$tmp/target.out" 2>"$tmp/target.err"
) &
target_pid=$!
for _ in $(seq 1 50); do
    grep -q ":$(printf '%04X' "$target_port") " /proc/net/udp && break
    sleep 0.1
done

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }"
    echo "$stat" | awk '{ print $12 + $13 }'
}
now() { date +%s.%N; }

echo "ivm-sipd IVM call benchmark: $CALLS calls at $RATE calls/s, at most $CONCURRENT at once, each streaming" \
    "20 ms PCMU for ${HOLD}s to one target; SIPp time limit ${TIME_LIMIT}s"

cpu0="$(cpu_ticks "$server_pid")"
w0="$(now)"
set +e
(
    cd "$tmp" || exit 2
    TIMEFORMAT='%R %U %S'
    time timeout --kill-after=5 "$((TIME_LIMIT + 30))" "$SIPP" "$server" -sf "$here/ivm_caller.xml" \
        -inf "$tmp/callers.inf" -i 127.0.0.2 -mi 127.0.0.2 -p "$caller_port" -mp "$caller_media" \
        -cp "$caller_ctrl" -r "$RATE" -m "$CALLS" -l "$CONCURRENT" -d "$((HOLD * 1000))" \
        -key audio "$audio,-1,0" -timeout "${TIME_LIMIT}s" -timeout_error -nostdin \
        -trace_stat -stf "$tmp/caller-stats.csv" -fd 1 \
        -trace_err -error_file "$tmp/caller-errors.log" \
        >"$tmp/caller.out" 2>"$tmp/caller.err"
) 2>"$tmp/caller.time" &
caller_pid=$!
wait "$caller_pid"
caller_rc=$?
caller_pid=""
w1="$(now)"
kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd died during the run"; }
cpu1="$(cpu_ticks "$server_pid")"
hwm_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")"
# The target ends when the server has sent every BYE (or on its timeouts).
wait "$target_pid"
target_rc=$?
target_pid=""
set -e
sleep 0.5
# Kernel drops on the counter's socket (last column of /proc/net/udp), before it closes.
counter_drops="$(awk -v p=":$(printf '%04X' "$counter_port")" \
    'NR > 1 && substr($2, length($2) - 4) == p { d += $NF } END { print d + 0 }' /proc/net/udp)"
stop_pid "$counter_pid"
counter_pid=""

[ -s "$tmp/caller-stats.csv" ] || { cat "$tmp/caller.err" >&2; die "SIPp wrote no statistics (exit $caller_rc)"; }

stat_col() { # FILE COLUMN -> last value
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        NF > 1 && c { last = $c } END { print last }' "$1"
}
max_col() { # FILE COLUMN -> max value
    awk -F';' -v col="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        NF > 1 && c && $c + 0 > m { m = $c + 0 } END { print m + 0 }' "$1"
}
epoch_of() { echo "$1" | awk -F'\t' '{ print $3 }'; }
# Seconds from the first row to the first row where OutgoingCall(C) reached the total.
setup_secs="$(awk -F';' -v total="$(stat_col "$tmp/caller-stats.csv" 'OutgoingCall(C)')" '
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "OutgoingCall(C)") c = i; if ($i == "CurrentTime") t = i }; next }
    NF > 1 { split($t, a, "\t"); if (!start) start = a[3]; if ($c + 0 >= total && !done) { done = a[3] } }
    END { if (done && start) printf "%.2f", done - start }' "$tmp/caller-stats.csv")"
ms_of() { echo "$1" | awk -F':' 'NF == 4 { printf "%.1f", ($1 * 3600 + $2 * 60 + $3) * 1000 + $4 / 1000 }'; }

created="$(stat_col "$tmp/caller-stats.csv" 'OutgoingCall(C)')"
ok="$(stat_col "$tmp/caller-stats.csv" 'SuccessfulCall(C)')"
failed="$(stat_col "$tmp/caller-stats.csv" 'FailedCall(C)')"
peak="$(max_col "$tmp/caller-stats.csv" 'CurrentCall')"
unexp="$(stat_col "$tmp/caller-stats.csv" 'FailedUnexpectedMessage(C)')"
trecv="$(stat_col "$tmp/caller-stats.csv" 'FailedTimeoutOnRecv(C)')"
tmaxr="$(stat_col "$tmp/caller-stats.csv" 'FailedMaxUDPRetrans(C)')"
retrans="$(stat_col "$tmp/caller-stats.csv" 'Retransmissions(C)')"
rt_ms="$(ms_of "$(stat_col "$tmp/caller-stats.csv" 'ResponseTime1(C)')")"
t_ok="$(stat_col "$tmp/target-stats.csv" 'SuccessfulCall(C)' 2>/dev/null || echo 0)"
t_failed="$(stat_col "$tmp/target-stats.csv" 'FailedCall(C)' 2>/dev/null || echo 0)"

# The server's own counts, from its log.
recorded="$(grep -h 'IVM message recorded' "$tmp/ivm-sipd.log" | sed -n 's/.* frames=\([0-9]*\).*/\1/p' |
    awk '{ s += $1; n++ } END { printf "%d %d", s, n }')"
streamed="$(grep -h 'target leg ended' "$tmp/ivm-sipd.log" | sed -n 's/.* frames=\([0-9]*\).*/\1/p' |
    awk '{ s += $1; n++ } END { printf "%d %d", s, n }')"
read -r rec_frames rec_msgs <<<"$recorded"
read -r str_frames str_legs <<<"$streamed"
counter="$(cat "$tmp/counter.json" 2>/dev/null || echo '{}')"
c_packets="$(echo "$counter" | sed -n 's/.*"packets": \([0-9]*\).*/\1/p')"
c_span="$(echo "$counter" | sed -n 's/.*"span": \([0-9]*\).*/\1/p')"
c_streams="$(echo "$counter" | sed -n 's/.*"streams": \([0-9]*\).*/\1/p')"
caller_times="$(tail -n 1 "$tmp/caller.time")"
read -r sipp_real sipp_user sipp_sys <<<"$caller_times" || true
warn_lines="$(grep -c -E ' (WARN|ERROR) ' "$tmp/ivm-sipd.log" || true)"
refused="$(grep -c 'new call refused: at max_calls' "$tmp/ivm-sipd.log" || true)"
locked="$(grep -c 'database is locked' "$tmp/ivm-sipd.log" || true)"
# Nothing lost: what the store holds for the calls that were taken (read once the server
# has written everything; it is still running, so read-only and WAL-aware).
sleep 2
store="$(python3 - "$tmp/data/ivm.sqlite" <<'PY'
import sqlite3, sys
c = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True)
q = lambda sql: c.execute(sql).fetchone()[0]
print(q("SELECT count(*) FROM messages"), q("SELECT count(*) FROM messages WHERE state = 'complete'"),
      q("SELECT count(*) FROM deliveries WHERE state = 'delivered'"), q("SELECT count(*) FROM cdrs"))
PY
)" || store="0 0 0 0"
read -r st_msgs st_complete st_delivered st_cdrs <<<"$store"

awk -v created="$created" -v ok="$ok" -v failed="$failed" -v peak="$peak" -v setup="$setup_secs" \
    -v unexp="$unexp" -v trecv="$trecv" -v tmaxr="$tmaxr" -v retrans="$retrans" -v rt="$rt_ms" \
    -v tok="$t_ok" -v tfailed="$t_failed" -v rc="$caller_rc" -v trc="$target_rc" \
    -v recf="${rec_frames:-0}" -v recm="${rec_msgs:-0}" -v strf="${str_frames:-0}" -v strl="${str_legs:-0}" \
    -v cpk="${c_packets:-0}" -v cspan="${c_span:-0}" -v cstr="${c_streams:-0}" -v cdrops="$counter_drops" \
    -v calls="$CALLS" -v hold="$HOLD" -v w0="$w0" -v w1="$w1" -v c0="$cpu0" -v c1="$cpu1" -v tck="$clk_tck" \
    -v hwm="$hwm_kb" -v rss0="$rss_before_kb" -v sreal="${sipp_real:-0}" -v suser="${sipp_user:-0}" \
    -v ssys="${sipp_sys:-0}" -v warns="$warn_lines" -v refused="$refused" -v locked="$locked" \
    -v smsgs="${st_msgs:-0}" -v scomplete="${st_complete:-0}" -v sdelivered="${st_delivered:-0}" \
    -v scdrs="${st_cdrs:-0}" -v maxcalls="${MAX_CALLS:-2000}" 'BEGIN {
    wall = w1 - w0; cpu = (c1 - c0) / tck
    printf "call set-up (callers: SIPp exit %d; target: SIPp exit %d; 0 = every call succeeded)\n", rc, trc
    printf "  calls created            %d", created
    if (setup > 0) printf " in %.1f s = %.1f calls/s set-up rate", setup, created / setup
    printf "\n"
    printf "  peak concurrent calls    %d (SIPp CurrentCall, 1 s samples)\n", peak
    printf "  successful calls         %d at the callers, %d at the target\n", ok, tok
    printf "  failed calls             %d at the callers (unexpected msg %d, recv timeout %d, max UDP retrans %d), %d at the target\n", failed, unexp, trecv, tmaxr, tfailed
    printf "  refused at capacity      %d (503 beyond max_calls = %d)\n", refused, maxcalls
    printf "  SIP retransmissions      %d (callers)\n", retrans
    if (rt != "") printf "  INVITE -> 200 mean       %s ms\n", rt
    printf "RTP (20 ms G.711 packets)\n"
    printf "  sent by the callers      ~%d (nominal: %d calls x %d s x 50/s; SIPp does not count them)\n", calls * hold * 50, calls, hold
    printf "  recorded by ivm-sipd     %d frames in %d messages (its log: IVM message recorded frames=)\n", recf, recm
    printf "  streamed by ivm-sipd     %d frames on %d target legs (its log: target leg ended frames=)\n", strf, strl
    printf "  received at the target   %d packets in %d streams (RTP counter on the target'"'"'s SDP port)\n", cpk, cstr
    if (cspan > 0) printf "  loss server -> target    %.3f %% (%d of %d by sequence gaps)\n", 100 * (cspan - cpk) / cspan, cspan - cpk, cspan
    if (strf > 0) printf "  received / streamed      %.3f %%\n", 100 * cpk / strf
    printf "  counter socket drops     %d (kernel drops at the measuring end: not the server'"'"'s loss)\n", cdrops
    printf "ivm-sipd\n"
    printf "  CPU                      %.1f %% of one core (%.2f s user+sys over %.2f s wall, first call to last BYE)\n", (wall > 0 ? 100 * cpu / wall : 0), cpu, wall
    printf "  peak RSS                 %.1f MiB (VmHWM); %.1f MiB before the calls\n", hwm / 1024, rss0 / 1024
    if (peak > 0) printf "  RSS per concurrent call  %.1f KiB ((VmHWM - RSS before) / peak concurrent calls)\n", (hwm - rss0) / peak
    printf "  WARN/ERROR log lines     %d (%d of them refusals at capacity; \"database is locked\": %d)\n", warns, refused, locked
    printf "store (nothing lost: every call taken is a complete message, a delivery and 2 CDR rows)\n"
    printf "  messages                 %d (%d complete) for %d calls taken\n", smsgs, scomplete, ok
    printf "  deliveries delivered     %d\n", sdelivered
    printf "  CDR rows                 %d (expected %d)\n", scdrs, 2 * ok
    lost = (ok - scomplete) + (ok - sdelivered) + (2 * ok - scdrs)
    printf "  lost                     %d%s\n", lost, (lost == 0 ? "" : "  <-- rows missing")
    if (sreal > 0) printf "SIPp callers CPU           %.1f %% of one core (near 100 %% = the load generator is the bottleneck)\n", 100 * (suser + ssys) / sreal
}'

if [ "$caller_rc" -ne 0 ] && [ -s "$tmp/caller-errors.log" ]; then
    echo "first SIPp caller errors:" >&2
    grep -v '^$' "$tmp/caller-errors.log" | head -n 10 >&2
fi
if [ "$caller_rc" -eq 0 ] && [ "$target_rc" -eq 0 ]; then exit 0; else exit 1; fi
