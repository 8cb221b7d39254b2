"""Ablations: every variant x seed of a base config trained, resumable, summarised.

An ablation config (``configs/ablations/<name>.py``) is an ``ml_collections.ConfigDict``::

    config.base      # a complete single-run config (configs/default.py style)
    config.variants  # {name: overrides}; overrides is a nested dict of base fields to change,
                     # e.g. {"model": {"pool": "avg"}}; {} is the base itself (a ConfigDict
                     # refuses dotted keys, so nest them)
    config.order     # optional: variant names in table/plot order (a ConfigDict sorts keys)
    config.seeds     # e.g. (0, 1, 2); written into base field ``config.seed_field``
    config.seed_field = "seed"

:func:`run_ablation` trains each (variant, seed) with ``train_and_evaluate(config, workdir)`` in
``WORKDIR/runs/<variant>/seed_<s>/``. A run whose final results JSON exists is finished and is
read back, never rerun; an interrupted run is simply called again, and
``train_and_evaluate`` resumes it from its checkpoint. It then writes to WORKDIR:

- ``results.md`` / ``results.csv``: one row per variant -- test accuracy mean ± std over
  seeds, parameters, FLOPs and receptive field (from ``convjax.inspect.summary`` when
  available), training time and images/s (means);
- ``runs.csv``: one row per run (per-run metrics);
- ``accuracy.png`` (test accuracy per variant, error bars = std over seeds) and
  ``learning_curves.png`` (every run's validation/test curve overlaid, one colour per variant).
"""

from __future__ import annotations

import copy
import csv
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

TrainFn = Callable[[ml_collections.ConfigDict, str], Mapping[str, Any]]
StatsFn = Callable[[ml_collections.ConfigDict], Mapping[str, Any]]

#: Columns of results.csv / results.md, in order.
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


# ---------------------------------------------------------------------------- config overrides


def _valid_keys(cfg) -> list[str]:
    return sorted(cfg.keys()) if hasattr(cfg, "keys") else []


def apply_overrides(
    base: ml_collections.ConfigDict, overrides: Mapping[str, Any], *, where: str = "overrides"
) -> ml_collections.ConfigDict:
    """A copy of ``base`` with the nested ``overrides`` written in.

    Keys may be nested dicts (``{"model": {"pool": "avg"}}``) or dotted paths
    (``{"model.pool": "avg"}``). Every key must already exist in ``base`` (a typo would
    otherwise silently train the base config): an unknown key raises ``ValueError`` listing
    the valid keys at that level.
    """
    out = copy.deepcopy(base)
    was_locked = out.is_locked if hasattr(out, "is_locked") else False

    def write(node, path: list[str], value, shown: str):
        key = path[0]
        if not hasattr(node, "keys") or key not in node:
            raise ValueError(
                f"{where}: {shown!r} is not a field of the base config (valid keys here: "
                f"{_valid_keys(node)}); fix the spelling or add the field to the base config."
            )
        if len(path) == 1:
            old = node[key]
            if isinstance(value, Mapping) and hasattr(old, "keys"):
                for k, v in value.items():
                    write(old, str(k).split("."), v, f"{shown}.{k}")
            else:
                with out.unlocked() if hasattr(out, "unlocked") else _null():
                    node[key] = value
        else:
            write(node[key], path[1:], value, shown)

    for k, v in dict(overrides).items():
        write(out, str(k).split("."), v, str(k))
    if was_locked:
        out.lock()
    return out


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _to_dict(x) -> Any:
    if hasattr(x, "to_dict"):
        return x.to_dict()
    if isinstance(x, Mapping):
        return {k: _to_dict(v) for k, v in x.items()}
    return x


# ---------------------------------------------------------------------------- runs


def check_ablation_config(config: ml_collections.ConfigDict) -> None:
    """Raise ``ValueError`` (naming the field) for a malformed ablation config."""
    for field in ("base", "variants", "seeds"):
        if field not in config:
            raise ValueError(
                f"ablation config: field {field!r} is missing (has {_valid_keys(config)}); an "
                "ablation config needs base (a single-run config), variants and seeds."
            )
    variants = _to_dict(config.variants)
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
            f"{_valid_keys(config.base)}); name the field that holds the run's seed."
        )


def expand_runs(config: ml_collections.ConfigDict) -> list[dict[str, Any]]:
    """Every (variant, seed) as ``{"variant", "seed", "config", "subdir"}``, variants in order."""
    check_ablation_config(config)
    seed_field = config.get("seed_field", "seed")
    runs = []
    variants = _to_dict(config.variants)
    names = list(config.get("order", None) or variants)
    for name in names:
        overrides = variants[name]
        cfg = apply_overrides(config.base, overrides or {}, where=f"variants[{name!r}]")
        for s in config.seeds:
            run_cfg = apply_overrides(cfg, {seed_field: int(s)}, where="seeds")
            runs.append(
                {
                    "variant": str(name),
                    "seed": int(s),
                    "config": run_cfg,
                    "subdir": os.path.join("runs", str(name), f"seed_{int(s)}"),
                }
            )
    return runs


