r"""Ablation: dilation of every convolution -- 1, 2, 4.

A 3x3 kernel with dilation d covers ``d * (3 - 1) + 1`` pixels (3, 5, 9) with the same 9
weights: the receptive field grows, the parameter count does not. "SAME" padding keeps the
map sizes, so FLOPs stay equal too. Everything else is ``configs/default.py``.

Commands (resumable)::

    # full recipe, what results/ablations/dilation/ reports (3 epochs on 60k images, 9 runs)
    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py \
        --workdir=workdirs/ablations/dilation
    # reduced budget, one epoch: results/ablations/dilation_quick_1ep/
    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py:quick \
        --config.base.num_epochs=1 --workdir=workdirs/ablations/dilation_quick_1ep
    .venv/bin/python experiments/ablate.py --config=configs/ablations/dilation.py:smoke \
        --workdir=/tmp/dilation_smoke

``dilation_1`` is ``configs/default.py`` itself, the same run as the pooling ablation's
``max``: copying ``runs/max/seed_*`` of a finished pooling workdir into ``runs/dilation_1/``
saves its three runs (the ablation reads finished runs back).
Expected time on the 2-core CPU: full about 6-7 min per run on one core; smoke about 15 s
per run. Accuracy: results/ablations/README.md.
"""

from configs.ablations import common


def get_config(arg=None):
    variants = {f"dilation_{d}": {"model": {"dilation": d}} for d in (1, 2, 4)}
    return common.ablation("dilation", variants, arg)
