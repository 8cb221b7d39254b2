r"""Ablation: padding -- "VALID" (no padding, maps shrink by F - 1 per conv) vs "SAME".

With VALID the 28x28 input goes 26, 24, pool 12, 10, 8, pool 4: the FC layer sees a 4x4x64
map instead of 7x7x64, so it has 3x fewer weights and the border pixels count less.

Commands (resumable)::

    .venv/bin/python experiments/ablate.py --config=configs/ablations/padding.py:quick \
        --workdir=workdirs/ablations/padding_quick
    .venv/bin/python experiments/ablate.py --config=configs/ablations/padding.py \
        --workdir=workdirs/ablations/padding

Expected time on the 2-core CPU: quick about 1.5 min per run (6 runs), full about 5-7 min.
"""

from configs.ablations import common


def get_config(arg=None):
    variants = {"same": {"model": {"padding": "SAME"}}, "valid": {"model": {"padding": "VALID"}}}
    return common.ablation("padding", variants, arg)
