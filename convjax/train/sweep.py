"""Hyperparameter sweeps: trials expanded from a search space, trained as few populations.

``run_sweep(config, workdir)`` expands a sweep config (``configs/sweeps/<name>.py``) into trials
(grid or random, :mod:`convjax.train.sweep_space`) and trains them with
:func:`convjax.train.runs.train_runs`: trials that differ only in numeric hyperparameters
(``convjax.train.engine.POPULATION_FIELDS``: learning rate, weight decay, momentum, label
smoothing, seed, dropout rate) train as ONE population -- stacked parameters and optimizer
states, per-member hyperparameters as arrays, one jitted step -- with everything a single run
has (checkpoints and exact resume, per-member divergence and early stopping, metrics and
TensorBoard per trial). Each member's numbers equal training it alone up to float rounding.

A sweep config::

    config.base      # a run config
    config.search    # "grid" or "random"
    config.space     # ((field path, values or distribution), ...)
    config.num_trials, config.search_seed   # random search
    config.metric    # "val_accuracy" (needs base.validation_size) or "test_accuracy"
    config.strategy  # population strategy, "auto" by default
    config.population_fields  # optional: restrict what may vary inside one population
    config.halving   # optional: successive halving inside each population, e.g.
                     # {"rung_epochs": (0.25, 1.0), "reduction_factor": 4}
    config.pbt       # optional: population-based training (convjax.train.schedules)

Outputs: ``trials/<i>/`` (each trial's results, metrics, figures), ``results.md`` /
``results.csv`` sorted by the metric, ``best_config.py`` (the best trial as a ready config for
``experiments/train.py``) and ``metric_vs_<field>.png`` per swept field.

When the space varies ``seed``, trials that share every other field are one *configuration*:
``results.md`` then adds a table of configurations (mean ± std of the metric over seeds,
sorted by the mean) in which each is compared with the best one, paired by seed
(:func:`convjax.train.stats.compare_paired`: difference of means, 95% bootstrap interval,
paired t-test and Wilcoxon p-values, seeds to resolve 0.1 point), also written to
``configurations.csv``. Without repeated seeds the table says that statistics need at least
two seeds per configuration.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train import stats as stats_lib
from convjax.train import sweep_space as ss
from convjax.train.config_files import config_source
from convjax.train.engine import POPULATION_FIELDS
from convjax.train.runs import Run, train_runs

METRICS = ("val_accuracy", "test_accuracy")

#: The run-config field whose values are seeds: trials differing only in it are repeats.
SEED_FIELD = "seed"
#: The difference the seeds-needed figure refers to: 0.1 point of accuracy.
RESOLVE = 0.001
#: Bootstrap resamples and seed of the intervals (the same data, the same interval).
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def check_sweep_config(config) -> None:
    """Raise ``ValueError`` (naming the field) for a malformed sweep config."""
    for field in ("base", "space", "search"):
        if field not in config:
            raise ValueError(
                f"sweep config: field {field!r} is missing (has {sorted(config.keys())}); a "
                "sweep config needs base, search ('grid' or 'random') and space."
            )
    metric = config.get("metric", "val_accuracy")
    if metric not in METRICS:
        raise ValueError(
            f"sweep config: metric={metric!r} must be 'val_accuracy' or 'test_accuracy'."
        )
    if metric == "val_accuracy" and not config.base.get("validation_size", 0):
        raise ValueError(
            "sweep config: metric='val_accuracy' needs base.validation_size > 0 (a held-out "
            "split to rank trials on); set it, e.g. 5000, or rank by 'test_accuracy'."
        )
    fields = tuple(config.get("population_fields", None) or POPULATION_FIELDS)
    unknown = [f for f in fields if f not in POPULATION_FIELDS]
    if unknown:
        raise ValueError(
            f"sweep config: population_fields has {unknown}, which cannot vary inside a "
            f"population; allowed: {POPULATION_FIELDS}."
        )


def expand_trials(config) -> list[dict[str, Any]]:
    """The sweep's trials as flat ``{field_path: value}`` dicts, each checked against base."""
    check_sweep_config(config)
    trials = ss.make_trials(
        config.search,
        config.space,
        num_trials=config.get("num_trials", None) or None,
        seed=int(config.get("search_seed", 0)),
    )
    for t in trials:
        config_lib.apply_overrides(config.base, t, where="space")  # a typo fails before training
    return trials


