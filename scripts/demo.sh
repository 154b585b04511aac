#!/usr/bin/env bash
# Fresh machine to first alerts: set up .venv, then generate attack traffic and detect it.
# Extra arguments go to `netwarden demo` (e.g. --alerts-out alerts.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/netwarden demo "$@"
