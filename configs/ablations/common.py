"""Shared by the ablation configs: the base single-run config and the ablation skeleton.

``configs`` is a package: the ablation configs import this file as
``configs.ablations.common`` (the experiments and ``convjax.train.config.load_config`` put the
repository root on the import path); it uses only ml_collections, like every config.

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

import ml_collections

from configs import default

QUICK = {"num_epochs": 2, "train_subset": 4000, "test_subset": 2000, "loop": "step"}


def base_config(arg=None) -> ml_collections.ConfigDict:
    """configs/default.py (smoke-shrunk for ``arg="smoke"``) with quiet per-run output (the
    ablation prints one line per run). Variants may override any model argument, whether
    the base spells it out or not (``convjax.train.config.apply_overrides``)."""
    if arg not in (None, "", "quick", "smoke"):
        raise ValueError(
            f"ablation config: arg={arg!r} is not a preset; use none, 'quick' or 'smoke' "
            "(--config=configs/ablations/pooling.py:quick)."
        )
    base = default.get_config("smoke" if arg == "smoke" else None)
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