def run_sweep(
    config,
    workdir,
    *,
    mesh: str | None = "auto",
    fit_fn=None,
    log: Callable[[str], None] = print,
    write_files: bool = True,
) -> dict[str, Any]:
    """Run a sweep config (module docstring) in ``workdir``.

    Args:
      config: a sweep config.
      workdir: output folder; finished trials are read back, unfinished groups resume.
      mesh: ``"auto"`` shards each population over every device, None keeps one.
      fit_fn: replaces :func:`convjax.train.engine.fit` (tests use it).
      log: progress printer.
      write_files: write the tables, best config and plots (process 0 of a multi-process run).

    Returns:
      ``{"records": ranked per-trial records, "metric", "time_s", "files"}``.
    """
    workdir = Path(workdir)
    trials = expand_trials(config)
    runs = [
        Run(
            f"trial {i}",
            config_lib.apply_overrides(config.base, t, where="space"),
            workdir / "trials" / str(i),
        )
        for i, t in enumerate(trials)
    ]
    metric = config.get("metric", "val_accuracy")
    t0 = time.perf_counter()
    schedule = {k: _plain(config[k]) for k in ("halving", "pbt") if config.get(k, None)}
    results = train_runs(
        runs,
        workdir,
        schedule=schedule,
        population_fields=tuple(config.get("population_fields", None) or POPULATION_FIELDS),
        strategy=config.get("strategy", "auto"),
        mesh=mesh,
        fit_fn=fit_fn,
        log=log,
    )
    records = [
        {"trial": i, **trials[i], **{k: r.get(k) for k in _SUMMARY_KEYS}}
        for i, r in enumerate(results)
    ]
    # Trials a schedule stopped early were measured at a smaller budget: they rank below the
    # trials that trained to the end, whatever their metric then.
    ranked = sorted(records, key=lambda r: (r.get("status") == "stopped", -_key(r.get(metric))))
    out = {
        "records": ranked,
        "metric": metric,
        "time_s": time.perf_counter() - t0,
        "member_epochs": sum(r.get("stopped_epoch") or 0.0 for r in records),
        "files": {},
    }
    if write_files:
        best_cfg = runs[ranked[0]["trial"]].config
        out["files"] = write_outputs(config, workdir, ranked, list(trials[0]), metric, best_cfg)
    return out


_SUMMARY_KEYS = (
    "stopped_epoch",
    "val_accuracy",
    "test_accuracy",
    "epochs_run",
    "status",
    "train_time_s",
    "images_per_s",
    "members",
    "strategy",
)


def _plain(x):
    return x.to_dict() if hasattr(x, "to_dict") else dict(x)


