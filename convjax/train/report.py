"""Everything a run, an ablation or a sweep writes for people to read: JSON, tables, figures.

- JSON: :func:`write_json` (atomic: a temporary file, then a rename, so a kill never leaves half
  a file) and :func:`read_json`.
- Tables: :func:`markdown_table` and :func:`write_csv` from rows of dicts; :func:`mean_std`
  formats a mean over seeds (one seed prints no "± 0.00", which would claim a spread that was
  never measured); :func:`comparison_cells` and :func:`statistics_legend` print a variant
  against its baseline (:class:`convjax.train.stats.PairedComparison`) and say how to read it.
- Figures: each function draws on its own :class:`matplotlib.figure.Figure` and saves it; the
  global matplotlib backend is never touched, so importing convjax in a notebook changes
  nothing about the user's plots.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COMPARISON_COLUMNS",
    "comparison_cells",
    "difference_figure",
    "figure",
    "learning_curves_figure",
    "markdown_table",
    "mean_std",
    "metric_vs_field_figure",
    "read_json",
    "save_figure",
    "statistics_legend",
    "variant_accuracy_figure",
    "variant_curves_figure",
    "write_csv",
    "write_json",
]


# ---------------------------------------------------------------------------- JSON


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if callable(x):
        return f"{getattr(x, '__module__', '?')}:{getattr(x, '__qualname__', repr(x))}"
    return str(x)


def write_json(path, obj) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (temporary file, then ``os.replace``)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)
    return path


def read_json(path) -> Any:
    """The JSON value stored in ``path``."""
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------------- tables


def mean_std(values: Sequence[float], *, scale: float = 100.0, digits: int = 2) -> str:
    """``"93.36 ± 0.11"``: mean and sample std (ddof=1) of ``values * scale``; one value prints
    just the value, none prints ``"-"``."""
    vals = [scale * float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return "-"
    if len(vals) == 1:
        return f"{vals[0]:.{digits}f}"
    return f"{np.mean(vals):.{digits}f} ± {np.std(vals, ddof=1):.{digits}f}"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table: a header of ``columns`` and one line per row (cells as ``str``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(path, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    """Write ``rows`` (dicts) to ``path`` as CSV with ``columns`` (missing values empty)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: _cell(row.get(k)) for k in columns})
    return path


#: Markdown headers of :func:`comparison_cells`; ``{baseline}`` is filled in.
COMPARISON_COLUMNS = (
    "Δ vs {baseline} (points)",
    "95% CI of Δ",
    "t-test p",
    "Wilcoxon p",
    "seeds for 0.1 point",
)


def _p(p) -> str:
    return "-" if p is None else f"{p:#.2g}"


def comparison_cells(
    comparison, *, scale: float = 100.0, baseline_label: str = "baseline"
) -> list[str]:
    """Five Markdown cells (:data:`COMPARISON_COLUMNS`) for a
    :class:`~convjax.train.stats.PairedComparison`: the difference of means and its bootstrap
    interval in points (``scale`` times the metric), the paired t-test and Wilcoxon p-values,
    the number of seeds needed for ``comparison.delta``. ``None`` (the baseline's own row) prints
    ``baseline_label`` then dashes; a comparison over fewer than two seeds prints dashes: one seed
    has no spread to test against."""
    if comparison is None:
        return [baseline_label, "-", "-", "-", "-"]
    if comparison.n < 2:
        return ["-"] * 5
    lo, hi = comparison.interval
    return [
        f"{scale * comparison.mean_difference:+.2f}",
        f"[{scale * lo:+.2f}, {scale * hi:+.2f}]",
        _p(comparison.t_pvalue),
        _p(comparison.wilcoxon_pvalue),
        "-" if comparison.seeds_needed is None else str(comparison.seeds_needed),
    ]


