r"""Successive halving against the full grid: learning rate x weight decay x label smoothing,
16 members in ONE population of the default recipe (3 epochs, 5000 validation images).

Presets (``--config=configs/sweeps/halving.py:<preset>``):

- none: the full grid, every member trained for 3 epochs (48 member-epochs);
- ``"halving"``: the same 16 members with successive halving inside the population: at a
  quarter epoch the best 4 of 16 train on, after epoch 1 the best 1 of 4 finishes the 3 epochs
  (16 x 0.25 + 4 x 0.75 + 1 x 2 = 9 member-epochs, 19% of the grid); the stopped members leave
  the stacked state, so the later steps run on fewer members;
- ``"smoke"`` / ``"halving_smoke"``: the same on the smoke data (seconds to minutes, tests).

Commands (each pinned to its own core, side by side, as recorded in results/sweeps/halving/)::

    CONVJAX_CPU_DEVICES=1 taskset -c 0 .venv/bin/python experiments/sweep.py \
        --config=configs/sweeps/halving.py --workdir=workdirs/sweeps/grid16
    CONVJAX_CPU_DEVICES=1 taskset -c 1 .venv/bin/python experiments/sweep.py \
        --config=configs/sweeps/halving.py:halving --workdir=workdirs/sweeps/halving16

Expected time on one core of the 2-core CPU: the grid about 2-3 h, halving about 30-40 min.
"""

from configs.sweeps import common

PRESETS = (None, "", "halving", "smoke", "halving_smoke")


def get_config(arg=None):
    if arg not in PRESETS:
        raise ValueError(
            f"sweep config: arg={arg!r} is not a preset; use none, 'halving', 'smoke' or "
            "'halving_smoke' (--config=configs/sweeps/halving.py:halving)."
        )
    space = [
        ("learning_rate", (0.025, 0.05, 0.1, 0.2)),
        ("weight_decay", (5e-5, 5e-4)),
        ("label_smoothing", (0.0, 0.1)),
    ]
    c = common.sweep("halving", space, "smoke" if arg and "smoke" in arg else None)
    if arg and arg.startswith("halving"):
        c.halving = {"rung_epochs": (0.25, 1.0), "reduction_factor": 4}
    return c