def _key(v) -> float:
    return -math.inf if v is None else float(v)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_outputs(config, workdir: Path, ranked, fields, metric, best_cfg) -> dict[str, str]:
    """results.csv/.md (sorted by ``metric``), best_config.py, metric_vs_<field>.png."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    name = config.get("name", workdir.name)
    rows = [
        [
            rank,
            *(_fmt(r[f]) for f in fields),
            pct(r["val_accuracy"]),
            pct(r["test_accuracy"]),
            r["status"],
            _fmt(r.get("stopped_epoch")),
            r["members"],
        ]
        for rank, r in enumerate(ranked, start=1)
    ]
    md = f"### sweep {name}: {len(ranked)} trials, sorted by {metric}\n\n" + report.markdown_table(
        ["rank", *fields, "val acc (%)", "test acc (%)", "status", "epochs trained", "population"],
        rows,
    )
    configs = compare_configurations(ranked, fields, metric)
    md += "\n" + configurations_markdown(configs, fields, metric)
    (workdir / "results.md").write_text(md)
    files = {"results.md": str(workdir / "results.md")}
    if configs["rows"]:
        others = [f for f in fields if f != SEED_FIELD]
        files["configurations.csv"] = str(
            report.write_csv(
                workdir / "configurations.csv",
                configs["rows"],
                [
                    "rank",
                    *others,
                    "seeds",
                    f"{metric}_mean",
                    f"{metric}_std",
                    "test_accuracy_mean",
                    "test_accuracy_std",
                    "trials",
                    *_COMPARISON_FIELDS,
                ],
            )
        )
    csv_rows = [{"rank": k, **r} for k, r in enumerate(ranked, start=1)]
    files["results.csv"] = str(
        report.write_csv(
            workdir / "results.csv",
            csv_rows,
            [
                "rank",
                "trial",
                *fields,
                "val_accuracy",
                "test_accuracy",
                "status",
                "stopped_epoch",
                "epochs_run",
                "members",
            ],
        )
    )
    best = ranked[0]
    doc = (
        f"Best trial of sweep {name!r} ({metric} {pct(best.get(metric))}%, test "
        f"{pct(best.get('test_accuracy'))}%): "
        + ", ".join(f"{f}={_fmt(best[f])}" for f in fields)
        + f".\n\nWritten by experiments/sweep.py into {workdir}. Train it alone with::\n\n"
        f"    .venv/bin/python experiments/train.py --config={workdir}/best_config.py "
        "--workdir=workdirs/best"
    )
    (workdir / "best_config.py").write_text(config_source(best_cfg, docstring=doc))
    files["best"] = str(workdir / "best_config.py")
    for f in fields:
        pts = [(r[f], r[metric]) for r in ranked if r.get(metric) is not None]
        if len(pts) != len(ranked):
            continue
        fig = report.metric_vs_field_figure(*zip(*pts), field=f, metric=metric)
        path = workdir / f"metric_vs_{f.replace('.', '_')}.png"
        files[path.name] = str(report.save_figure(fig, path))
    return files


_COMPARISON_FIELDS = (
    "paired_seeds",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "t_pvalue",
    "wilcoxon_pvalue",
    "seeds_for_0.1_point",
)


def _std(values) -> float | None:
    return float(np.std(values, ddof=1)) if len(values) > 1 else None


def compare_configurations(ranked, fields, metric) -> dict[str, Any]:
    """Trials that differ only in ``seed`` as one configuration each, compared with the best.

    Args:
      ranked: per-trial records (``{"trial", field: value, ..., metric, "test_accuracy"}``).
      fields: the swept field paths.
      metric: the field configurations are ranked and compared on.

    Returns:
      ``{"rows": [...], "message": str | None, "notes": [...]}``. ``rows`` (sorted by the mean
      metric, best first; empty when no configuration has two seeds) hold the other fields'
      values, ``seeds``, the metric's and the test accuracy's mean and std over seeds, the
      ``trials`` folded in, and, for all but the best, the comparison with the best paired by
      seed (``comparison``, a :class:`~convjax.train.stats.PairedComparison`, and its figures
      as flat fields). ``message`` says why there is no table.
    """
    if SEED_FIELD not in fields:
        return {
            "rows": [],
            "notes": [],
            "message": "Statistics need at least two seeds per configuration; this sweep does "
            f"not vary `{SEED_FIELD}` (add e.g. ({SEED_FIELD!r}, (0, 1, 2)) to its space).",
        }
    others = [f for f in fields if f != SEED_FIELD]
    groups: dict[str, dict[str, Any]] = {}
    notes = []
    for r in sorted(ranked, key=lambda r: r["trial"]):
        key = repr(tuple(r[f] for f in others))
        g = groups.setdefault(
            key, {**{f: r[f] for f in others}, "values": {}, "test": {}, "trials": []}
        )
        g["trials"].append(r["trial"])
        seed, value = r[SEED_FIELD], r.get(metric)
        if r.get("status") == "stopped":
            notes.append(
                f"trial {r['trial']} (seed {seed}) was stopped by the schedule at a smaller "
                "budget: left out"
            )
        elif value is None or not math.isfinite(float(value)):
            notes.append(f"trial {r['trial']} (seed {seed}) has no {metric}: left out")
        elif seed in g["values"]:
            notes.append(f"trial {r['trial']} repeats seed {seed} of its configuration: left out")
        else:
            g["values"][seed] = float(value)
            if r.get("test_accuracy") is not None:
                g["test"][seed] = float(r["test_accuracy"])
    usable = [g for g in groups.values() if g["values"]]
    if not usable or max(len(g["values"]) for g in usable) < 2:
        return {
            "rows": [],
            "notes": notes,
            "message": "Statistics need at least two seeds per configuration; here every "
            "configuration has one.",
        }
    usable.sort(key=lambda g: -float(np.mean(list(g["values"].values()))))
    best = usable[0]
    rows = []
    for rank, g in enumerate(usable, start=1):
        vals, test = list(g["values"].values()), list(g["test"].values())
        comparison = None
        if g is not best:
            if set(g["values"]) & set(best["values"]):
                comparison = stats_lib.compare_paired(
                    g["values"],
                    best["values"],
                    delta=RESOLVE,
                    resamples=BOOTSTRAP_RESAMPLES,
                    seed=BOOTSTRAP_SEED,
                )
                notes += [f"configuration {rank}: {n}" for n in comparison.notes]
            else:
                notes.append(f"configuration {rank} shares no seed with the best: nothing to pair")
        ok = comparison is not None and comparison.n > 1
        rows.append(
            {
                "rank": rank,
                **{f: g[f] for f in others},
                "seeds": len(vals),
                f"{metric}_mean": float(np.mean(vals)),
                f"{metric}_std": _std(vals),
                f"{metric}_values": vals,
                "test_accuracy_mean": float(np.mean(test)) if test else None,
                "test_accuracy_std": _std(test),
                "test_accuracy_values": test,
                "trials": " ".join(map(str, g["trials"])),
                "best": g is best,
                "comparison": comparison,
                "paired_seeds": comparison.n if comparison is not None else None,
                "diff_mean": comparison.mean_difference if ok else None,
                "diff_ci_low": comparison.interval[0] if ok else None,
                "diff_ci_high": comparison.interval[1] if ok else None,
                "t_pvalue": comparison.t_pvalue if ok else None,
                "wilcoxon_pvalue": comparison.wilcoxon_pvalue if ok else None,
                "seeds_for_0.1_point": comparison.seeds_needed if ok else None,
            }
        )
    return {"rows": rows, "notes": notes, "message": None}


def configurations_markdown(configs, fields, metric) -> str:
    """The configurations table of :func:`compare_configurations`, its legend and notes (or
    the message saying why there is none), as Markdown."""
    if not configs["rows"]:
        return configs["message"] + "\n"
    others = [f for f in fields if f != SEED_FIELD]
    short = {"val_accuracy": "val acc (%)", "test_accuracy": "test acc (%)"}
    rows = [
        [
            r["rank"],
            *(_fmt(r[f]) for f in others),
            r["seeds"],
            report.mean_std(r[f"{metric}_values"]),
            *([] if metric == "test_accuracy" else [report.mean_std(r["test_accuracy_values"])]),
            *(
                report.comparison_cells(None, baseline_label="best")
                if r["best"]
                else report.comparison_cells(r["comparison"])
                if r["comparison"] is not None
                else ["-"] * len(report.COMPARISON_COLUMNS)
            ),
        ]
        for r in configs["rows"]
    ]
    columns = [
        "rank",
        *others,
        "seeds",
        short[metric],
        *([] if metric == "test_accuracy" else [short["test_accuracy"]]),
        *(c.format(baseline="best") for c in report.COMPARISON_COLUMNS),
    ]
    n = min((r["paired_seeds"] for r in configs["rows"] if r["paired_seeds"]), default=0)
    md = (
        f"#### configurations: mean over seeds, sorted by {metric}, each against the best\n\n"
        + report.markdown_table(columns, rows)
        + "\n"
        + report.statistics_legend(
            n, baseline="the best configuration", resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED
        )
        + f"\nThe best configuration is picked on these same {metric} numbers, so the differences "
        "from it lean in its favour; confirm a winner on fresh seeds or the test split.\n"
    )
    if configs["notes"]:
        md += "\nNotes:\n\n" + "".join(f"- {n}\n" for n in configs["notes"])
    return md
