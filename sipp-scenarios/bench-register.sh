#!/usr/bin/env bash
# bench-register.sh - REGISTER throughput benchmark of ivm-sipd with SIPp.
#
# NOT a test: it prints figures. It builds nothing; build first with
#   cargo build --release -p ivm-sipd
# It starts ivm-sipd on a free 127.0.0.1 port with a temporary data directory
# and an MD5-only config, imports USERS subscribers with `subscriber import`,
# then runs SIPp's register_auth.xml (REGISTER -> 401 -> REGISTER with digest
# -> 200: one "call" = two REGISTER transactions) at RATE calls/s for CALLS
# calls, at most LIMIT calls in flight, bounded by TIME_LIMIT seconds.
# Afterwards it prints: successful calls/s (and REGISTER transactions/s),
# failed calls, retransmissions, mean call time, the server's CPU use
# (utime+stime delta from /proc/PID/stat over the wall time of the SIPp run)
# and its peak RSS (VmHWM from /proc/PID/status).
# Everything (server, SIPp, temp dir) is cleaned up on exit.
#
# Knobs (environment variables):
#   USERS=10000          subscribers imported and cycled through by SIPp
#   CALLS=100000         calls to make (SIPp -m)
#   RATE=5000            target call rate, calls/s (SIPp -r)
#   RATE_INCREASE=       if set: raise the rate by this much every
#   RATE_INTERVAL=5        RATE_INTERVAL seconds (SIPp -rate_increase/-rate_interval)
#   RATE_MAX=              ... up to RATE_MAX (SIPp -rate_max; with -no_rate_quit)
#   LIMIT=2000           max simultaneous calls (SIPp -l)
#   TIME_LIMIT=120       SIPp global timeout in seconds (-timeout, -timeout_error);
#                        the whole SIPp run is also killed 30 s after that
#   TRANSPORT=u1         SIPp transport: u1 (UDP, one socket), un (UDP, one
#                        socket per call), t1 (TCP, one connection), tn (TCP,
#                        one connection per call)
#   SERVER_LOG=warn      RUST_LOG for ivm-sipd during the run
#   IVM_SIPD_BIN=        server binary (default: $CARGO_TARGET_DIR or
#                        <repo>/target, then release/ivm-sipd)
#   SIPP=sipp            sipp binary
#   KEEP=                if non-empty, keep the temp dir (config, logs, SIPp
#                        statistics) and print where it is
#
# Exit status: 0 when every call succeeded, 1 when some failed, 2 on setup
# errors.
# Example: RATE=2000 CALLS=20000 sipp-scenarios/bench-register.sh
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

USERS="${USERS:-10000}"
CALLS="${CALLS:-100000}"
RATE="${RATE:-5000}"
RATE_INCREASE="${RATE_INCREASE:-}"
RATE_INTERVAL="${RATE_INTERVAL:-5}"
RATE_MAX="${RATE_MAX:-}"
LIMIT="${LIMIT:-2000}"
TIME_LIMIT="${TIME_LIMIT:-120}"
TRANSPORT="${TRANSPORT:-u1}"
SERVER_LOG="${SERVER_LOG:-warn}"
SIPP="${SIPP:-sipp}"
KEEP="${KEEP:-}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
BIN="${IVM_SIPD_BIN:-$target_dir/release/ivm-sipd}"

die() { echo "bench-register: $*" >&2; exit 2; }
# shellcheck source=bench-lib.sh
FREE_PORT_MIN=20000 FREE_PORT_SPAN=12000
. "$(dirname "$0")/bench-lib.sh"

for v in USERS CALLS RATE LIMIT TIME_LIMIT RATE_INTERVAL; do
    is_uint "${!v}" || die "$v must be a non-negative integer, got '${!v}'"
