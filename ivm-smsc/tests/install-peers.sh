#!/usr/bin/env bash
# Installs the third-party SMPP peers the ivm-smsc tests talk to:
#   - node-smpp (npm `smpp`, pinned by tests/smsc/package-lock.json) into tests/smsc/node_modules
#   - smpplib (PyPI) for the current user
# Safe to run repeatedly; prints what it did. Exits non-zero only when an install fails.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

if command -v npm >/dev/null 2>&1; then
    if [ -f "$here/smsc/node_modules/smpp/package.json" ]; then
        echo "node-smpp: already installed in $here/smsc/node_modules"
    else
        echo "node-smpp: npm ci in $here/smsc"
        (cd "$here/smsc" && npm ci --no-audit --no-fund --loglevel=error)
    fi
else
    echo "WARNING: npm not found; the node-smpp interop test will be skipped" >&2
fi

if command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1; then
    if python3 -c 'import smpplib' >/dev/null 2>&1; then
        echo "smpplib: already installed"
    else
        echo "smpplib: pip install --user smpplib==2.2.4"
        python3 -m pip install --user --quiet 'smpplib==2.2.4' ||
            python3 -m pip install --user --quiet --break-system-packages 'smpplib==2.2.4'
    fi
else
    echo "WARNING: python3/pip not found; the smpplib interop test will be skipped" >&2
fi
