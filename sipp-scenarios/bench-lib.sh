# bench-lib.sh - shell helpers shared by the benchmark scripts (sourced, not run):
#   is_uint VALUE          - true for a non-negative integer
#   stop_pid PID [SIGNAL]  - signal a process (TERM by default), wait up to 5 s, then KILL
#   free_port              - a port no UDP/TCP socket uses (checked in /proc/net), with the
#                            next three kept free too; range FREE_PORT_MIN .. +FREE_PORT_SPAN.
# Each script defines `die` before sourcing this file.

is_uint() { case "$1" in '' | *[!0-9]*) return 1 ;; *) return 0 ;; esac; }

stop_pid() {
    local pid="$1" sig="${2:-TERM}"
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill "-$sig" "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

used_ports=" "
free_port() {
    local p hex
    for _ in $(seq 1 2000); do
        p=$((${FREE_PORT_MIN:-20000} + RANDOM % ${FREE_PORT_SPAN:-12000}))
        case "$used_ports" in *" $p "* | *" $((p + 1)) "* | *" $((p + 2)) "*) continue ;; esac
        hex="$(printf '%04X' "$p")"
        if ! grep -q ":$hex " /proc/net/udp /proc/net/tcp /proc/net/udp6 /proc/net/tcp6 2>/dev/null; then
            used_ports="$used_ports$p $((p + 1)) $((p + 2)) $((p + 3)) "
            echo "$p"
            return 0
        fi
    done
    die "no free port found"
}
