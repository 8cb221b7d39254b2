"""Is a variant really better than its baseline? Paired statistics over seeds.

An ablation or a sweep trains every variant on the same seeds; seed ``s`` gives both the same
initialisation and batch order, so the per-seed differences ``d_s = variant_s - baseline_s``
carry the comparison and the seed-to-seed spread that both share cancels. For a variant
against a baseline (:func:`compare_paired`), over the random seeds both have:

- **difference of means**: ``mean(d)``.
- **95% confidence interval**: a paired *percentile* bootstrap of ``mean(d)``
  (:func:`bootstrap_interval`): resample the ``n`` differences with replacement (10000 times,
  seeded, so the same data always gives the same interval), take each resample's mean, and
  report the 2.5th and 97.5th percentiles. Percentile rather than BCa: BCa's acceleration is a
  jackknife over the ``n`` differences, which with three seeds rests on three leave-one-out
  means. **With few seeds the bootstrap knows little.** Three differences have only 10
  distinct resamples (multisets of size 3). The resample that repeats the smallest
  difference three times has probability 1/27 = 3.7%, more than the 2.5% tail, and likewise
  the largest, so the interval is exactly ``[min(d), max(d)]``: the range of the three
  differences. As an interval for the true mean difference its coverage is far below 95%
  (for a symmetric distribution, about 75%: the chance that three draws do not all fall on
  one side of the centre, 1 - 2/8). Two differences give their range too (3 resamples,
  coverage about 50%).
- **paired t-test** p-value (two-sided, ``scipy.stats.ttest_1samp`` on ``d``, the same
  numbers as ``scipy.stats.ttest_rel``): assumes normal differences.
- **Wilcoxon signed-rank** p-value (two-sided, ``scipy.stats.wilcoxon`` on ``d`` with its
  defaults: zero differences are dropped; the exact null distribution for up to 50
  differences, and when ``d`` has ties or zeros an exhaustive walk over the ``2**n`` sign
  patterns for up to 13, the normal approximation beyond): no normality assumed, but with
  ``n`` seeds the smallest two-sided p is ``2 / 2**n``: **0.25 with 3 seeds** (all three
  differences of one sign), 0.0625 with 5, 0.031 with 6. Fewer than 6 seeds cannot reach
  p < 0.05 with this test, whatever the data.
- **seeds to resolve** a difference ``delta`` (:func:`seeds_needed`): the number of seeds a
  paired t-test (two-sided, alpha 0.05) needs to detect a true mean difference of ``delta``
  with power 0.8, if the differences spread as much as observed (sample std ``s_d``,
  ddof=1). It is the smallest ``n >= 2`` with

      power(n) = P(|T| > t_{1-alpha/2, n-1}) >= 0.8,
      T ~ noncentral t(df = n - 1, noncentrality = sqrt(n) * delta / s_d),

  which for large ``n`` approaches ``n = (z_{1-alpha/2} + z_{power})**2 * (s_d / delta)**2
  = 7.85 (s_d / delta)**2``. ``s_d`` from three seeds is itself very uncertain: for
  normal differences the 95% confidence interval of the true std runs from 0.52 ``s_d`` to
  6.3 ``s_d`` (chi-square with 2 degrees of freedom), and the number of seeds needed grows with its
  square, so read the figure as an order of magnitude. ``s_d = 0`` (identical differences)
  leaves it undefined: None.

:func:`mean_interval` gives the per-variant t-interval of the mean that the accuracy plots
draw: ``mean ± t_{0.975, n-1} * s / sqrt(n)`` (with 3 seeds ``t = 4.30``, so ``± 2.48 s``).

Every function takes plain numbers (accuracies as fractions or in points: ``delta`` is in the
same unit) and raises ``ValueError`` naming the argument for input it cannot use.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "COMPARISON_COLUMNS",
    "PairedComparison",
    "bootstrap_interval",
    "compare_paired",
    "comparison_columns",
    "mean_interval",
    "seeds_needed",
]


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """A variant against its baseline over the random seeds both have (:func:`compare_paired`).

    Attributes:
      n: number of shared seeds (pairs).
      seeds: the shared seeds, sorted.
      dropped: ``{"variant": seeds only the variant has, "baseline": seeds only the baseline
        has}``; those runs take no part.
      mean_difference: ``mean(variant_s - baseline_s)`` over the shared seeds.
      std_difference: sample std (ddof=1) of the differences; None with one pair.
      interval: the 95% (``confidence``) percentile bootstrap interval of the mean difference
        ``(low, high)``; None with one pair.
      t_pvalue: paired t-test, two-sided; None with one pair or identical differences.
      wilcoxon_pvalue: Wilcoxon signed-rank, two-sided; None with one pair or all
        differences zero.
      seeds_needed: seeds a paired t-test needs to resolve ``delta`` with the given power;
        None with one pair or identical differences.
      delta: the difference ``seeds_needed`` refers to.
      notes: why a figure is None, which seeds were dropped.
    """

    n: int
    seeds: tuple
    dropped: dict
    mean_difference: float
    std_difference: float | None
    interval: tuple[float, float] | None
    t_pvalue: float | None
    wilcoxon_pvalue: float | None
    seeds_needed: int | None
    delta: float
    notes: tuple[str, ...] = ()


#: A table row's comparison cells (results.csv of ablations and sweeps), in order.
COMPARISON_COLUMNS = (
    "paired_seeds",
    "diff_mean",
    "diff_ci_low",
    "diff_ci_high",
    "t_pvalue",
    "wilcoxon_pvalue",
    "seeds_for_0.1_point",
)


def comparison_columns(comparison: PairedComparison | None) -> dict:
    """:data:`COMPARISON_COLUMNS` of one table row, from a comparison (None: the baseline's own
    row, or nothing to pair). One pair gives a difference without spread, so every figure
    waits for two pairs; ``paired_seeds`` says how many there were."""
    usable = comparison is not None and comparison.n > 1
    values = (
        (
            comparison.mean_difference,
            *comparison.interval,
            comparison.t_pvalue,
            comparison.wilcoxon_pvalue,
            comparison.seeds_needed,
        )
        if usable
        else (None,) * 6
    )
    n = comparison.n if comparison is not None else None
    return dict(zip(COMPARISON_COLUMNS, (n, *values)))


# ---------------------------------------------------------------------------- checks


def _fraction(name: str, value, example: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(
            f"{name}={value!r} must be a number strictly between 0 and 1, e.g. {example}."
        )
    return float(value)


def _positive_int(name: str, value, example: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive int, e.g. {example}.")
    return int(value)


def _finite_values(name: str, values) -> np.ndarray:
    if isinstance(values, (str, bytes, Mapping)) or not isinstance(values, (Sequence, np.ndarray)):
        raise ValueError(
            f"{name}={values!r} must be a sequence of numbers (one per seed), e.g. [0.93, 0.94]."
        )
    try:
        arr = np.asarray(values)
    except ValueError:  # ragged nesting
        arr = np.asarray([None])
    if arr.size and arr.dtype.kind not in "iuf":
        raise ValueError(
            f"{name}={values!r} must be a sequence of numbers (one per seed), e.g. [0.93, 0.94]."
        )
    arr = arr.astype(float)
    if arr.ndim != 1:
        raise ValueError(f"{name} has shape {arr.shape}; pass a flat sequence, one value per seed.")
    bad = [float(v) for v in arr if not math.isfinite(v)]
    if bad:
        raise ValueError(
            f"{name} holds {bad}; every value must be finite: leave out runs that diverged."
        )
    return arr


def _per_seed(name: str, values) -> dict:
    if not isinstance(values, Mapping):
        raise ValueError(
            f"{name}={values!r} must map seed -> value, e.g. {{0: 0.93, 1: 0.94}} "
            "(dict(zip(seeds, values)) builds one)."
        )
    if not values:
        raise ValueError(f"{name}={{}} is empty; it needs a value for at least one seed.")
    out = {}
    for seed, v in values.items():
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
            raise ValueError(f"{name}[{seed!r}]={v!r} must be a number (the seed's metric).")
        if not math.isfinite(float(v)):
            raise ValueError(
                f"{name}[{seed!r}]={v!r} is not finite; leave out a run that diverged."
            )
        out[seed] = float(v)
    return out


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} must be an int, e.g. 0.")
    return int(seed)


def _check_delta(delta) -> float:
    if (
        isinstance(delta, bool)
        or not isinstance(delta, (int, float, np.number))
        or not math.isfinite(delta)
        or delta <= 0
    ):
        raise ValueError(
            f"delta={delta!r} must be a finite number > 0: the difference to resolve, in the "
            "unit of the values (0.001 for 0.1 point of an accuracy given as a fraction)."
        )
    return float(delta)


def _check_options(delta, confidence, resamples, seed, alpha, power) -> None:
    _check_delta(delta)
    _fraction("confidence", confidence, "0.95")
    _positive_int("resamples", resamples, "10000")
    _check_seed(seed)
    _fraction("alpha", alpha, "0.05")
    _fraction("power", power, "0.8")


# ---------------------------------------------------------------------------- pieces


def mean_interval(
    values: Sequence[float], *, confidence: float = 0.95
) -> tuple[float, float] | None:
    """The t-interval of the mean of ``values`` (shape ``(n,)``, e.g. one variant's accuracy
    per seed): ``mean ± t_{(1+confidence)/2, n-1} * s / sqrt(n)``, ``s`` the sample std
    (ddof=1). None for one value (no spread measured).

    >>> lo, hi = mean_interval([1.0, 2.0, 3.0])  # 2 ± 4.303 * 1 / sqrt(3)
    >>> round(lo, 3), round(hi, 3)
    (-0.484, 4.484)
    """
    from scipy import stats

    confidence = _fraction("confidence", confidence, "0.95")
    x = _finite_values("values", values)
    if x.size == 0:
        raise ValueError("values is empty; pass one value per seed.")
    if x.size == 1:
        return None
    half = stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return float(x.mean() - half), float(x.mean() + half)


def bootstrap_interval(
    differences: Sequence[float],
    *,
    confidence: float = 0.95,
    resamples: int = 10_000,
    seed: int = 0,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``mean(differences)`` (shape ``(n,)``, one per seed).

    ``resamples`` times, draw ``n`` differences with replacement (``numpy.random.default_rng(
    seed)``, so the result is the same on every call) and take their mean; the interval is
    the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of those means. With
    ``n = 3`` it is ``[min, max]`` of the differences (module docstring). None for one
    difference.
    """
    confidence = _fraction("confidence", confidence, "0.95")
    resamples = _positive_int("resamples", resamples, "10000")
    seed = _check_seed(seed)
    d = _finite_values("differences", differences)
    if d.size == 0:
        raise ValueError("differences is empty; pass one difference per shared seed.")
    if d.size == 1:
        return None
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(lo), float(hi)


