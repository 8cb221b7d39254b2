"""Ablations: every variant x seed of a base config trained, resumable, summarised.

An ablation config (``configs/ablations/<name>.py``) is an ``ml_collections.ConfigDict``::

    config.base      # a run config (configs/default.py style)
    config.variants  # {name: overrides}; overrides is a nested dict of base fields (or model
                     # arguments) to change, e.g. {"model": {"pool": "avg"}}; {} is the base
    config.order     # optional: variant names in table/plot order (a ConfigDict sorts keys)
    config.seeds     # e.g. (0, 1, 2); written into base field ``config.seed_field``
    config.seed_field = "seed"
    config.populations = True   # optional: train a variant's seeds as one population
    config.baseline = "max"     # optional: the variant the others are compared with; the
                                # first variant in order by default

:func:`run_ablation` trains every (variant, seed) into ``WORKDIR/runs/<variant>/seed_<s>/``
through :func:`convjax.train.runs.train_runs`: finished runs are read back, never rerun; the
seeds of one variant train together as one population (their numbers equal separate runs up
to float rounding; ``populations = False`` trains each run alone). It then writes to WORKDIR:

- ``results.md`` / ``results.csv``: one row per variant -- test accuracy mean ± std over
  seeds, parameters, FLOPs and receptive field (``convjax.inspect.summary``), training time and
  images/s (means), and the variant against the baseline paired by seed
  (:func:`convjax.train.stats.compare_paired`): difference of means, its 95% bootstrap
  interval, paired t-test and Wilcoxon p-values, seeds a t-test would need to resolve a
  0.1-point difference; a paragraph under the table says how to read them;
- ``runs.csv``: one row per run;
- ``accuracy.png`` (test accuracy per variant with the 95% t-interval of its mean),
  ``differences.png`` (each variant's difference from the baseline with its bootstrap
  interval; written when the variants share at least two seeds) and ``learning_curves.png``
  (every run's validation/test curve, one colour per variant).

:func:`tables_from_runs` rebuilds the tables and the two accuracy figures from a ``runs.csv``
alone, without training (``scripts/ablation_tables.py`` is its command).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_collections

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train.ablation_tables import RESULT_KEYS, summarize, write_outputs
from convjax.train.factory import make_model
from convjax.train.runs import Run, train_runs

StatsFn = Callable[[ml_collections.ConfigDict], Mapping[str, Any]]

#: Keys of a run's results that the tables use.


def _keys(cfg) -> list[str]:
    return sorted(cfg.keys()) if hasattr(cfg, "keys") else []


def _plain(x) -> Any:
    return x.to_dict() if hasattr(x, "to_dict") else x


def check_ablation_config(config) -> None:
    """Raise ``ValueError`` (naming the field) for a malformed ablation config."""
    for field in ("base", "variants", "seeds"):
        if field not in config:
            raise ValueError(
                f"ablation config: field {field!r} is missing (has {_keys(config)}); an "
                "ablation config needs base (a run config), variants and seeds."
            )
    variants = _plain(config.variants)
    if not isinstance(variants, Mapping) or not variants:
        raise ValueError(
            f"ablation config: variants={variants!r} must be a non-empty dict of "
            "{name: overrides}."
        )
    for name in variants:
        if not str(name) or "/" in str(name) or str(name).startswith("."):
            raise ValueError(
                f"ablation config: variant name {name!r} is not usable as a folder name; use "
                "letters, digits, '-' or '_'."
            )
    order = config.get("order", None)
    if order is not None and sorted(map(str, order)) != sorted(map(str, variants)):
        raise ValueError(
            f"ablation config: order={tuple(order)!r} must list each variant once; the variants "
            f"are {sorted(variants)}."
        )
    seeds = list(config.seeds)
    if not seeds or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(
            f"ablation config: seeds={tuple(seeds)!r} must be a non-empty tuple of ints, "
            "e.g. (0, 1, 2)."
        )
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"ablation config: seeds={tuple(seeds)!r} repeats a seed; list each once.")
    baseline = config.get("baseline", None)
    if baseline is not None and baseline not in variants:
        raise ValueError(
            f"ablation config: baseline={baseline!r} is not a variant; use one of "
            f"{sorted(variants)}, or leave it out to compare with the first variant."
        )
    seed_field = config.get("seed_field", "seed")
    if seed_field not in config.base:
        raise ValueError(
            f"ablation config: seed_field={seed_field!r} is not a field of base (valid keys: "
            f"{_keys(config.base)}); name the field that holds the run's seed."
        )


def expand_runs(config, workdir=".") -> list[tuple[str, int, Run]]:
    """Every (variant, seed) as ``(variant, seed, Run)``, variants in order."""
    check_ablation_config(config)
    seed_field = config.get("seed_field", "seed")
    variants = _plain(config.variants)
    out = []
    for name in list(config.get("order", None) or variants):
        cfg = config_lib.apply_overrides(
            config.base, variants[name] or {}, where=f"variants[{name!r}]"
        )
        for s in config.seeds:
            run_cfg = config_lib.apply_overrides(cfg, {seed_field: int(s)}, where="seeds")
            folder = Path(workdir) / "runs" / str(name) / f"seed_{int(s)}"
            out.append((str(name), int(s), Run(f"{name} seed={s}", run_cfg, folder)))
    return out


def model_stats(config) -> dict[str, Any]:
    """Parameters, FLOPs (one image) and receptive field of ``config``'s model.

    The model is built abstractly (``flax.nnx.eval_shape``) and read with
    ``convjax.inspect.summary``. The receptive field is that of the last layer whose output is
    still a spatial map (the input region one unit before the classifier sees), as
    ``(height, width)``.
    """
    from flax import nnx

    import convjax.inspect as ci
    from convjax.data import dataset_shape
    from convjax.inspect.receptive_field import ReceptiveField
    from convjax.train.inputs import load_data

    cfg = config_lib.prepare(config)
    known = dataset_shape(cfg.dataset)
    if known is None:
        ds = load_data(cfg)
        known = (ds.image_shape, ds.num_classes)
    model = nnx.eval_shape(lambda: make_model(cfg, *known))
    s = ci.summary(model, tuple(known[0]), print_fn=None)
    rf = None
    for row in s.rows:
        if isinstance(row.receptive_field, ReceptiveField):
            rf = tuple(int(v) for v in row.receptive_field.size)
    return {"params": int(s.total_params), "flops": int(s.total_flops), "receptive_field": rf}


def learning_curve(result: Mapping[str, Any]) -> list[tuple[float, float]]:
    """``[(epoch, accuracy)]`` of one run: its validation curve, else its test curve."""
    hist = result.get("history")
    if isinstance(hist, Mapping):
        for key in ("val_accuracy", "test_accuracy"):
            vals = hist.get(key) or []
            if vals and all(v is not None for v in vals):
                return [(float(e + 1), float(a)) for e, a in enumerate(vals)]
    return []


def run_ablation(
    config,
    workdir: str | os.PathLike,
    *,
    fit_fn=None,
    stats_fn: StatsFn | None = None,
    mesh: str | None = "auto",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every variant x seed (skipping finished runs) and write tables and plots.

    Args:
      config: an ablation config (module docstring).
      workdir: output folder; reruns with the same workdir resume.
      fit_fn: replaces :func:`convjax.train.engine.fit` (tests use it).
      stats_fn: ``stats_fn(run_config) -> {"params", "flops", "receptive_field"}``; default
        :func:`model_stats`.
      mesh: passed to ``fit``.
      log: progress printer.

    Returns:
      ``{"runs": [per-run records], "table": [per-variant rows], "files": {name: path}}``.
    """
    workdir = Path(workdir)
    expanded = expand_runs(config, workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    report.write_json(workdir / "ablation_config.json", config_lib.to_json_dict(config))
    results = train_runs(
        [run for _, _, run in expanded],
        workdir,
        populations=config.get("populations", True),
        mesh=mesh,
        fit_fn=fit_fn,
        log=log,
    )
    stats_fn = stats_fn or model_stats
    stats: dict[str, Mapping[str, Any]] = {}
    records = []
    for (variant, seed, run), result in zip(expanded, results):
        if variant not in stats:
            stats[variant] = dict(stats_fn(run.config))
        records.append(
            {
                "variant": variant,
                "seed": seed,
                "workdir": str(run.directory),
                **{k: result.get(k) for k in RESULT_KEYS},
                **stats[variant],
                "curve": learning_curve(result),
            }
        )
    order = list(dict.fromkeys(r["variant"] for r in records))
    table = summarize(records, baseline=config.get("baseline", None) or order[0])
    files = write_outputs(table, records, workdir, title=config.get("name", workdir.name))
    log((workdir / "results.md").read_text())
    return {"runs": records, "table": table, "files": files}
