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
``experiments/train.py``), ``metric_vs_<field>.png`` per swept field (trials a schedule stopped
drawn hollow) and ``sweep.json`` (wall and train time, member-epochs against the full budget).

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

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train import sweep_space as ss
from convjax.train.engine import POPULATION_FIELDS
from convjax.train.runs import Run, train_runs
from convjax.train.sweep_tables import write_outputs

METRICS = ("val_accuracy", "test_accuracy")


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
      ``{"records": ranked per-trial records, "metric", "time_s" (this call's wall time),
      "train_time_s" (time in train steps over every resumed part), "member_epochs" (epochs
      trained, summed over trials; a schedule makes it less than trials x num_epochs),
      "files"}``. The same numbers, with the full budget's member-epochs and the best trial,
      go to ``workdir/sweep.json``.
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
        # A population's members share its train time: each carries an equal share, so the sum
        # is the sweep's time in train steps, over every resumed part (time_s is this call's).
        "train_time_s": sum(
            (r.get("train_time_s") or 0.0) / (r.get("members") or 1) for r in records
        ),
        "files": {},
    }
    if write_files:
        report.write_json(
            workdir / "sweep.json",
            {k: out[k] for k in ("metric", "time_s", "train_time_s", "member_epochs")}
            | {
                "full_budget_member_epochs": len(runs) * float(config.base.num_epochs),
                "best_trial": ranked[0]["trial"],
            },
        )
        best_cfg = runs[ranked[0]["trial"]].config
        out["files"] = write_outputs(config, workdir, ranked, list(trials[0]), metric, best_cfg)
    return out


_SUMMARY_KEYS = (
    "stopped_epoch",
    "steps",
    "hparam_schedule",
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