done
[ "$USERS" -ge 1 ] || die "USERS must be at least 1"
[ -z "$RATE_INCREASE" ] || is_uint "$RATE_INCREASE" || die "RATE_INCREASE must be an integer"
[ -z "$RATE_MAX" ] || is_uint "$RATE_MAX" || die "RATE_MAX must be an integer"
case "$TRANSPORT" in u1 | un | t1 | tn) ;; *) die "TRANSPORT must be u1, un, t1 or tn" ;; esac
[ -x "$BIN" ] || die "no server binary at $BIN (cargo build --release -p ivm-sipd, or set IVM_SIPD_BIN)"
command -v "$SIPP" >/dev/null 2>&1 || die "sipp not found (apt-get install sip-tester, or set SIPP)"
[ -r /proc/self/stat ] || die "needs Linux /proc"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/ivm-bench-XXXXXX")"
server_pid=""
sipp_pid=""

cleanup() {
    local rc=$?
    stop_pid "$sipp_pid"
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

# A port on 127.0.0.1 that no UDP/TCP socket uses (checked in /proc/net),
# below the ephemeral range. Not reserved: good enough for a manual run.

port="$(free_port)"
sipp_port="$(free_port)"
media_port="$(free_port)"
ctrl_port="$(free_port)"
server="127.0.0.1:$port"

cat >"$tmp/ivm-sipd.toml" <<TOML
[sip]
realm = "ivm.local"
# No TLS listener: 5061 may be taken (another server, a test run).
tls_listen = "off"

[registrar]
auth_algorithms = ["MD5"]

# No SMS in this benchmark (and no SMSC port to clash with another server).
[smsc]
mode = "off"

# SIPp is a load generator, not a flood: no per-source limits for it.
[security]
exempt = ["127.0.0.1"]
TOML
mkdir -p "$tmp/data"

# Subscribers: numbers 100000.. with password pw-<number>.
awk -v n="$USERS" 'BEGIN {
    print "number,password,name,msisdn,pin" > "'"$tmp/subscribers.csv"'"
    print "SEQUENTIAL" > "'"$tmp/users.inf"'"
    for (i = 0; i < n; i++) {
        num = 100000 + i
        printf "%d,pw-%d,,,\n", num, num > "'"$tmp/subscribers.csv"'"
        printf "%d;pw-%d\n", num, num > "'"$tmp/users.inf"'"
    }
}'

admin() { RUST_LOG=warn "$BIN" "$@" --config "$tmp/ivm-sipd.toml" --data-dir "$tmp/data"; }

now() { date +%s.%N; }
t0="$(now)"
admin subscriber import "$tmp/subscribers.csv" >"$tmp/import.out" 2>&1 || {
    cat "$tmp/import.out" >&2
    die "subscriber import failed"
}
t1="$(now)"
import_secs="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')"

RUST_LOG="$SERVER_LOG" "$BIN" run --config "$tmp/ivm-sipd.toml" --data-dir "$tmp/data" --listen "$server" \
    </dev/null >"$tmp/ivm-sipd.log" 2>&1 &
server_pid=$!

# Ready when it answers OPTIONS (SIPp options.xml), within 10 s.
ready=""
for _ in $(seq 1 20); do
    kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd exited during startup"; }
    if (cd "$tmp" && timeout 5 "$SIPP" "$server" -sf "$here/options.xml" -i 127.0.0.1 -p "$sipp_port" \
        -mp "$media_port" -cp "$ctrl_port" -m 1 -nostdin -timeout 1s -timeout_error -recv_timeout 500 \
        >/dev/null 2>&1); then
        ready=1
        break
    fi
    sleep 0.5
done
[ -n "$ready" ] || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd does not answer OPTIONS on $server"; }

clk_tck="$(getconf CLK_TCK)"
cpu_ticks() {
    # utime (14) + stime (15); the command name (2) may contain spaces, so cut after ')'.
    local stat
    stat="$(cat "/proc/$1/stat")"
    stat="${stat##*) }"
    # now field 1 is state (3); utime is field 12, stime field 13
    echo "$stat" | awk '{ print $12 + $13 }'
}

rate_args=()
if [ -n "$RATE_INCREASE" ]; then
    rate_args+=(-rate_increase "$RATE_INCREASE" -rate_interval "${RATE_INTERVAL}s" -no_rate_quit)
    [ -z "$RATE_MAX" ] || rate_args+=(-rate_max "$RATE_MAX")
fi

