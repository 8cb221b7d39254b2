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

import csv
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train import stats as stats_lib
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
    "test_accuracy_ci_low",
    "test_accuracy_ci_high",
    "baseline",
    "paired_seeds",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "t_pvalue",
    "wilcoxon_pvalue",
    "seeds_for_0.1_point",
)

#: The difference whose seeds-needed figure the tables give: 0.1 point of accuracy.
RESOLVE = 0.001
#: Bootstrap resamples and seed of the tables' intervals (the same data, the same interval).
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


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


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(
    records: Sequence[Mapping[str, Any]], *, baseline: str | None = None
) -> list[dict[str, Any]]:
    """Per-variant rows (:data:`TABLE_COLUMNS`): mean and sample std (ddof=1) over seeds (the
    std of a single seed is None: not measured), the 95% t-interval of the mean, and the
    comparison with ``baseline`` (the first variant by default), paired by each record's
    ``seed`` (by position among the variant's records where a record has none).

    A row's ``comparison`` holds the :class:`~convjax.train.stats.PairedComparison` (None for
    the baseline itself), ``notes`` what the statistics left out.
    """
    names = list(dict.fromkeys(r["variant"] for r in records))
    if not names:
        raise ValueError("records is empty: there is no run to summarise.")
    baseline = names[0] if baseline is None else baseline
    if baseline not in names:
        raise ValueError(
            f"baseline={baseline!r} is not a variant of these runs; use one of {names}."
        )
    per_seed: dict[str, dict[Any, float]] = {}
    dropped: dict[str, list] = {}
    for name in names:
        rs = [r for r in records if r["variant"] == name]
        per_seed[name], dropped[name] = {}, []
        for i, r in enumerate(rs):
            v = r.get("test_accuracy")
            if v is None or not math.isfinite(float(v)):
                dropped[name].append(r.get("seed", i))
            else:
                per_seed[name][r.get("seed", i)] = float(v)
    rows = []
    for name in names:
        rs = [r for r in records if r["variant"] == name]
        acc = np.array(list(per_seed[name].values()))
        notes = [f"seeds {dropped[name]} have no test accuracy: left out"] if dropped[name] else []
        comparison = None
        if name != baseline:
            if not per_seed[name] or not per_seed[baseline]:
                notes.append(f"no finished run to compare with {baseline}")
            elif not set(per_seed[name]) & set(per_seed[baseline]):
                notes.append(f"no seed shared with {baseline}: nothing to pair")
            else:
                comparison = stats_lib.compare_paired(
                    per_seed[name],
                    per_seed[baseline],
                    delta=RESOLVE,
                    resamples=BOOTSTRAP_RESAMPLES,
                    seed=BOOTSTRAP_SEED,
                )
                notes += list(comparison.notes)
        interval = stats_lib.mean_interval(acc) if acc.size else None
        usable = comparison is not None and comparison.n > 1
        rows.append(
            {
                "variant": name,
                "seeds": len(rs),
                "test_accuracy_mean": float(acc.mean()) if acc.size else float("nan"),
                "test_accuracy_std": float(acc.std(ddof=1)) if acc.size > 1 else None,
                "test_accuracies": acc.tolist(),
                "test_accuracy_ci_low": interval[0] if interval else None,
                "test_accuracy_ci_high": interval[1] if interval else None,
                "params": rs[0].get("params"),
                "flops": rs[0].get("flops"),
                "receptive_field": rs[0].get("receptive_field"),
                "train_time_s": _mean(r.get("train_time_s") for r in rs),
                "images_per_s": _mean(r.get("images_per_s") for r in rs),
                "baseline": baseline,
                "comparison": comparison,
                "paired_seeds": comparison.n if comparison is not None else None,
                "diff_mean": comparison.mean_difference if usable else None,
                "diff_ci_low": comparison.interval[0] if usable else None,
                "diff_ci_high": comparison.interval[1] if usable else None,
                "t_pvalue": comparison.t_pvalue if usable else None,
                "wilcoxon_pvalue": comparison.wilcoxon_pvalue if usable else None,
                "seeds_for_0.1_point": comparison.seeds_needed if usable else None,
                "notes": notes,
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


def write_tables(table, workdir, *, title: str = "ablation") -> dict[str, str]:
    """``results.md``, ``results.csv``, ``accuracy.png`` and (when any variant shares two
    seeds with the baseline) ``differences.png`` from :func:`summarize`'s rows."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    baseline = table[0]["baseline"] if table else "-"
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
            *(
                report.comparison_cells(None)
                if r["variant"] == r["baseline"]
                else report.comparison_cells(r["comparison"])
                if r["comparison"] is not None
                else ["-"] * len(report.COMPARISON_COLUMNS)
            ),
        ]
        for r in table
    ]
    compared = [r["comparison"] for r in table if r["comparison"] is not None]
    n_shared = min((c.n for c in compared), default=0)
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
            *(c.format(baseline=baseline) for c in report.COMPARISON_COLUMNS),
        ],
        rows,
    )
    md += "\n" + report.statistics_legend(
        n_shared, baseline=baseline, resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED
    )
    notes = [f"- {r['variant']}: {'; '.join(r['notes'])}" for r in table if r["notes"]]
    if notes:
        md += "\nNotes:\n\n" + "\n".join(notes) + "\n"
    paths = {
        "results.md": workdir / "results.md",
        "results.csv": report.write_csv(workdir / "results.csv", table, TABLE_COLUMNS),
    }
    paths["results.md"].write_text(md)
    intervals = [
        None
        if r["test_accuracy_ci_low"] is None
        else (100 * r["test_accuracy_ci_low"], 100 * r["test_accuracy_ci_high"])
        for r in table
    ]
    seeds = sorted({r["seeds"] for r in table})
    fig = report.variant_accuracy_figure(
        [r["variant"] for r in table],
        [100 * r["test_accuracy_mean"] for r in table],
        intervals,
        title=f"mean and 95% t-interval of the mean over {'/'.join(map(str, seeds))} seeds",
    )
    paths["accuracy.png"] = report.save_figure(fig, workdir / "accuracy.png")
    diffs = [r for r in table if r["diff_mean"] is not None]
    if diffs:
        fig = report.difference_figure(
            [r["variant"] for r in diffs],
            [100 * r["diff_mean"] for r in diffs],
            [(100 * r["diff_ci_low"], 100 * r["diff_ci_high"]) for r in diffs],
            baseline=baseline,
            title=f"difference from {baseline}, paired by seed\n95% bootstrap interval"
            + (f" (with {n_shared} seeds: their range)" if n_shared <= 3 else ""),
        )
        paths["differences.png"] = report.save_figure(fig, workdir / "differences.png")
    return {k: str(v) for k, v in paths.items()}


def write_outputs(table, records, workdir: Path, *, title: str = "ablation") -> dict[str, str]:
    """:func:`write_tables`, plus ``runs.csv`` and ``learning_curves.png``."""
    workdir = Path(workdir)
    files = write_tables(table, workdir, title=title)
    files["runs.csv"] = str(
        report.write_csv(
            workdir / "runs.csv",
            records,
            ["variant", "seed", *RESULT_KEYS, "params", "flops", "receptive_field", "workdir"],
        )
    )
    curves = {
        r["variant"]: [x["curve"] for x in records if x["variant"] == r["variant"]] for r in table
    }
    files["learning_curves.png"] = str(
        report.save_figure(report.variant_curves_figure(curves), workdir / "learning_curves.png")
    )
    return files


def _number(text: str, kind=float):
    return None if text in ("", "None") else kind(float(text)) if kind is int else kind(text)


def read_runs(path) -> list[dict[str, Any]]:
    """The records of a ``runs.csv`` (:func:`write_outputs`), typed back: seeds, parameters and
    FLOPs as ints, metrics as floats (empty = None), the receptive field as a tuple."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(
            f"runs={str(path)!r} is not a file; pass the runs.csv an ablation wrote (or its "
            "folder)."
        )
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [
            c for c in ("variant", "seed", "test_accuracy") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise ValueError(
                f"runs={str(path)!r} lacks the columns {missing} (has {reader.fieldnames}); "
                "pass a runs.csv written by an ablation."
            )
        rows = list(reader)
    records = []
    for row in rows:
        rec: dict[str, Any] = {"variant": row["variant"], "seed": _number(row["seed"], int)}
        for key in RESULT_KEYS:
            rec[key] = _number(row.get(key, ""))
        for key in ("params", "flops"):
            rec[key] = _number(row.get(key, ""), int)
        rf = row.get("receptive_field", "")
        rec["receptive_field"] = tuple(int(v) for v in rf.split("x")) if rf else None
        rec["workdir"] = row.get("workdir", "")
        records.append(rec)
    return records


def tables_from_runs(
    runs: str | os.PathLike, *, baseline: str | None = None, title: str | None = None
) -> dict[str, Any]:
    """Rebuild an ablation's tables and accuracy figures from its recorded ``runs.csv``.

    Nothing is trained: the per-seed results already recorded are summarised again
    (:func:`summarize`) and written next to ``runs.csv`` by :func:`write_tables`
    (``results.md``, ``results.csv``, ``accuracy.png``, ``differences.png``); ``runs.csv`` and
    ``learning_curves.png`` (whose curves ``runs.csv`` does not hold) stay as they are.

    Args:
      runs: path of a ``runs.csv``, or of the folder that holds it.
      baseline: the variant to compare with; default the first in the file.
      title: the table's heading; default the folder's name.

    Returns:
      ``{"table": rows, "files": {name: path}}``.
    """
    path = Path(runs)
    if path.is_dir():
        path = path / "runs.csv"
    records = read_runs(path)
    table = summarize(records, baseline=baseline)
    files = write_tables(table, path.parent, title=title or path.parent.name)
    return {"table": table, "files": files}