def _read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)


def _write_json_atomic(path: Path, obj) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, default=_json_default)
    os.replace(tmp, path)


def _json_default(x):
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _num(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def run_ablation(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    train_fn: TrainFn | None = None,
    stats_fn: StatsFn | None = None,
    results_file: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every variant x seed (skipping finished runs) and write tables and plots.

    Args:
      config: an ablation config (see the module docstring).
      workdir: output folder; reruns with the same workdir resume.
      train_fn: ``train_fn(run_config, run_workdir) -> results dict``; default
        ``convjax.train.train_and_evaluate``.
      stats_fn: ``stats_fn(run_config) -> {"params", "flops", "receptive_field"}``; default
        :func:`model_stats` (``convjax.inspect.summary`` of the config's model).
      results_file: name of the final results JSON the train function writes in its workdir;
        a run is finished when it exists. Default ``config.results_file`` or
        :data:`DEFAULT_RESULTS_FILE`.
      log: progress printer.

    Returns:
      ``{"runs": [per-run records], "table": [per-variant rows], "files": {name: path}}``.
    """
    workdir = Path(workdir)
    runs = expand_runs(config)
    if train_fn is None:
        train_fn = _default_train_fn()
    if stats_fn is None:
        stats_fn = model_stats
    results_file = results_file or config.get("results_file", None) or DEFAULT_RESULTS_FILE
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "ablation_config.json").write_text(
        json.dumps(_to_dict(config), indent=2, default=_json_default)
    )

    records = []
    stats_cache: dict[str, Mapping[str, Any]] = {}
    for i, run in enumerate(runs):
        rdir = workdir / run["subdir"]
        rdir.mkdir(parents=True, exist_ok=True)
        done = rdir / results_file
        tag = f"[{i + 1}/{len(runs)}] {run['variant']} seed={run['seed']}"
        if done.exists():
            log(f"{tag}: finished earlier, reading {done}")
            result = _read_json(done)
        else:
            log(f"{tag}: training in {rdir}")
            t0 = time.perf_counter()
            result = dict(train_fn(run["config"], str(rdir)))
            result.setdefault("wall_time_s", time.perf_counter() - t0)
            if not done.exists():  # the train function normally writes it itself
                _write_json_atomic(done, result)
        if run["variant"] not in stats_cache:
            stats_cache[run["variant"]] = dict(stats_fn(run["config"]))
        records.append(
            {
                "variant": run["variant"],
                "seed": run["seed"],
                "workdir": str(rdir),
                **{k: result.get(k) for k in RESULT_KEYS},
                **stats_cache[run["variant"]],
                "curve": learning_curve(rdir, result),
            }
        )
    table = summarize(records, order=[r["variant"] for r in runs])
    files = write_tables(table, records, workdir, title=config.get("name", workdir.name))
    files.update(plot_ablation(table, records, workdir))
    log((workdir / "results.md").read_text())
    return {"runs": records, "table": table, "files": files}


# Keys of train_and_evaluate's results dict that the tables use (convjax.train.trainer).
DEFAULT_RESULTS_FILE = "results.json"
RESULT_KEYS = ("test_accuracy", "val_accuracy", "train_time_s", "images_per_s", "epochs_run")

#: (H, W, C) and classes of data sets whose shapes are fixed, so model_stats need not load them.
KNOWN_SHAPES = {
    "fashion_mnist": ((28, 28, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
}


def _default_train_fn() -> TrainFn:
    from convjax.train.trainer import train_and_evaluate

    return train_and_evaluate


def model_stats(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Parameters, FLOPs (one image) and receptive field of ``config``'s model.

    Builds the model with ``convjax.train.make_model`` and reads ``convjax.inspect.summary``
    (traced abstractly, nothing is computed). The receptive field is that of the last layer
    whose output is still a spatial map (the input region one unit before the classifier
    sees), as ``(height, width)``.
    """
    import convjax.inspect as ci
    from convjax.inspect.receptive_field import ReceptiveField
    from convjax.train.trainer import load_data, make_model, prepare_config

    cfg = prepare_config(config)
    if cfg.dataset in KNOWN_SHAPES:
        shape, classes = KNOWN_SHAPES[cfg.dataset]
    else:
        ds = load_data(cfg)
        shape, classes = ds.image_shape, ds.num_classes
    model = make_model(cfg, shape, classes)
    s = ci.summary(model, tuple(shape), print_fn=None)
    rf = None
    for row in s.rows:
        if isinstance(row.receptive_field, ReceptiveField):
            rf = tuple(int(v) for v in row.receptive_field.size)
    return {"params": int(s.total_params), "flops": int(s.total_flops), "receptive_field": rf}


def learning_curve(run_dir: Path, result: Mapping[str, Any]) -> list[tuple[float, float]]:
    """``[(epoch, accuracy)]`` of one run, from the results dict's history if it has one."""
    hist = result.get("history")
    if isinstance(hist, Mapping):
        for key in ("val_accuracy", "test_accuracy"):
            vals = hist.get(key) or []
            if vals and all(v is not None for v in vals):
                return [(float(e + 1), float(a)) for e, a in enumerate(vals)]
    return []


# ---------------------------------------------------------------------------- tables and plots


def summarize(records: Sequence[Mapping[str, Any]], order: Sequence[str] | None = None):
    """Per-variant rows (see TABLE_COLUMNS): mean and sample std (ddof=1) over seeds."""
    names = list(dict.fromkeys(order if order is not None else [r["variant"] for r in records]))
    rows = []
    for name in names:
        rs = [r for r in records if r["variant"] == name]
        if not rs:
            continue
        acc = np.array([_num(r.get("test_accuracy")) for r in rs], float)
        rows.append(
            {
                "variant": name,
                "seeds": len(rs),
                "test_accuracy_mean": float(np.mean(acc)),
                "test_accuracy_std": float(np.std(acc, ddof=1)) if len(acc) > 1 else 0.0,
                "params": rs[0].get("params"),
                "flops": rs[0].get("flops"),
                "receptive_field": rs[0].get("receptive_field"),
                "train_time_s": float(np.mean([_num(r.get("train_time_s")) for r in rs])),
                "images_per_s": float(np.mean([_num(r.get("images_per_s")) for r in rs])),
            }
        )
    return rows


def _fmt_int(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    x = float(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


def _fmt_rf(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, (list, tuple)):
        return "x".join(str(int(v)) for v in x)
    return str(x)


def write_tables(table, records, workdir: Path, *, title: str = "ablation") -> dict[str, str]:
    """``results.csv`` (numbers), ``results.md`` (mean ± std), ``runs.csv`` (one row per run)."""
    workdir = Path(workdir)
    csv_path, md_path, runs_path = (
        workdir / "results.csv",
        workdir / "results.md",
        workdir / "runs.csv",
    )
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=TABLE_COLUMNS)
        w.writeheader()
        for row in table:
            w.writerow(
                {k: _fmt_rf(row[k]) if k == "receptive_field" else row[k] for k in w.fieldnames}
            )
    run_cols = ["variant", "seed", *RESULT_KEYS, "params", "flops", "receptive_field", "workdir"]
    with open(runs_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=run_cols, extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(
                {k: _fmt_rf(r.get(k)) if k == "receptive_field" else r.get(k) for k in run_cols}
            )
    lines = [
        f"### {title}",
        "",
        "| variant | test accuracy (%) | seeds | params | FLOPs | receptive field "
        "| train time (s) | images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in table:
        lines.append(
            f"| {row['variant']} | {100 * row['test_accuracy_mean']:.2f} ± "
            f"{100 * row['test_accuracy_std']:.2f} | {row['seeds']} | {_fmt_int(row['params'])} "
            f"| {_fmt_int(row['flops'])} | {_fmt_rf(row['receptive_field'])} "
            f"| {row['train_time_s']:.1f} | {row['images_per_s']:.0f} |"
        )
    md_path.write_text("\n".join(lines) + "\n")
    return {"results.csv": str(csv_path), "results.md": str(md_path), "runs.csv": str(runs_path)}


def plot_ablation(table, records, workdir: Path) -> dict[str, str]:
    """``accuracy.png`` (error bars) and ``learning_curves.png`` (all runs overlaid)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    workdir = Path(workdir)
    names = [r["variant"] for r in table]
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2, 3.2))
    mean = [100 * r["test_accuracy_mean"] for r in table]
    std = [100 * r["test_accuracy_std"] for r in table]
    ax.bar(names, mean, yerr=std, capsize=4, color="tab:blue", alpha=0.8)
    lo = min(m - s for m, s in zip(mean, std))
    hi = max(m + s for m, s in zip(mean, std))
    pad = max(0.5, 0.2 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("mean ± std over seeds")
    fig.tight_layout()
    acc_path = workdir / "accuracy.png"
    fig.savefig(acc_path, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, name in enumerate(names):
        first = True
        for r in records:
            if r["variant"] != name or not r.get("curve"):
                continue
            xs, ys = zip(*r["curve"])
            ax.plot(
                xs,
                [100 * y for y in ys],
                "o-",
                markersize=3,
                color=colours[i % len(colours)],
                alpha=0.7,
                label=name if first else None,
            )
            first = False
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("accuracy (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    lc_path = workdir / "learning_curves.png"
    fig.savefig(lc_path, dpi=110)
    plt.close(fig)
    return {"accuracy.png": str(acc_path), "learning_curves.png": str(lc_path)}
