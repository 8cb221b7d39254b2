"""Shared by the ablation configs: the base single-run config and the ablation skeleton.

Config files are loaded by path (``--config=configs/ablations/pooling.py``), so each one loads
this file with :func:`importlib` rather than a package import; it uses only the standard
library and ml_collections, like every config.

Presets (the ``arg`` of ``get_config``, e.g. ``--config=configs/ablations/pooling.py:quick``):

- ``None``: the base is ``configs/default.py`` unchanged (3 full epochs per run).
- ``"quick"``: what fits a 2-core CPU shared with other jobs, in about an hour
  (about 80 images/s there): 2 epochs on the first 4000 training images, the first 2000 test
  images, one jitted call per step (``loop="step"``: compiles in a quarter of the time of the
  4-step unrolled loop, which matters when every run compiles anew). Numbers compare
  variants under a tiny budget; they are not the toolkit's best accuracy.
- ``"smoke"``: ``configs/default.py:smoke`` (512 train / 256 test images, 2 epochs) and 2
  seeds: seconds per run, for tests.
"""

import importlib.util
from pathlib import Path

import ml_collections

CONFIGS = Path(__file__).resolve().parents[1]

#: PatternCNN knobs the ablations vary, at PatternCNN's own defaults (configs/default.py
#: leaves them implicit; an override must name an existing field, so they are added here).
MODEL_DEFAULTS = {"kernel_size": 3, "dilation": 1, "padding": "SAME", "downsample": "conv"}

QUICK = {"num_epochs": 2, "train_subset": 4000, "test_subset": 2000, "loop": "step"}


def load_config(name: str, arg=None) -> ml_collections.ConfigDict:
    """``get_config(arg)`` of ``configs/<name>.py``."""
    path = CONFIGS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"convjax_config_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg)


def base_config(arg=None) -> ml_collections.ConfigDict:
    """configs/default.py (smoke-shrunk for ``arg="smoke"``) with the ablation knobs made
    explicit; quiet per-run output (the ablation prints one line per run)."""
    if arg not in (None, "", "quick", "smoke"):
        raise ValueError(
            f"ablation config: arg={arg!r} is not a preset; use none, 'quick' or 'smoke' "
            "(--config=configs/ablations/pooling.py:quick)."
        )
    base = load_config("default", "smoke" if arg == "smoke" else None)
    for key, value in MODEL_DEFAULTS.items():
        if key not in base.model:
            base.model[key] = value
    if arg == "quick":
        for key, value in QUICK.items():
            base[key] = value
    base.progress = False
    base.tensorboard = False
    return base


def ablation(name: str, variants: dict, arg=None, *, seeds=(0, 1, 2)) -> ml_collections.ConfigDict:
    """An ablation config: ``variants`` maps a name to nested overrides of the base."""
    c = ml_collections.ConfigDict()
    c.name = name
    c.preset = arg or "full"
    c.base = base_config(arg)
    c.variants = variants
    c.order = tuple(variants)
    c.seeds = (0, 1) if arg == "smoke" else tuple(seeds)
    c.seed_field = "seed"
    c.results_file = "results.json"
    return c
