"""A sweep's tables and figures: ``results.md``/``results.csv`` (trials ranked by the metric,
with the epochs each trained), the configurations over seeds compared with the best one
(``convjax.train.stats``; ``configurations.csv``), ``best_config.py`` and
``metric_vs_<field>.png``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from convjax.train import report
from convjax.train import stats as stats_lib
from convjax.train.config_files import config_source

#: The run-config field whose values are seeds: trials differing only in it are repeats.
SEED_FIELD = "seed"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_outputs(config, workdir: Path, ranked, fields, metric, best_cfg) -> dict[str, str]:
    """results.csv/.md (sorted by ``metric``), best_config.py, metric_vs_<field>.png, and with
    population-based training pbt_<field>.png and each trial's values at the end."""
    pct = lambda v: "-" if v is None else f"{100 * v:.2f}"
    name = config.get("name", workdir.name)
    explored = _explored_fields(ranked, fields)
    rows = [
        [
            rank,
            *(_fmt(r[f]) for f in fields),
            pct(r["val_accuracy"]),
            pct(r["test_accuracy"]),
            r["status"],
            _fmt(r.get("stopped_epoch")),
            r["members"],
            *map(_fmt, _pbt_values(r, explored)),
        ]
        for rank, r in enumerate(ranked, start=1)
    ]
    md = f"### sweep {name}: {len(ranked)} trials, sorted by {metric}\n\n"
    if explored:
        md += (
            "Population-based training: the swept columns are each trial's starting values, "
            "'at end' its values after the last exploit round, 'copies' how often it took a "
            "better member's weights (the schedules: pbt_<field>.png).\n\n"
        )
    md += report.markdown_table(
        [
            "rank",
            *fields,
            "val acc (%)",
            "test acc (%)",
            "status",
            "epochs trained",
            "population",
            *(f"{f} at end" for f in explored),
            *(["copies"] if explored else []),
        ],
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
                    *stats_lib.COMPARISON_COLUMNS,
                ],
            )
        )
    csv_rows = [
        {"rank": k, **r, **dict(zip(_pbt_csv_columns(explored), _pbt_values(r, explored)))}
        for k, r in enumerate(ranked, start=1)
    ]
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
                *_pbt_csv_columns(explored),
            ],
        )
    )
    best = ranked[0]
    doc = (
        f"Best trial of sweep {name!r} ({metric} {pct(best.get(metric))}%, test "
        f"{pct(best.get('test_accuracy'))}%): "
        + ", ".join(f"{f}={_fmt(best[f])}" for f in fields)
        + (
            " (its starting values: population-based training changed them and copied other "
            "members' weights, so training this config alone is a different run)"
            if explored
            else ""
        )
        + f".\n\nWritten by experiments/sweep.py into {workdir}. Train it alone with::\n\n"
        f"    .venv/bin/python experiments/train.py --config={workdir}/best_config.py "
        "--workdir=workdirs/best"
    )
    (workdir / "best_config.py").write_text(config_source(best_cfg, docstring=doc))
    files["best"] = str(workdir / "best_config.py")
    for f in fields:
        pts = [(r[f], r[metric], r.get("status") == "stopped") for r in ranked]
        if any(y is None for _, y, _ in pts):
            continue
        xs, ys, stopped = zip(*pts)
        fig = report.metric_vs_field_figure(xs, ys, field=f, metric=metric, stopped=stopped)
        path = workdir / f"metric_vs_{f.replace('.', '_')}.png"
        files[path.name] = str(report.save_figure(fig, path))
    files.update(_pbt_figures(workdir, ranked, explored))
    return files


def _explored_fields(ranked, fields) -> list[str]:
    """The swept fields a population-based training schedule changed (none without PBT)."""
    schedules = [r.get("hparam_schedule") or [] for r in ranked]
    return [f for f in fields if any(len({e.get(f) for e in s}) > 1 for s in schedules)]


def _pbt_csv_columns(explored) -> list[str]:
    return [*(f"{f}_end" for f in explored), "copies"] if explored else []


def _pbt_values(record, explored) -> list:
    """One trial's values of the explored fields at the end of training, and its copies."""
    if not explored:
        return []
    schedule = record.get("hparam_schedule") or [{}]
    copies = sum(e.get("copied_from") is not None for e in schedule)
    return [*(schedule[-1].get(f) for f in explored), copies]


def _pbt_figures(workdir: Path, ranked, explored) -> dict[str, str]:
    """pbt_<field>.png: every trial's schedule of each explored field against epochs."""
    from convjax.train.schedules import pbt_schedule_figure

    by_trial = sorted(ranked, key=lambda r: r["trial"])
    trained = [r for r in by_trial if r.get("stopped_epoch")]
    if not explored or not trained:
        return {}
    steps_per_epoch = trained[0]["steps"] / trained[0]["stopped_epoch"]
    files = {}
    for f in explored:
        fig = pbt_schedule_figure(
            [r["hparam_schedule"] for r in by_trial],
            f,
            steps_per_epoch,
            total_steps=max(r["steps"] for r in trained),
            labels=[f"trial {r['trial']}" for r in by_trial],
        )
        path = workdir / f"pbt_{f.replace('.', '_')}.png"
        files[path.name] = str(report.save_figure(fig, path))
    return files


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
                )
                notes += [f"configuration {rank}: {n}" for n in comparison.notes]
            else:
                notes.append(f"configuration {rank} shares no seed with the best: nothing to pair")
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
                **stats_lib.comparison_columns(comparison),
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
        + report.statistics_legend(n, baseline="the best configuration")
        + f"\nThe best configuration is picked on these same {metric} numbers, so the differences "
        "from it lean in its favour; confirm a winner on fresh seeds or the test split.\n"
    )
    if configs["notes"]:
        md += "\nNotes:\n\n" + "".join(f"- {n}\n" for n in configs["notes"])
    return md
