# netwarden: `make demo` (first alerts on a fresh machine), `make test`, `make check`.
.PHONY: demo test check lint typecheck setup setup-dev

demo:
	bash scripts/demo.sh

test:
	bash scripts/test.sh

check: setup-dev lint typecheck
	.venv/bin/python -m pytest

lint:
	.venv/bin/ruff check daemon training tests

typecheck:
	.venv/bin/mypy

setup:
	bash scripts/setup.sh

setup-dev:
	bash scripts/setup.sh --dev
