"""Population schedules: successive halving and population-based training in one population.

Both act at fixed global steps of a population trained by :func:`convjax.train.engine.fit`, on
the live members' validation metric; the engine evaluates, calls the pure decision functions
here, and carries the decisions out (``convjax.train.epochs``). Every decision is a function of
the metrics and the step (PBT's random draws are keyed by its seed and the step), so a run
resumed from a checkpoint decides exactly as an uninterrupted one.

**Successive halving** (:class:`Halving`; Jamieson & Talwalkar 2016, with rung points as in
ASHA, Li et al. 2020). At each rung the live members are ranked by the metric and only the best
``1 / reduction_factor`` of them (at least one) train on. The others stop, and they leave the
stacked train state: the next steps run on fewer members, so their compute is reclaimed rather
than masked. A survivor's numbers are those of its solo run. Rungs are given in steps or epochs
(fractions allowed, e.g. a quarter epoch), or as ``min_epochs`` times powers of the reduction
factor below the run's length.

**Population-based training** (:class:`PBT`; Jaderberg et al. 2017). Every ``interval`` steps
the worst ``fraction`` of the members copy the weights and optimizer state of one of the best
``fraction`` (a gather on the member axis) and multiply each of the ``fields`` they explore by a
factor drawn from ``factors``, clipped to ``bounds``. The hyperparameters a member followed are
recorded in its results (``hparam_schedule``) and drawn by :func:`pbt_schedule_figure`.

A sweep config names a schedule with its ``halving`` or ``pbt`` field (plain dicts)::

    config.halving = {"rung_epochs": (0.25, 1.0), "reduction_factor": 4}
    config.pbt = {"interval_epochs": 0.5, "fraction": 0.25,
                  "fields": ("learning_rate", "weight_decay"),
                  "bounds": (("learning_rate", 1e-3, 1.0), ("weight_decay", 0.0, 1e-2))}
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["PBT", "Halving", "make_schedule", "pbt_schedule_figure"]

#: Metrics a schedule may rank on (computed on the validation split).
METRICS = ("val_accuracy", "val_loss")

#: Fields PBT may explore: all are per-member arrays of a population.
PBT_FIELDS = ("learning_rate", "weight_decay", "momentum", "label_smoothing", "model.dropout")


def _higher_is_better(metric: str) -> bool:
    return metric.endswith("accuracy")


def _ranked(values: Mapping[int, float], metric: str) -> list[int]:
    """Members best first; ties go to the lower member index (a stable, resumable order)."""
    sign = -1.0 if _higher_is_better(metric) else 1.0
    return sorted(values, key=lambda m: (sign * values[m], m))


@dataclasses.dataclass(frozen=True)
class Halving:
    """Successive halving: at each global step of ``rungs``, keep the best ``1/reduction_factor``.

    Attributes:
      rungs: global steps (after that many optimizer steps) at which to cut, increasing.
      reduction_factor: eta >= 2.
      metric: one of :data:`METRICS`.
    """

    rungs: tuple[int, ...]
    reduction_factor: int
    metric: str = "val_accuracy"

    def event_steps(self, total_steps: int) -> tuple[int, ...]:
        """The global steps at which this schedule acts."""
        del total_steps
        return self.rungs

    def survivors(self, values: Mapping[int, float]) -> list[int]:
        """The members that train on: the best ``max(1, n // reduction_factor)``."""
        keep = max(1, len(values) // self.reduction_factor)
        return sorted(_ranked(values, self.metric)[:keep])


@dataclasses.dataclass(frozen=True)
class PBT:
    """Population-based training every ``interval`` steps (module docstring).

    Attributes:
      interval: steps between exploit/explore rounds.
      fraction: share of members replaced each round (bottom) and used as sources (top).
      fields: hyperparameters explored, from :data:`PBT_FIELDS`.
      factors: the multipliers drawn for each explored field.
      bounds: ``{field: (low, high)}`` a perturbed value is clipped to.
      metric: one of :data:`METRICS`.
      seed: seeds the draws (with the step).
    """

    interval: int
    fraction: float = 0.25
    fields: tuple[str, ...] = ("learning_rate",)
    factors: tuple[float, ...] = (0.8, 1.25)
    bounds: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    metric: str = "val_accuracy"
    seed: int = 0

    def event_steps(self, total_steps: int) -> tuple[int, ...]:
        """Rounds strictly inside the run (none at its last step)."""
        return tuple(range(self.interval, total_steps, self.interval))

    def exploit_explore(
        self, step: int, values: Mapping[int, float], hparams: Mapping[int, Mapping[str, float]]
    ) -> list[tuple[int, int, dict[str, float]]]:
        """``[(member, copied from, its new hyperparameters)]`` for this round.

        ``values`` are the live members' metrics; ``hparams`` their current values of
        :attr:`fields`. The bottom ``ceil(fraction * n)`` members each copy a member drawn from
        the top as many, then perturb every explored field.
        """
        ranked = _ranked(values, self.metric)
        count = min(len(ranked) // 2, max(1, math.ceil(self.fraction * len(ranked))))
        if count == 0:
            return []
        rng = np.random.default_rng([self.seed, step])
        top, bottom = ranked[:count], ranked[-count:]
        out = []
        for member in bottom:
            source = int(top[rng.integers(len(top))])
            new = {}
            for field in self.fields:
                value = float(hparams[source][field]) * float(rng.choice(self.factors))
                lo, hi = self.bounds.get(field, (-math.inf, math.inf))
                new[field] = float(min(max(value, lo), hi))
            out.append((int(member), source, new))
        return out


def _steps(spec: Mapping[str, Any], key: str, steps_per_epoch: int) -> list[int] | None:
    if f"{key}_steps" in spec:
        return [int(s) for s in np.atleast_1d(spec[f"{key}_steps"])]
    if f"{key}_epochs" in spec:
        return [
            int(round(float(e) * steps_per_epoch)) for e in np.atleast_1d(spec[f"{key}_epochs"])
        ]
    return None


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def make_schedule(
    halving: Mapping[str, Any] | None,
    pbt: Mapping[str, Any] | None,
    *,
    steps_per_epoch: int,
    num_epochs: int,
    members: int,
    has_validation: bool,
) -> Halving | PBT | None:
    """The schedule a sweep config's ``halving`` / ``pbt`` dict names (None for neither).

    Raises:
      ValueError: both are given, an unknown key, a rung outside the run, a reduction factor
        below 2, an unknown field or metric, a schedule without a validation split to rank on.
    """
    halving = dict(halving or {})
    pbt = dict(pbt or {})
    if not halving and not pbt:
        return None
    _check(not (halving and pbt), "sweep config: halving and pbt are both set; pick one.")
    total = steps_per_epoch * num_epochs
    spec, name = (halving, "halving") if halving else (pbt, "pbt")
    metric = spec.get("metric", "val_accuracy")
    _check(metric in METRICS, f"sweep config: {name}.metric={metric!r} must be one of {METRICS}.")
    _check(
        has_validation,
        f"sweep config: {name} ranks members on the validation split, but base.validation_size "
        "is 0; set it (e.g. 5000).",
    )
    if halving:
        known = {"rung_steps", "rung_epochs", "min_epochs", "reduction_factor", "metric"}
        unknown = sorted(set(halving) - known)
        _check(
            not unknown, f"sweep config: halving has unknown keys {unknown}; use {sorted(known)}."
        )
        eta = halving.get("reduction_factor", 3)
        _check(
            isinstance(eta, int) and eta >= 2,
            f"sweep config: halving.reduction_factor={eta!r} must be an int >= 2.",
        )
        rungs = _steps(halving, "rung", steps_per_epoch)
        if rungs is None:
            low = float(halving.get("min_epochs", 1.0))
            _check(low > 0, f"sweep config: halving.min_epochs={low!r} must be > 0.")
            rungs, r = [], low
            while r * steps_per_epoch < total:
                rungs.append(int(round(r * steps_per_epoch)))
                r *= eta
        _check(
            bool(rungs) and all(0 < r < total for r in rungs) and rungs == sorted(set(rungs)),
            f"sweep config: halving rungs {rungs} (in steps) must increase strictly inside the "
            f"run's {total} steps.",
        )
        return Halving(tuple(rungs), eta, metric)
    known = {
        "interval_steps",
        "interval_epochs",
        "fraction",
        "fields",
        "factors",
        "bounds",
        "metric",
        "seed",
    }
    unknown = sorted(set(pbt) - known)
    _check(not unknown, f"sweep config: pbt has unknown keys {unknown}; use {sorted(known)}.")
    interval = _steps(pbt, "interval", steps_per_epoch)
    _check(
        interval is not None and len(interval) == 1 and 0 < interval[0] < total,
        f"sweep config: pbt needs one interval_steps or interval_epochs inside the run's {total} "
        f"steps, got {interval}.",
    )
    fields = tuple(pbt.get("fields", ("learning_rate",)))
    bad = [f for f in fields if f not in PBT_FIELDS]
    _check(not bad and fields, f"sweep config: pbt.fields has {bad or fields}; use {PBT_FIELDS}.")
    fraction = float(pbt.get("fraction", 0.25))
    _check(0 < fraction <= 0.5, f"sweep config: pbt.fraction={fraction!r} must be in (0, 0.5].")
    _check(members >= 2, f"sweep config: pbt needs a population of at least 2, got {members}.")
    bounds = {str(f): (float(lo), float(hi)) for f, lo, hi in pbt.get("bounds", ())}
    factors = tuple(float(x) for x in pbt.get("factors", (0.8, 1.25)))
    return PBT(interval[0], fraction, fields, factors, bounds, metric, int(pbt.get("seed", 0)))


def pbt_schedule_figure(
    schedules: Sequence[list[dict[str, Any]]],
    field: str,
    steps_per_epoch: float,
    *,
    total_steps: int | None = None,
    labels: Sequence[str] | None = None,
):
    """Each member's value of ``field`` against epochs, from the members' ``hparam_schedule``
    records: a step line per member, drawn to ``total_steps`` (the end of training), with a
    dot where the member copied another's state (an exploit round: the value jumps).

    ``labels`` name the lines (default ``"member i"``).
    """
    from convjax.train import report

    fig, ((ax,),) = report.figure(6.4, 3.8)
    for i, records in enumerate(schedules):
        xs = [r["step"] / steps_per_epoch for r in records]
        ys = [r[field] for r in records]
        if total_steps is not None and total_steps > records[-1]["step"]:
            xs.append(total_steps / steps_per_epoch)
            ys.append(ys[-1])
        color = f"C{i % 10}"
        label = labels[i] if labels is not None else f"member {i}"
        ax.step(xs, ys, where="post", color=color, alpha=0.8, label=label)
        copies = [(x, y) for r, x, y in zip(records, xs, ys) if r.get("copied_from") is not None]
        if copies:
            ax.plot(*zip(*copies), "o", color=color, markersize=3.5)
    ax.set_xlabel("epoch (dots: the member copied a better one's weights)")
    ax.set_ylabel(field)
    if field in ("learning_rate", "weight_decay"):
        ax.set_yscale("log")
    if len(schedules) <= 12:
        ax.legend(fontsize=7, ncol=2)
    return fig
