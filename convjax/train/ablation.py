"""Ablations: every variant x seed of a base config trained, resumable, summarised.

An ablation config (``configs/ablations/<name>.py``) is an ``ml_collections.ConfigDict``::

    config.base      # a run config (configs/default.py style)
    config.variants  # {name: overrides}; overrides is a nested dict of base fields (or model
                     # arguments) to change, e.g. {"model": {"pool": "avg"}}; {} is the base
    config.order     # optional: variant names in table/plot order (a ConfigDict sorts keys)
    config.seeds     # e.g. (0, 1, 2); written into base field ``config.seed_field``
    config.seed_field = "seed"
    config.populations = True   # optional: train a variant's seeds as one population

:func:`run_ablation` trains every (variant, seed) into ``WORKDIR/runs/<variant>/seed_<s>/``
through :func:`convjax.train.runs.train_runs`: finished runs are read back, never rerun; the
seeds of one variant train together as one population (their numbers equal separate runs up
to float rounding; ``populations = False`` trains each run alone). It then writes to WORKDIR:

- ``results.md`` / ``results.csv``: one row per variant -- test accuracy mean ± std over
  seeds, parameters, FLOPs and receptive field (``convjax.inspect.summary``), training time and
  images/s (means);
- ``runs.csv``: one row per run;
- ``accuracy.png`` (test accuracy per variant with its spread) and ``learning_curves.png``
  (every run's validation/test curve, one colour per variant).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train.factory import make_model
from convjax.train.runs import Run, train_runs

StatsFn = Callable[[ml_collections.ConfigDict], Mapping[str, Any]]

#: Keys of a run's results that the tables use.
RESULT_KEYS = ("test_accuracy", "val_accuracy", "train_time_s", "images_per_s", "epochs_run")

#: Columns of results.csv, in order.
TABLE_COLUMNS = (
    "variant",
    "seeds",
    "test_accuracy_mean",
    "test_accuracy_std",
    "params",
    "flops",
    "receptive_field",
    "train_time_s",
    "images_per_s",
)


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
    table = summarize(records)
    files = write_outputs(table, records, workdir, title=config.get("name", workdir.name))
    log((workdir / "results.md").read_text())
    return {"runs": records, "table": table, "files": files}


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-variant rows (:data:`TABLE_COLUMNS`): mean and sample std (ddof=1) over seeds; the
    std of a single seed is None (not measured)."""
    rows = []
    for name in dict.fromkeys(r["variant"] for r in records):
        rs = [r for r in records if r["variant"] == name]
        acc = np.array([float(r["test_accuracy"]) for r in rs])
        rows.append(
            {
                "variant": name,
                "seeds": len(rs),
                "test_accuracy_mean": float(acc.mean()),
                "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
                "test_accuracies": acc.tolist(),
                "params": rs[0].get("params"),
                "flops": rs[0].get("flops"),
                "receptive_field": rs[0].get("receptive_field"),
                "train_time_s": _mean(r.get("train_time_s") for r in rs),
                "images_per_s": _mean(r.get("images_per_s") for r in rs),
            }
        )
    return rows


def _si(x) -> str:
    if x is None:
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(float(x)) >= div:
            return f"{float(x) / div:.2f}{unit}"
    return f"{float(x):.0f}"


def _rf(x) -> str:
    return "-" if x is None else "x".join(str(int(v)) for v in x)


def write_outputs(table, records, workdir: Path, *, title: str = "ablation") -> dict[str, str]:
    """``results.md``, ``results.csv``, ``runs.csv``, ``accuracy.png``, ``learning_curves.png``."""
    workdir = Path(workdir)
    rows = [
        [
            r["variant"],
            report.mean_std(r["test_accuracies"]),
            r["seeds"],
            _si(r["params"]),
            _si(r["flops"]),
            _rf(r["receptive_field"]),
            f"{r['train_time_s']:.1f}",
            f"{r['images_per_s']:.0f}",
        ]
        for r in table
    ]
    md = f"### {title}\n\n" + report.markdown_table(
        [
            "variant",
            "test accuracy (%)",
            "seeds",
            "params",
            "FLOPs",
            "receptive field",
            "train time (s)",
            "images/s",
        ],
        rows,
    )
    paths = {
        "results.md": workdir / "results.md",
        "results.csv": report.write_csv(workdir / "results.csv", table, TABLE_COLUMNS),
        "runs.csv": report.write_csv(
            workdir / "runs.csv",
            records,
            ["variant", "seed", *RESULT_KEYS, "params", "flops", "receptive_field", "workdir"],
        ),
    }
    paths["results.md"].write_text(md)
    means = [100 * r["test_accuracy_mean"] for r in table]
    spread = [
        None
        if r["test_accuracy_std"] is None
        else (m - 100 * r["test_accuracy_std"], m + 100 * r["test_accuracy_std"])
        for m, r in zip(means, table)
    ]
    fig = report.variant_accuracy_figure(
        [r["variant"] for r in table], means, spread, title="mean ± std over seeds"
    )
    paths["accuracy.png"] = report.save_figure(fig, workdir / "accuracy.png")
    curves = {
        r["variant"]: [x["curve"] for x in records if x["variant"] == r["variant"]] for r in table
    }
    paths["learning_curves.png"] = report.save_figure(
        report.variant_curves_figure(curves), workdir / "learning_curves.png"
    )
    return {k: str(v) for k, v in paths.items()}
