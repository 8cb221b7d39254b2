r"""Ablation: how the network downsamples -- max, average, L2 pooling, or no pooling at all.

"none" replaces each 2x2 pool by a stride-2 3x3 convolution (the all-convolutional net of
Springenberg et al. 2014: "ConvPool" form, an extra conv), everything else is
``configs/default.py`` (PatternCNN conv32-conv32-pool-conv64-conv64-pool-fc256, batch norm,
SGD Nesterov, one-cycle, label smoothing 0.1).

Commands (resumable: rerun the same command after an interruption)::

    # full recipe, what results/ablations/pooling/ reports (3 epochs on 60k images,
    # 10k test images, 3 seeds, 12 runs)
    .venv/bin/python experiments/ablate.py --config=configs/ablations/pooling.py \
        --workdir=workdirs/ablations/pooling
    # reduced budget, results/ablations/pooling_quick/ (2 epochs on 4k images, 2k test images)
    .venv/bin/python experiments/ablate.py --config=configs/ablations/pooling.py:quick \
        --workdir=workdirs/ablations/pooling_quick
    # seconds (tests)
    .venv/bin/python experiments/ablate.py --config=configs/ablations/pooling.py:smoke \
        --workdir=/tmp/pooling_smoke

Expected time on the 2-core CPU: full about 6-7 min per run on one core (two ablations side
by side, each pinned to a core with ``taskset -c``; about 1.3 h for 12 runs); quick about
1.5-3 min per run; smoke about 15 s per run. Accuracy: results/ablations/README.md.
"""

from configs.ablations import common


def get_config(arg=None):
    variants = {
        "max": {"model": {"pool": "max"}},
        "avg": {"model": {"pool": "avg"}},
        "l2": {"model": {"pool": "l2"}},
        "none_stride2_conv": {"model": {"pool": "none", "downsample": "conv"}},
    }
    return common.ablation("pooling", variants, arg)
