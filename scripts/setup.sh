#!/usr/bin/env bash
# Create .venv (from scratch if needed) and install netwarden into it, editable.
#   bash scripts/setup.sh          runtime only (enough for `netwarden demo`)
#   bash scripts/setup.sh --dev    also the dev and train extras (tests, lint, types, torch),
#                                  and, when root on Debian, the system tools the tests use
set -euo pipefail
cd "$(dirname "$0")/.."

dev=0
[ "${1:-}" = "--dev" ] && dev=1

if [ "$dev" = 1 ]; then
    # Debian packages some tests drive: tshark (pcap cross-checks), prometheus/promtool (rule
    # checks), iproute2 (network namespaces), systemd (systemd-analyze verify).
    missing=()
    command -v tshark >/dev/null 2>&1 || missing+=(tshark)
    command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
    command -v ip >/dev/null 2>&1 || missing+=(iproute2)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -q
            apt-get install -y -q --no-install-recommends "${missing[@]}"
        else
            echo "setup: not installing ${missing[*]} (needs root and apt-get);" \
                 "the tests that need them will skip" >&2
        fi
    fi
fi

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
if [ "$dev" = 1 ]; then
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e '.[dev,train]'
else
    .venv/bin/pip install -q -e .
fi
# Byte-compile the editable package once, as a regular install does: where
# PYTHONDONTWRITEBYTECODE is set nothing caches it, and every start compiles the ~50 modules a
# replay imports again.
.venv/bin/python -m compileall -q daemon training >/dev/null
