r"""Ablation: kernel size F of every convolution -- 3, 5, 7 ("SAME" padding P = (F - 1) / 2).

Parameters and FLOPs grow as F^2; the receptive field grows by F - 1 per conv.

Commands (resumable)::

    .venv/bin/python experiments/ablate.py --config=configs/ablations/kernel_size.py:quick \
        --workdir=workdirs/ablations/kernel_size_quick
    .venv/bin/python experiments/ablate.py --config=configs/ablations/kernel_size.py \
        --workdir=workdirs/ablations/kernel_size

Expected time on the 2-core CPU: quick about 1.5 min (F=3) to 6 min (F=7) per run, 9 runs;
full about 3x that.
"""

from configs.ablations import common


def get_config(arg=None):
    variants = {f"kernel_{k}": {"model": {"kernel_size": k}} for k in (3, 5, 7)}
    return common.ablation("kernel_size", variants, arg)