echo "ivm-sipd REGISTER benchmark: $CALLS calls, target $RATE calls/s${RATE_INCREASE:+ (+$RATE_INCREASE every ${RATE_INTERVAL}s${RATE_MAX:+ up to $RATE_MAX})}, $USERS subscribers, transport $TRANSPORT, at most $LIMIT calls in flight, time limit ${TIME_LIMIT}s"

# System-wide UDP receive-buffer drops (/proc/net/snmp "Udp: ... RcvbufErrors"):
# on an otherwise idle machine, the datagrams the kernel dropped because a
# socket's receive queue was full (ivm-sipd's or SIPp's).
udp_rcvbuf_errors() {
    awk '$1 == "Udp:" { if (!h) { for (i = 2; i <= NF; i++) col[$i] = i; h = 1 } else { print $(col["RcvbufErrors"]) } }' /proc/net/snmp
}
drops0="$(udp_rcvbuf_errors)"
cpu0="$(cpu_ticks "$server_pid")"
w0="$(now)"
set +e
(
    cd "$tmp" || exit 2
    TIMEFORMAT='%R %U %S'
    time timeout --kill-after=5 "$((TIME_LIMIT + 30))" "$SIPP" "$server" -sf "$here/register_auth.xml" \
        -inf "$tmp/users.inf" -i 127.0.0.1 -p "$sipp_port" -mp "$media_port" -cp "$ctrl_port" \
        -t "$TRANSPORT" -r "$RATE" -m "$CALLS" -l "$LIMIT" "${rate_args[@]}" \
        -timeout "${TIME_LIMIT}s" -timeout_error -nostdin \
        -trace_stat -stf "$tmp/stats.csv" -fd 1 \
        -trace_screen -screen_file "$tmp/screen.log" \
        -trace_err -error_file "$tmp/errors.log" \
        >"$tmp/sipp.out" 2>"$tmp/sipp.err"
) 2>"$tmp/sipp.time" &
sipp_pid=$!
wait "$sipp_pid"
sipp_rc=$?
sipp_pid=""
set -e
w1="$(now)"
kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$tmp/ivm-sipd.log" >&2; die "ivm-sipd died during the run"; }
cpu1="$(cpu_ticks "$server_pid")"
hwm_kb="$(awk '/^VmHWM:/ { print $2 }' "/proc/$server_pid/status")"
drops1="$(udp_rcvbuf_errors)"
# Per-socket drop counters (last column of /proc/net/udp) for ivm-sipd's
# UDP socket; SIPp's socket is gone by now.
socket_drops() {
    local hex
    hex="$(printf '%04X' "$1")"
    awk -v p=":$hex" 'NR > 1 && substr($2, length($2) - 4) == p { d += $NF } END { print d + 0 }' /proc/net/udp
}
server_drops="$(socket_drops "$port")"

[ -s "$tmp/stats.csv" ] || {
    cat "$tmp/sipp.err" >&2
    die "SIPp wrote no statistics (exit $sipp_rc)"
}

# Last row of SIPp's statistics, by column name.
stat_col() {
    awk -F';' -v col="$1" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        NF > 1 { last = $c } END { print last }' "$tmp/stats.csv"
}
epoch_of() { echo "$1" | awk -F'\t' '{ print $3 }'; }
# "HH:MM:SS:uuuuuu" -> milliseconds
ms_of() { echo "$1" | awk -F':' 'NF == 4 { printf "%.2f", ($1 * 3600 + $2 * 60 + $3) * 1000 + $4 / 1000 }'; }

