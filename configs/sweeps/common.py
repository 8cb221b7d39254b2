"""Shared by the sweep configs: the base single-run config and presets.

Imported by each sweep config as ``configs.sweeps.common``; ml_collections only. Presets
(``--config=configs/sweeps/<name>.py:smoke``): None = the default recipe with a 5000-image
validation split (trials are ranked on it); ``"smoke"`` = ``configs/default.py:smoke`` with a
128-image validation split (seconds, for tests).
"""

import ml_collections

from configs import default


def base_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(
            f"sweep config: arg={arg!r} is not a preset; use none or 'smoke' "
            "(--config=configs/sweeps/lr_smoothing.py:smoke)."
        )
    base = default.get_config("smoke" if arg == "smoke" else None)
    base.validation_size = 128 if arg == "smoke" else 5000
    base.progress = False
    base.tensorboard = False
    return base


def sweep(name, space, arg=None, *, search="grid", num_trials=0, strategy="auto"):
    c = ml_collections.ConfigDict()
    c.name = name
    c.base = base_config(arg)
    c.search = search
    c.space = tuple(space)
    c.num_trials = num_trials
    c.search_seed = 0
    c.metric = "val_accuracy"
    c.strategy = strategy
    return c
