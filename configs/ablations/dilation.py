r"""Ablation: dilation of every convolution -- 1, 2, 4.

A 3x3 kernel with dilation d covers ``d * (3 - 1) + 1`` pixels (3, 5, 9) with the same 9
weights: the receptive field grows, the parameter count does not. "SAME" padding keeps the
map sizes, so FLOPs stay equal too. Everything else is ``configs/default.py``.

Commands (resumable)::

    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py:quick \
        --workdir=workdirs/ablations/dilation_quick
    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py \
        --workdir=workdirs/ablations/dilation
    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py:smoke \
        --workdir=/tmp/dilation_smoke

Expected time on the 2-core CPU: quick about 1.5-4 min per run (9 runs; dilated convolutions
run slower on XLA's CPU backend), full about 5-10 min per run, smoke about 15 s per run.
Expected accuracy: see results/ablations/dilation.md.
"""

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "ablation_common", Path(__file__).with_name("common.py")
)
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)


def get_config(arg=None):
    variants = {f"dilation_{d}": {"model": {"dilation": d}} for d in (1, 2, 4)}
    return common.ablation("dilation", variants, arg)