ok="$(stat_col 'SuccessfulCall(C)')"
failed="$(stat_col 'FailedCall(C)')"
retrans="$(stat_col 'Retransmissions(C)')"
created="$(stat_col 'OutgoingCall(C)')"
t_unexp="$(stat_col 'FailedUnexpectedMessage(C)')"
t_recv="$(stat_col 'FailedTimeoutOnRecv(C)')"
t_maxr="$(stat_col 'FailedMaxUDPRetrans(C)')"
t_regx="$(stat_col 'FailedRegexpDoesntMatch(C)')"
start_e="$(epoch_of "$(stat_col StartTime)")"
end_e="$(epoch_of "$(stat_col CurrentTime)")"
rt_ms="$(ms_of "$(stat_col 'ResponseTime1(C)')")"
# Call-time histogram (ResponseTimeRepartition1_<N columns; SIPp's mean is
# in whole milliseconds, often 0 on loopback).
rt_hist="$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /^ResponseTimeRepartition1_/) { c[i] = substr($i, 26) }; next }
    NF > 1 { for (i in c) v[i] = $i }
    END { total = 0; for (i in c) total += v[i]; if (total == 0) exit
          n = 0; for (i in c) idx[++n] = i + 0
          for (a = 1; a <= n; a++) for (b = a + 1; b <= n; b++) if (idx[b] < idx[a]) { t = idx[a]; idx[a] = idx[b]; idx[b] = t }
          out = ""; for (k = 1; k <= n; k++) { i = idx[k]; if (v[i] > 0) out = out sprintf("%s%s ms: %.1f%%", (out == "" ? "" : ", "), c[i], 100 * v[i] / total) }
          print out }' "$tmp/stats.csv")"
# `time` output is the last line of the file
sipp_times="$(tail -n 1 "$tmp/sipp.time")"
read -r sipp_real sipp_user sipp_sys <<<"$sipp_times" || true

awk -v ok="$ok" -v failed="$failed" -v retrans="$retrans" -v created="$created" \
    -v s="$start_e" -v e="$end_e" -v w0="$w0" -v w1="$w1" -v c0="$cpu0" -v c1="$cpu1" -v tck="$clk_tck" \
    -v hwm="$hwm_kb" -v rt="$rt_ms" -v hist="$rt_hist" -v imp="$import_secs" -v users="$USERS" -v rc="$sipp_rc" \
    -v unexp="$t_unexp" -v trecv="$t_recv" -v tmaxr="$t_maxr" -v tregx="$t_regx" \
    -v drops="$(( ${drops1:-0} - ${drops0:-0} ))" -v sdrops="$server_drops" -v sreal="${sipp_real:-0}" -v suser="${sipp_user:-0}" -v ssys="${sipp_sys:-0}" 'BEGIN {
    el = e - s; if (el <= 0) el = w1 - w0
    wall = w1 - w0
    cpu = (c1 - c0) / tck
    printf "results (SIPp exit code %d; 0 = every call succeeded)\n", rc
    printf "  calls created            %d in %.2f s\n", created, el
    printf "  successful calls         %d  = %.1f calls/s = %.1f REGISTER transactions/s\n", ok, ok / el, 2 * ok / el
    printf "  failed calls             %d  (unexpected msg %d, recv timeout %d, max UDP retrans %d, regexp %d)\n", failed, unexp, trecv, tmaxr, tregx
    printf "  retransmissions          %d\n", retrans
    printf "  UDP receive-buffer drops %d (system-wide, /proc/net/snmp RcvbufErrors), %d of them on ivm-sipd'"'"'s socket\n", drops, sdrops
    if (rt != "") printf "  mean call time           %s ms (REGISTER, 401, REGISTER, 200; SIPp rounds to whole ms)\n", rt
    if (hist != "") printf "  call time distribution   %s\n", hist
    printf "  ivm-sipd CPU             %.1f %% of one core (%.2f s user+sys over %.2f s wall)\n", (wall > 0 ? 100 * cpu / wall : 0), cpu, wall
    printf "  ivm-sipd peak RSS        %.1f MiB (VmHWM)\n", hwm / 1024
    if (sreal > 0) printf "  SIPp CPU                 %.1f %% of one core (load generator; near 100 %% = SIPp is the bottleneck)\n", 100 * (suser + ssys) / sreal
    printf "  subscriber import        %d subscribers in %s s\n", users, imp
}'

if [ "$sipp_rc" -ne 0 ] && [ -s "$tmp/errors.log" ]; then
    echo "first SIPp errors:" >&2
    grep -v '^$' "$tmp/errors.log" | head -n 10 >&2
fi
if [ "$sipp_rc" -eq 0 ]; then exit 0; else exit 1; fi
