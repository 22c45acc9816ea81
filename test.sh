#!/usr/bin/env bash
# Build ivm-sipd and run every test of the workspace, end-to-end tests included.
#
#   ./test.sh                      # all tests
#   ./test.sh -p ivm-e2e           # extra arguments go to `cargo test`
#   ./test.sh -- --nocapture       # e.g. to see the RFC 4475 result table
#
# On a fresh Debian/Ubuntu machine it first installs what the tests need and
# is missing: SIPp (package sip-tester), baresip, linphonec, Kamailio, sipvicious, a C compiler (bundled SQLite), npm and pip, then
# the SMPP peers node-smpp and smpplib (ivm-smsc/tests/install-peers.sh).
# A Rust toolchain (cargo) is a prerequisite.
# Environment: IVM_SIPD_BIN (server binary to test), CARGO_TARGET_DIR,
# SIPP (sipp binary), RUST_LOG (server log level in the tests).
set -euo pipefail
cd "$(dirname "$0")"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "test.sh: need root (or sudo) to run: $*" >&2
        exit 1
    fi
}

packages=()
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
# A real phone for the real-UA tests (tests/tests/baresip.rs).
command -v baresip >/dev/null 2>&1 || packages+=(baresip)
# The second real phone (tests/tests/linphone.rs), in a network namespace made with iproute2.
command -v linphonec >/dev/null 2>&1 || packages+=(linphone-cli)
command -v ip >/dev/null 2>&1 || packages+=(iproute2)
# The carrier proxy in front of IVM (tests/tests/kamailio.rs runs deploy/kamailio/ivm.cfg).
command -v kamailio >/dev/null 2>&1 || packages+=(kamailio)
# The attacker's tools of tests/tests/security.rs (svcrack, svwar).
command -v svcrack >/dev/null 2>&1 || packages+=(sipvicious)
command -v cc >/dev/null 2>&1 || packages+=(build-essential)
# The third-party SMPP peers of the ivm-smsc tests: node-smpp (npm) and smpplib (PyPI).
command -v npm >/dev/null 2>&1 || packages+=(npm)
python3 -m pip --version >/dev/null 2>&1 || packages+=(python3-pip)
if [ "${#packages[@]}" -gt 0 ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "test.sh: missing ${packages[*]} and no apt-get to install them" >&2
        exit 1
    fi
    echo "test.sh: installing ${packages[*]}" >&2
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [ -x "$HOME/.cargo/bin/cargo" ]; then
        export PATH="$HOME/.cargo/bin:$PATH"
    else
        echo "test.sh: no cargo found: install a Rust toolchain (rustup) first" >&2
        exit 1
    fi
fi

# The layering: no import circle in any crate, no import up a floor of ivm-sipd.
python3 .ci/import-cycles.py
ivm-smsc/tests/install-peers.sh
cargo build --release -p ivm-sipd -p ivm-smsc --bins
# The SMSC-outage test of ivm-smsc keeps its SMSC down this long (the issue's 30 s).
export IVM_SMSC_OUTAGE_SECS="${IVM_SMSC_OUTAGE_SECS:-30}"
cargo test --release --workspace "$@"
