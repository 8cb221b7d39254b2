#!/usr/bin/env bash
# Installs everything convjax needs on a fresh machine, idempotently:
#   - a virtual environment in .venv with the pinned packages (requirements*.txt),
#   - Debian's dataset-fashion-mnist package (the offline Fashion-MNIST files).
# Usage: bash scripts/install.sh [--test]   (--test adds PyTorch CPU, pytest, ruff, the
#   documentation tools of requirements-docs.txt and Debian's chromium for the site test)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.convjax-installed
want="$(cat requirements.txt pyproject.toml)"
if [ "${1:-}" = "--test" ]; then
  want="$want$(cat requirements-test.txt requirements-docs.txt)"
  stamp=.venv/.convjax-installed-test
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  reqs=(-r requirements.txt)
  if [ "${1:-}" = "--test" ]; then reqs+=(-r requirements-test.txt -r requirements-docs.txt); fi
  .venv/bin/pip install -q "${reqs[@]}"
  .venv/bin/pip install -q --no-deps -e .
  printf '%s' "$want" > "$stamp"
fi
debs=()
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  debs+=(dataset-fashion-mnist)
fi
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null; then
  debs+=(chromium)  # tests/test_docs.py loads the built site in headless Chromium
fi
if [ ${#debs[@]} -gt 0 ]; then
  SUDO=""
  if [ "$(id -u)" != "0" ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${debs[@]}"
fi