def _power(n: int, ratio: float, alpha: float) -> float:
    """Power of the two-sided paired t-test with ``n`` pairs when the true mean difference is
    ``ratio`` standard deviations of the differences."""
    from scipy import stats

    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = math.sqrt(n) * ratio
    return float(stats.nct.sf(crit, df, nc) + stats.nct.cdf(-crit, df, nc))


def seeds_needed(
    std_difference: float, delta: float, *, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Seeds a paired t-test needs to detect a mean difference ``delta`` with ``power``.

    The smallest ``n >= 2`` whose power (noncentral t, module docstring) reaches ``power``
    when the per-seed differences have standard deviation ``std_difference`` (same unit as
    ``delta``). None when ``std_difference`` is 0: a spread of zero, measured on a few seeds,
    says nothing about the spread of more.

    >>> seeds_needed(1.0, 1.0)  # normal approximation 7.85; the t-test needs 10
    10
    """
    alpha = _fraction("alpha", alpha, "0.05")
    power = _fraction("power", power, "0.8")
    delta = _check_delta(delta)
    if (
        isinstance(std_difference, bool)
        or not isinstance(std_difference, (int, float, np.number))
        or not math.isfinite(std_difference)
        or std_difference < 0
    ):
        raise ValueError(
            f"std_difference={std_difference!r} must be a finite number >= 0 (the sample std "
            "of the per-seed differences)."
        )
    if std_difference == 0:
        return None
    from scipy import stats

    ratio = float(delta) / float(std_difference)
    z = stats.norm.ppf(1 - alpha / 2) + stats.norm.ppf(power)
    # Start at the normal approximation (the t-test needs at least about that many) and walk
    # to the exact answer: a few steps, whatever the ratio.
    n = max(2, int((z / ratio) ** 2))
    while n > 2 and _power(n - 1, ratio, alpha) >= power:
        n -= 1
    while _power(n, ratio, alpha) < power:
        n += 1
    return n


def _snap(d: np.ndarray, scale: float) -> np.ndarray:
    # 0.9358 - 0.934 and 0.9363 - 0.9345 differ in their last bits (1.8e-3 both, as recorded
    # to 4 digits); the signed-rank test ranks such ties differently from true ties. Rounding
    # to 13 significant digits of the data's magnitude restores them and moves nothing
    # measurable (float64 keeps about 16).
    if scale == 0:
        return d
    quantum = 10.0 ** (math.floor(math.log10(scale)) - 12)
    return np.round(d / quantum) * quantum


# ---------------------------------------------------------------------------- the comparison


#: The difference the estimate of seeds needed refers to by default: 0.1 point of accuracy.
RESOLVE = 0.001
#: Bootstrap resamples and seed of the tables' intervals (the same data, the same interval).
BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0


def compare_paired(
    variant: Mapping[Any, float],
    baseline: Mapping[Any, float],
    *,
    delta: float = RESOLVE,
    confidence: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    alpha: float = 0.05,
    power: float = 0.8,
) -> PairedComparison:
    """``variant`` against ``baseline``, paired by seed (module docstring for each figure).

    Args:
      variant: ``{seed: metric}``, e.g. ``{0: 0.9350, 1: 0.9358, 2: 0.9363}``.
      baseline: ``{seed: metric}`` of the baseline.
      delta: the difference whose seeds-needed figure is reported, in the metric's unit
        (default 0.001: 0.1 point of an accuracy given as a fraction).
      confidence: of the bootstrap interval.
      resamples: bootstrap resamples.
      seed: the bootstrap's random seed.
      alpha, power: of the estimate of seeds needed.

    Returns:
      A :class:`PairedComparison`. Seeds that only one side has are dropped (named in
      ``dropped`` and ``notes``).

    Raises:
      ValueError: an argument is malformed, a value is not finite, or the two share no seed.
    """
    from scipy import stats

    _check_options(delta, confidence, resamples, seed, alpha, power)
    v = _per_seed("variant", variant)
    b = _per_seed("baseline", baseline)
    shared = [s for s in b if s in v]
    dropped = {
        "variant": tuple(s for s in v if s not in b),
        "baseline": tuple(s for s in b if s not in v),
    }
    if not shared:
        raise ValueError(
            f"variant (seeds {sorted(v, key=repr)}) and baseline (seeds {sorted(b, key=repr)}) "
            "share no seed, so nothing pairs; train both on the same seeds."
        )
    try:
        shared.sort()
    except TypeError:  # seeds of mixed types: keep the baseline's order
        pass
    notes = []
    for side, seeds in dropped.items():
        if seeds:
            notes.append(f"seeds {list(seeds)} only in the {side}: dropped (nothing to pair)")
    x = np.array([v[s] for s in shared])
    y = np.array([b[s] for s in shared])
    d = _snap(x - y, float(np.max(np.abs(np.concatenate([x, y])))))
    n = d.size
    # identical differences have std 0, though numpy's mean of three equal floats can miss
    # them by an ulp and leave a std of 1e-17 that would feed the t-test a 0/0
    identical = bool(np.all(d == d[0]))
    std = None if n == 1 else 0.0 if identical else float(d.std(ddof=1))
    interval = t_p = w_p = needed = None
    if n == 1:
        notes.append("one shared seed: no interval, test or spread")
    else:
        interval = bootstrap_interval(d, confidence=confidence, resamples=resamples, seed=seed)
        if identical:
            notes.append(
                "the differences are identical on every seed (std 0): t-test and seeds needed "
                "undefined"
            )
        else:
            t_p = float(stats.ttest_1samp(d, 0.0).pvalue)
        if np.all(d == 0):
            notes.append("no difference on any seed: the signed-rank test has nothing to rank")
        else:
            w_p = float(stats.wilcoxon(d).pvalue)
        needed = seeds_needed(std, delta, alpha=alpha, power=power)
    return PairedComparison(
        n=n,
        seeds=tuple(shared),
        dropped=dropped,
        mean_difference=float(d[0]) if identical else float(d.mean()),
        std_difference=std,
        interval=interval,
        t_pvalue=t_p,
        wilcoxon_pvalue=w_p,
        seeds_needed=needed,
        delta=float(delta),
        notes=tuple(notes),
    )
