r"""Ablation: depth -- 1, 2 or 3 stages of (conv-conv-pool), widths 32 / 32-64 / 32-64-128.

Each stage halves the map (28 -> 14 -> 7 -> 3) and doubles the width; more stages give a
larger receptive field and fewer FC weights (the FC layer sees a smaller map).

Commands (resumable)::

    .venv/bin/python experiments/ablate.py --config=configs/ablations/depth.py:quick \
        --workdir=workdirs/ablations/depth_quick
    .venv/bin/python experiments/ablate.py --config=configs/ablations/depth.py \
        --workdir=workdirs/ablations/depth

Expected time on the 2-core CPU: quick about 1-2 min per run (9 runs), full about 4-8 min.
"""

from configs.ablations import common


def get_config(arg=None):
    variants = {
        "stages_1": {"model": {"widths": (32,)}},
        "stages_2": {"model": {"widths": (32, 64)}},
        "stages_3": {"model": {"widths": (32, 64, 128)}},
    }
    return common.ablation("depth", variants, arg)
