"""Paired statistics over seeds: against scipy, hand-computed cases, bootstrap properties,
the seeds-needed figure, every error message."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from convjax.train import stats

# Two floats computed the same way by two routes agree to a few ulps; p-values and means here
# are O(1e-4 .. 1), so 1e-12 relative leaves room for reordered sums and nothing else.
RTOL = 1e-12


def test_hand_computed_case():
    # baseline 1, 2, 3, 4 and variant 2, 4, 4, 7 on seeds 0..3: differences d = 1, 2, 1, 3.
    # mean 1.75; deviations -0.75, 0.25, -0.75, 1.25; squares sum to 0.5625 + 0.0625 + 0.5625
    # + 1.5625 = 2.75; s^2 = 2.75 / 3, s = 0.957427; t = 1.75 / (s / 2) = 3.655631, df = 3.
    # For df = 3 the t CDF is closed-form: F(t) = 1/2 + (u / (1 + u^2) + atan(u)) / pi with
    # u = t / sqrt(3) = 2.110579: u / (1 + u^2) = 0.386940, atan(u) = 1.128325, F = 0.982324,
    # two-sided p = 2 (1 - F) = 0.035353.
    # Wilcoxon: |d| ranks with the tie at 1 sharing 1.5: 1.5, 3, 1.5, 4, all positive, so
    # W- = 0; of the 2^4 = 16 equally likely sign patterns only all-plus and all-minus give
    # min(W+, W-) = 0: p = 2 / 16 = 0.125.
    base = {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0}
    var = {0: 2.0, 1: 4.0, 2: 4.0, 3: 7.0}
    c = stats.compare_paired(var, base, delta=1.0)
    assert c.n == 4 and c.seeds == (0, 1, 2, 3) and c.notes == ()
    assert c.mean_difference == 1.75
    assert c.std_difference == pytest.approx(math.sqrt(2.75 / 3), rel=RTOL)
    t = 1.75 / (math.sqrt(2.75 / 3) / 2)
    u = t / math.sqrt(3)
    p_hand = 2 * (0.5 - (u / (1 + u * u) + math.atan(u)) / math.pi)
    assert p_hand == pytest.approx(0.035353, abs=5e-7)
    assert c.t_pvalue == pytest.approx(p_hand, rel=1e-9)  # scipy's t CDF vs the closed form
    assert c.wilcoxon_pvalue == 0.125
    # mixed signs, no ties: d = 1, -2, 3, 4 has W- = 2; sign patterns with W- <= 2 are {},
    # {1}, {2}: 3 of 16, and as many with W+ <= 2: p = 6 / 16 = 0.375
    c = stats.compare_paired({0: 1.0, 1: -2.0, 2: 3.0, 3: 4.0}, {s: 0.0 for s in range(4)})
    assert c.wilcoxon_pvalue == 0.375


@pytest.mark.parametrize("n", [3, 5, 8, 20])
def test_p_values_equal_scipy(n):
    rng = np.random.default_rng(n)
    y = 0.93 + 0.002 * rng.standard_normal(n)
    x = y + 0.001 + 0.001 * rng.standard_normal(n)
    c = stats.compare_paired(dict(enumerate(x)), dict(enumerate(y)))
    assert c.t_pvalue == pytest.approx(sps.ttest_rel(x, y).pvalue, rel=1e-9)
    assert c.wilcoxon_pvalue == pytest.approx(sps.wilcoxon(x, y).pvalue, rel=1e-9)
    assert c.mean_difference == pytest.approx(np.mean(x - y), rel=1e-9)


def test_three_seeds_smallest_wilcoxon_p_and_ties_from_float_noise():
    # the recorded pooling runs: L2 vs max per seed 0/1/2. Differences 0.26, 0.18, 0.18 points;
    # 0.9358 - 0.934 and 0.9363 - 0.9345 differ in their last bits but are one tie.
    base = {0: 0.9324, 1: 0.9340, 2: 0.9345}
    l2 = {0: 0.9350, 1: 0.9358, 2: 0.9363}
    c = stats.compare_paired(l2, base)
    assert c.wilcoxon_pvalue == 0.25  # all three of one sign: 2 / 2^3, the smallest there is
    assert c.mean_difference == pytest.approx(0.62e-2 / 3, abs=1e-15)
    # d = (26, 18, 18) e-4: s = 8e-4 / sqrt(3) (deviations 16/3, -8/3, -8/3 e-4)
    assert c.std_difference == pytest.approx(8e-4 / math.sqrt(3), rel=1e-9)
    # with 3 differences the percentile bootstrap interval is [min, max] (module docstring)
    assert c.interval == pytest.approx((0.0018, 0.0026), abs=1e-15)


def test_bootstrap_interval_properties():
    d = [0.3, -0.1, 0.5, 0.2, 0.0]
    a = stats.bootstrap_interval(d, seed=3)
    assert a == stats.bootstrap_interval(d, seed=3)  # deterministic for a seed
    assert a != stats.bootstrap_interval(d, seed=4)
    assert a[0] < np.mean(d) < a[1]
    for seed in range(5):  # other data, other seeds: the mean is always inside
        x = np.random.default_rng(seed).exponential(size=7)
        lo, hi = stats.bootstrap_interval(x, seed=seed)
        assert lo < x.mean() < hi
    # width shrinks with more seeds: the same 4 values repeated 16 times have the same plug-in
    # spread, so the bootstrap std of the mean falls by sqrt(64 / 4) = 4
    pattern = [1.0, 2.0, 4.0, 8.0]
    w4 = np.subtract(*stats.bootstrap_interval(pattern)[::-1])
    w64 = np.subtract(*stats.bootstrap_interval(pattern * 16)[::-1])
    assert w64 < w4 / 3
    # 2 and 3 differences: the interval is their range (resamples of all-one-value have
    # probability 1/4 and 1/27, both above 2.5%)
    # (a mean of three -0.4s is -0.4 to an ulp)
    assert stats.bootstrap_interval([0.2, -0.4]) == pytest.approx((-0.4, 0.2), abs=1e-15)
    assert stats.bootstrap_interval([0.2, -0.4, 0.1]) == pytest.approx((-0.4, 0.2), abs=1e-15)
    assert stats.bootstrap_interval([0.7]) is None
    # for many seeds it approaches the normal interval mean ± 1.96 s / sqrt(n): n = 400 draws
    # of N(0, 1); the bootstrap quantiles' own noise with 10000 resamples is about 0.003
    x = np.random.default_rng(0).standard_normal(400)
    lo, hi = stats.bootstrap_interval(x)
    half = 1.96 * x.std(ddof=0) / 20
    assert lo == pytest.approx(x.mean() - half, abs=0.01)
    assert hi == pytest.approx(x.mean() + half, abs=0.01)


def test_mean_interval_is_the_t_interval():
    # 1, 2, 3: mean 2, s = 1, t_{0.975, 2} = 4.302653: 2 ± 4.302653 / sqrt(3) = 2 ± 2.484138
    lo, hi = stats.mean_interval([1.0, 2.0, 3.0])
    assert (lo, hi) == pytest.approx((2 - 2.484138, 2 + 2.484138), abs=1e-6)
    ref = sps.t.interval(0.9, 4, loc=np.mean([5, 1, 4, 4, 2]), scale=sps.sem([5, 1, 4, 4, 2]))
    assert stats.mean_interval([5, 1, 4, 4, 2], confidence=0.9) == pytest.approx(ref, rel=RTOL)
    assert stats.mean_interval([0.5]) is None


def test_seeds_needed_by_hand():
    # std of the differences = delta: the normal formula (1.95996 + 0.84162)^2 = 7.85 says 8.
    # With t quantiles (table values): n = 9: (t_{.975,8} + t_{.8,8})^2 = (2.306 + 0.889)^2 =
    # 10.21 > 9, not enough; n = 10: (2.262 + 0.883)^2 = 9.89 <= 10, enough. The exact
    # noncentral-t power agrees: 10.
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(0.002, 0.002) == 10  # only the ratio counts
    # power at the answer reaches 0.8, one seed fewer does not (noncentral t, df = n - 1,
    # noncentrality sqrt(n) * delta / std)
    for ratio in (0.3, 0.5, 2.0):
        n = stats.seeds_needed(1.0, ratio)
        assert stats._power(n, ratio, 0.05) >= 0.8 > stats._power(n - 1, ratio, 0.05)
    # large n: the normal formula 7.849 * (std / delta)^2 = 196.2 for a ratio of 1/5; the t
    # test needs a few more
    assert 197 <= stats.seeds_needed(5.0, 1.0) <= 200
    # a spread small against delta: the minimum of 2 seeds
    assert stats.seeds_needed(0.01, 1.0) == 2
    assert stats.seeds_needed(0.0, 1.0) is None
    # a stricter alpha needs more seeds
    assert stats.seeds_needed(1.0, 1.0, alpha=0.01) > 10


def test_unpaired_seeds_dropped_with_a_note_and_degenerate_cases():
    c = stats.compare_paired({0: 0.9, 1: 0.92, 5: 0.5}, {0: 0.8, 1: 0.83, 2: 0.1})
    assert c.seeds == (0, 1) and c.dropped == {"variant": (5,), "baseline": (2,)}
    assert c.mean_difference == pytest.approx(0.095, rel=1e-9)
    assert any("[5] only in the variant" in s for s in c.notes)
    assert any("[2] only in the baseline" in s for s in c.notes)
    one = stats.compare_paired({3: 0.9}, {3: 0.8})
    assert one.n == 1 and one.mean_difference == pytest.approx(0.1)
    assert (one.interval, one.t_pvalue, one.wilcoxon_pvalue, one.seeds_needed) == (None,) * 4
    same = stats.compare_paired({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8})
    assert same.mean_difference == 0 and same.interval == (0.0, 0.0)
    assert same.t_pvalue is None and same.wilcoxon_pvalue is None and same.seeds_needed is None
    shift = stats.compare_paired({0: 0.95, 1: 0.85}, {0: 0.9, 1: 0.8})
    assert shift.t_pvalue is None and shift.seeds_needed is None
    assert shift.wilcoxon_pvalue == 0.5  # 2 of 4 sign patterns
    assert any("identical on every seed" in s for s in shift.notes)


def test_errors_name_the_argument():
    ok = {0: 0.9, 1: 0.8}
    with pytest.raises(ValueError, match=r"variant=\[0.9, 0.8\] must map seed -> value"):
        stats.compare_paired([0.9, 0.8], ok)
    with pytest.raises(ValueError, match=r"baseline=\{\} is empty"):
        stats.compare_paired(ok, {})
    with pytest.raises(ValueError, match=r"variant\[1\]='x' must be a number"):
        stats.compare_paired({0: 0.9, 1: "x"}, ok)
    with pytest.raises(ValueError, match=r"baseline\[0\]=nan is not finite"):
        stats.compare_paired(ok, {0: math.nan})
    with pytest.raises(ValueError, match=r"share no seed, so nothing pairs; train both"):
        stats.compare_paired({5: 0.9}, ok)
    with pytest.raises(ValueError, match=r"delta=0 must be a finite number > 0"):
        stats.compare_paired(ok, ok, delta=0)
    with pytest.raises(ValueError, match=r"confidence=95 must be a number strictly between"):
        stats.compare_paired(ok, ok, confidence=95)
    with pytest.raises(ValueError, match=r"resamples=0 must be a positive int"):
        stats.compare_paired(ok, ok, resamples=0)
    with pytest.raises(ValueError, match=r"seed=0.5 must be an int"):
        stats.compare_paired(ok, ok, seed=0.5)
    with pytest.raises(ValueError, match=r"alpha=0 must be a number strictly between"):
        stats.compare_paired(ok, ok, alpha=0)
    with pytest.raises(ValueError, match=r"power=1.0 must be a number strictly between"):
        stats.seeds_needed(1.0, 1.0, power=1.0)
    with pytest.raises(ValueError, match=r"std_difference=-1.0 must be a finite number >= 0"):
        stats.seeds_needed(-1.0, 1.0)
    with pytest.raises(ValueError, match=r"values='abc' must be a sequence of numbers"):
        stats.mean_interval("abc")
    with pytest.raises(ValueError, match=r"values=\[1, None\] must be a sequence of numbers"):
        stats.mean_interval([1, None])
    with pytest.raises(ValueError, match=r"values has shape \(2, 2\); pass a flat sequence"):
        stats.mean_interval([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"values holds \[inf\]; every value must be finite"):
        stats.mean_interval([1.0, math.inf])
    with pytest.raises(ValueError, match=r"values is empty"):
        stats.mean_interval([])
    with pytest.raises(ValueError, match=r"differences is empty"):
        stats.bootstrap_interval([])
