r"""Population-based training against the same population with fixed hyperparameters, at
equal compute: 8 members of the default recipe (3 epochs, 5000 validation images) whose
learning rate and weight decay are drawn at random (log-uniform).

Presets (``--config=configs/sweeps/pbt.py:<preset>``):

- none: the 8 members train with their drawn hyperparameters fixed (the best of them is the
  "best fixed schedule" the comparison uses);
- ``"pbt"``: every half epoch the worst quarter (2 members) copy weights and optimizer state
  from one of the best quarter and multiply learning rate and weight decay by 0.8 or 1.25
  (learning rate kept in [0.005, 0.5], weight decay in [1e-6, 1e-2]); each member's schedule is
  saved in its results and drawn in ``pbt_learning_rate.png``/``pbt_weight_decay.png``;
- ``"smoke"`` / ``"pbt_smoke"``: the same on the smoke data (tests).

Commands (side by side, each on one core)::

    CONVJAX_CPU_DEVICES=1 taskset -c 0 .venv/bin/python experiments/sweep.py \
        --config=configs/sweeps/pbt.py --workdir=workdirs/sweeps/fixed8
    CONVJAX_CPU_DEVICES=1 taskset -c 1 .venv/bin/python experiments/sweep.py \
        --config=configs/sweeps/pbt.py:pbt --workdir=workdirs/sweeps/pbt8

Expected time on one core of the 2-core CPU: about 1.5 h each.
"""

from configs.sweeps import common

PRESETS = (None, "", "pbt", "smoke", "pbt_smoke")


def get_config(arg=None):
    if arg not in PRESETS:
        raise ValueError(
            f"sweep config: arg={arg!r} is not a preset; use none, 'pbt', 'smoke' or 'pbt_smoke'."
        )
    space = [
        ("learning_rate", {"dist": "log_uniform", "low": 0.01, "high": 0.4}),
        ("weight_decay", {"dist": "log_uniform", "low": 1e-5, "high": 2e-3}),
    ]
    c = common.sweep(
        "pbt", space, "smoke" if arg and "smoke" in arg else None, search="random", num_trials=8
    )
    if arg and arg.startswith("pbt"):
        c.pbt = {
            "interval_epochs": 0.5,
            "fraction": 0.25,
            "fields": ("learning_rate", "weight_decay"),
            "factors": (0.8, 1.25),
            "bounds": (("learning_rate", 0.005, 0.5), ("weight_decay", 1e-6, 1e-2)),
        }
    return c
