"""Shared by the sweep configs: the base single-run config and presets.

Loaded by path from each sweep config (config files are not a package); standard library and
ml_collections only. Presets (``--config=configs/sweeps/<name>.py:smoke``): None = the
default recipe with a 5000-image validation split (trials are ranked on it); ``"smoke"`` =
``configs/default.py:smoke`` with a 128-image validation split (seconds, for tests).
"""

import importlib.util
from pathlib import Path

import ml_collections

CONFIGS = Path(__file__).resolve().parents[1]


def base_config(arg=None) -> ml_collections.ConfigDict:
    if arg not in (None, "", "smoke"):
        raise ValueError(
            f"sweep config: arg={arg!r} is not a preset; use none or 'smoke' "
            "(--config=configs/sweeps/lr_smoothing.py:smoke)."
        )
    path = CONFIGS / "default.py"
    spec = importlib.util.spec_from_file_location("convjax_config_default", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base = module.get_config("smoke" if arg == "smoke" else None)
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
