#!/usr/bin/env bash
# Install everything the tests need (see scripts/setup.sh --dev), then run pytest.
# Extra arguments go to pytest (e.g. tests/test_config.py -q).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
exec .venv/bin/python -m pytest "$@"