def statistics_legend(
    n_seeds: int, *, baseline: str, resamples: int = 10_000, seed: int = 0
) -> str:
    """A paragraph saying how to read :func:`comparison_cells`' columns for ``n_seeds`` shared
    seeds: which tests, which interval, what the smallest p-values are."""
    if n_seeds < 2:
        return (
            f"Statistics against {baseline}: none, one seed per variant has no spread to test "
            "against (train at least two seeds).\n"
        )
    text = (
        f"Statistics against {baseline}, paired by seed over {n_seeds} shared seeds "
        "(`convjax.train.stats`): Δ is the mean of the per-seed differences in points; the "
        f"95% CI is a percentile bootstrap of that mean ({resamples} resamples, seed {seed}); "
        "p-values are two-sided, from the paired t-test and the Wilcoxon signed-rank test; "
        "the last column is the number of seeds a paired t-test needs to detect a true "
        "0.1-point difference (alpha 0.05, power 0.8) if the differences spread as observed. "
        f"With {n_seeds} seeds the Wilcoxon p cannot fall below {2 / 2**n_seeds:.2g}"
    )
    if n_seeds <= 3:
        text += (
            f", and the bootstrap has only {math.comb(2 * n_seeds - 1, n_seeds)} distinct "
            "resamples, so its interval is the range of the per-seed differences (for a "
            "symmetric spread it covers the true difference about "
            f"{100 * (1 - 2 / 2**n_seeds):.0f}% of the time, not 95%)"
        )
    return text + ".\n"


def _cell(v):
    if isinstance(v, (list, tuple)):
        return "x".join(str(x) for x in v)
    return v


# ---------------------------------------------------------------------------- figures


def figure(width: float, height: float, *, ncols: int = 1, nrows: int = 1):
    """A new ``(Figure, axes)`` with constrained layout, independent of pyplot's state."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_figure(fig, path, *, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG at ``path``."""
    fig.savefig(path, dpi=dpi)
    return Path(path)


