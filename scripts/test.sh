#!/usr/bin/env bash
# README command 2: install (if needed) and run lint, the documentation build (site/), the
# packaging check (the wheel in a fresh venv, scripts/check_wheel.sh) and the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --test
.venv/bin/ruff check .
.venv/bin/ruff format --check .
# (not --quiet: it hides the warnings --strict counts)
PYTHONPATH=. NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict
bash scripts/check_wheel.sh
.venv/bin/python -m pytest -n 2 -q "$@"
