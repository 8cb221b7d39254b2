#!/usr/bin/env bash
# README command 1: install (if needed), then train the default network on Fashion-MNIST
# offline and print its test accuracy. Extra arguments go to experiments/train.py,
# e.g. `bash scripts/main.sh --config.num_epochs=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python experiments/train.py --config=configs/default.py \
  --workdir="${WORKDIR:-workdirs/default}" "$@"
