"""An ablation's tables and figures: per-variant means over seeds, each variant against the
baseline (``convjax.train.stats``: difference, paired bootstrap interval, t-test and Wilcoxon
p-values, seeds needed for a 0.1-point difference), ``results.md``/``results.csv``/``runs.csv``,
``accuracy.png``, ``differences.png`` and ``learning_curves.png``; and the same tables rebuilt
from a recorded ``runs.csv`` without retraining (:func:`tables_from_runs`).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convjax.train import report
from convjax.train import stats as stats_lib

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
    *stats_lib.COMPARISON_COLUMNS,
)


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
                )
                notes += list(comparison.notes)
        interval = stats_lib.mean_interval(acc) if acc.size else None
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
                **stats_lib.comparison_columns(comparison),
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
    md += "\n" + report.statistics_legend(n_shared, baseline=baseline)
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