def _epochs_axis(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers


def learning_curves_figure(
    history: Mapping[str, list],
    *,
    train_points: Sequence[tuple[float, float, float]] = (),
    label_smoothing: float = 0.0,
):
    """Loss and accuracy: a point per logged training interval and per evaluation.

    Args:
      history: per-epoch lists (``convjax.train.state.HISTORY_KEYS``; None = not measured).
      train_points: ``(epoch as a float, loss, accuracy)`` of every ``train_log`` record, so
        the training curve shows what happened inside each epoch.
      label_smoothing: the smoothing the training loss was computed with; the label says so,
        since such a loss sits above the evaluation loss (which has no smoothing).
    """
    fig, ((ax_loss, ax_acc),) = figure(9.5, 3.6, ncols=2)
    train_label = "train (per log interval)"
    if label_smoothing:
        train_label += f", label smoothing {label_smoothing:g}"
    if train_points:
        xs, losses, accs = zip(*train_points)
        ax_loss.plot(xs, losses, "-", color="tab:blue", alpha=0.5, label=train_label)
        ax_acc.plot(xs, 100 * np.asarray(accs), "-", color="tab:blue", alpha=0.5, label="train")
    colours = {"train": "tab:blue", "val": "tab:orange", "test": "tab:green"}
    names = {"train": "train (epoch mean)", "val": "validation", "test": "test"}
    for split in ("train", "val", "test"):
        for ax, key, scale in ((ax_loss, "loss", 1.0), (ax_acc, "accuracy", 100.0)):
            vals = history.get(f"{split}_{key}") or []
            pts = [(i + 1, scale * v) for i, v in enumerate(vals) if v is not None]
            if pts and not (split == "train" and train_points and key == "accuracy"):
                e, v = zip(*pts)
                ax.plot(
                    e,
                    v,
                    "o-" if split != "train" else "o",
                    color=colours[split],
                    label=names[split],
                )
    ax_loss.set_ylabel("loss (evaluation: no smoothing)" if label_smoothing else "loss")
    ax_acc.set_ylabel("accuracy (%)")
    for ax in (ax_loss, ax_acc):
        _epochs_axis(ax)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    return fig


def variant_accuracy_figure(
    names: Sequence[str],
    means: Sequence[float],
    intervals: Sequence[tuple[float, float] | None],
    *,
    ylabel: str = "test accuracy (%)",
    title: str = "",
):
    """A bar per variant with its interval (e.g. a 95% confidence interval of the mean), the
    value axis starting near the data so that differences of tenths of a point are visible."""
    fig, ((ax,),) = figure(1.3 * len(names) + 2.2, 3.4)
    lo_err = [m - iv[0] if iv else 0.0 for m, iv in zip(means, intervals)]
    hi_err = [iv[1] - m if iv else 0.0 for m, iv in zip(means, intervals)]
    ax.bar(range(len(names)), means, color="tab:blue", alpha=0.75)
    ax.errorbar(
        range(len(names)), means, yerr=[lo_err, hi_err], fmt="none", ecolor="black", capsize=4
    )
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 4 else 0)
    lo = min(m - e for m, e in zip(means, lo_err))
    hi = max(m + e for m, e in zip(means, hi_err))
    pad = max(0.2, 0.25 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def difference_figure(
    names: Sequence[str],
    differences: Sequence[float],
    intervals: Sequence[tuple[float, float] | None],
    *,
    baseline: str,
    ylabel: str = "Δ test accuracy (points)",
    title: str = "",
):
    """A point per variant at its difference from ``baseline`` with its interval (e.g. the
    95% paired bootstrap interval), and a line at zero: an interval that crosses it does not
    separate the variant from the baseline."""
    fig, ((ax,),) = figure(max(4.8, 1.3 * len(names) + 2.2), 3.4)
    # max(0, ...): the bootstrap mean of equal differences can miss them by an ulp
    lo_err = [max(0.0, d - iv[0]) if iv else 0.0 for d, iv in zip(differences, intervals)]
    hi_err = [max(0.0, iv[1] - d) if iv else 0.0 for d, iv in zip(differences, intervals)]
    ax.axhline(0.0, color="grey", linewidth=1, label=baseline)
    ax.errorbar(
        range(len(names)),
        differences,
        yerr=[lo_err, hi_err],
        fmt="o",
        color="tab:blue",
        ecolor="black",
        capsize=4,
    )
    ax.set_xticks(range(len(names)), names, rotation=20 if len(names) > 4 else 0)
    ax.set_xlim(-0.6, len(names) - 0.4)
    lo = min(0.0, *(d - e for d, e in zip(differences, lo_err)))
    hi = max(0.0, *(d + e for d, e in zip(differences, hi_err)))
    pad = max(0.05, 0.15 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def variant_curves_figure(curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]]):
    """Every run's accuracy curve, one colour per variant (``{variant: [[(epoch, acc)]]}``)."""
    fig, ((ax,),) = figure(5.8, 3.6)
    colours = [f"C{i}" for i in range(10)]
    for i, (name, runs) in enumerate(curves.items()):
        for j, curve in enumerate(runs):
            if not curve:
                continue
            xs, ys = zip(*curve)
            ax.plot(
                xs,
                100 * np.asarray(ys),
                "o-",
                markersize=3,
                alpha=0.7,
                color=colours[i % len(colours)],
                label=name if j == 0 else None,
            )
    _epochs_axis(ax)
    ax.set_ylabel("accuracy (%)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


#: Fields whose sweeps span orders of magnitude: drawn on a log axis.
LOG_FIELDS = ("learning_rate", "weight_decay")


def metric_vs_field_figure(
    xs: Sequence[Any],
    ys: Sequence[float],
    field: str,
    metric: str,
    stopped: Sequence[bool] | None = None,
):
    """The metric (a fraction, drawn in %) of every trial against one swept field's values.

    ``stopped`` marks trials a schedule stopped early: drawn hollow, since their metric was
    measured at a smaller budget than the finished trials' (filled).
    """
    from matplotlib.ticker import LogLocator, MaxNLocator, NullFormatter, NullLocator

    fig, ((ax,),) = figure(4.8, 3.4)
    numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
    ys = 100 * np.asarray(ys, float)
    early = np.zeros(len(ys), bool) if stopped is None else np.asarray(stopped, bool)
    if numeric:
        pos = np.asarray(xs, float)
    else:
        cats = list(dict.fromkeys(map(str, xs)))
        pos = np.asarray([cats.index(str(x)) for x in xs], float)
    ax.scatter(
        pos[~early], ys[~early], alpha=0.8, label="trained to the end" if early.any() else None
    )
    if early.any():
        ax.scatter(
            pos[early],
            ys[early],
            facecolors="none",
            edgecolors="C0",
            alpha=0.8,
            label="stopped early (at its last rung)",
        )
        ax.legend(fontsize="small", loc="best")
    if numeric:
        if field.rsplit(".", 1)[-1] in LOG_FIELDS and all(x > 0 for x in xs):
            ax.set_xscale("log")
            values = sorted(set(xs))
            if len(values) <= 6:  # a grid: label exactly the swept values
                ax.set_xticks(values, [f"{v:g}" for v in values])
                ax.xaxis.set_minor_locator(NullLocator())
            else:  # a random search: decades only, no crowded minor labels
                ax.xaxis.set_major_locator(LogLocator(numticks=6))
                ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    else:
        ax.set_xticks(range(len(cats)), cats, rotation=30 if len(cats) > 4 else 0)
    ax.set_xlabel(field)
    ax.set_ylabel(f"{metric} (%)")
    return fig
