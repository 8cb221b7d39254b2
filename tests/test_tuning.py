"""convjax.tuning: an explicit, measured choice of conv implementation, never a wrong number.

The choice tests inject a fake timer, so no outcome depends on which implementation is
really faster on the machine running them; one test runs the real clock without asserting
the winner.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf
from convjax import tuning


class FakeTimer:
    """Preset seconds per candidate; records which candidates were timed."""

    def __init__(self, seconds):
        self.seconds = dict(seconds)
        self.timed = []

    def __call__(self, compiled, args, repeats):
        self.timed.append(sorted(compiled))
        return {name: self.seconds.get(name, 10.0) for name in compiled}


X, K = (2, 6, 6, 2), (3, 3, 2, 3)


def test_picks_the_fastest_correct_candidate():
    timer = FakeTimer({"lax": 2.0, "matmul_grad": 1.0, "im2col": 3.0})
    res = tuning.choose_conv_impl(
        X, K, candidates=("matmul_grad", "im2col"), padding="SAME", timer=timer
    )
    assert res.impl == "matmul_grad"
    assert timer.timed == [["im2col", "lax", "matmul_grad"]]  # lax added as the reference
    assert res.seconds == {"lax": 2.0, "matmul_grad": 1.0, "im2col": 3.0}
    assert res.skipped == {}


def test_ties_and_slower_candidates_keep_lax():
    res = tuning.choose_conv_impl(
        X, K, candidates=("im2col",), timer=FakeTimer({"lax": 1.0, "im2col": 1.0})
    )
    assert res.impl == "lax"  # a tie goes to the reference


def test_unsupported_candidates_are_skipped_with_the_reason():
    timer = FakeTimer({"lax": 2.0, "winograd": 1.0})
    res = tuning.choose_conv_impl(X, K, candidates=("winograd",), stride=2, timer=timer)
    assert res.impl == "lax" and timer.timed == [["lax"]]
    assert "impl='winograd' needs stride=1" in res.skipped["winograd"]


def test_wrong_or_failing_functions_are_never_chosen():
    def ref(x, k):
        return cf.conv(x, k, padding=1)

    def wrong(x, k):  # 1% off: never chosen however fast
        return ref(x, k) * 1.01

    def broken(x, k):
        raise RuntimeError("fails to trace")

    timer = FakeTimer({"ref": 5.0, "wrong": 0.1, "broken": 0.1})
    res = tuning.time_candidates(
        {"ref": ref, "wrong": wrong, "broken": broken}, X, K, reference="ref", timer=timer
    )
    assert res.impl == "ref" and timer.timed == [["ref"]]
    assert res.skipped["wrong"] == "numbers differ from 'ref' beyond float tolerance"
    assert res.skipped["broken"] == "RuntimeError: fails to trace"


def test_wrong_input_gradient_is_caught_by_the_train_objective():
    # Same forward and kernel gradient, a wrong (zero) input gradient: only the "train"
    # objective sees it.
    @jax.custom_vjp
    def bad(x, k):
        return cf.conv(x, k)

    def bad_bwd(residuals, g):
        dx, dk = jax.vjp(cf.conv, *residuals)[1](g)
        return jnp.zeros_like(dx), dk

    bad.defvjp(lambda x, k: (cf.conv(x, k), (x, k)), bad_bwd)
    funcs = {"ref": lambda x, k: cf.conv(x, k), "bad": bad}
    timer = FakeTimer({"ref": 2.0, "bad": 1.0})
    assert tuning.time_candidates(funcs, X, K, reference="ref", timer=timer).impl == "ref"
    fwd = tuning.time_candidates(funcs, X, K, reference="ref", timer=timer, objective="forward")
    assert fwd.impl == "bad"
    first = tuning.time_candidates(
        funcs, X, K, reference="ref", timer=timer, objective="first_layer"
    )
    assert first.impl == "bad"  # its wrong gradient is the input's, which this objective skips


def test_matches_reference_tolerance_per_dtype():
    ref = np.array([1.0, -2.0, 0.0])
    assert tuning.matches_reference(ref, ref + 1e-5, jnp.float32)  # re-association scale
    assert not tuning.matches_reference(ref, ref + 1e-3, jnp.float32)
    assert tuning.matches_reference(ref, ref + 1e-2, jnp.bfloat16)
    assert not tuning.matches_reference(ref, ref + 1e-6, np.float64)
    assert not tuning.matches_reference(ref, np.array([1.0, np.nan, 0.0]), jnp.float32)
    assert not tuning.matches_reference(ref, ref[:2], jnp.float32)


def test_cache_measures_once_and_round_trips_through_json(tmp_path):
    timer = FakeTimer({"lax": 2.0, "matmul_grad": 1.0})
    cache = tuning.ConvTuningCache(candidates=("matmul_grad",), timer=timer)
    assert cache.choose(X, K, padding="SAME") == "matmul_grad"
    assert cache.choose(X, K, padding="SAME") == "matmul_grad"
    assert len(timer.timed) == 1  # the second call read the entry
    assert cache.choose(X, K, padding="VALID") == "matmul_grad"
    assert len(timer.timed) == 2  # another key, measured
    path = tmp_path / "tuned.json"
    cache.save(path)
    assert json.loads(path.read_text()) == cache.entries
    again = tuning.ConvTuningCache.load(path, timer=timer)
    assert again.choose(X, K, padding="SAME") == "matmul_grad" and len(timer.timed) == 2
    assert tuning.ConvTuningCache.load(tmp_path / "missing.json").entries == {}


def test_key_separates_what_the_choice_depends_on():
    base = tuning.conv_tuning_key(X, K, padding="SAME")
    assert base != tuning.conv_tuning_key(X, K, padding="SAME", objective="forward")
    assert base != tuning.conv_tuning_key(X, K, padding="SAME", dtype="bfloat16")
    assert base != tuning.conv_tuning_key(X, K, padding="SAME", stride=2)
    assert base != tuning.conv_tuning_key((4, 6, 6, 2), K, padding="SAME")
    assert json.loads(base)["backend"] == jax.default_backend()


def test_real_clock_choice_gives_lax_numbers():
    # The wall clock decides (not asserted); whatever wins computes conv's numbers.
    res = tuning.choose_conv_impl((1, 5, 5, 1), (3, 3, 1, 2), padding="SAME", repeats=1)
    assert set(res.seconds) | set(res.skipped) == set(cf.CONV_IMPLS)
    assert res.impl in res.seconds and all(s > 0 for s in res.seconds.values())
    x = jax.random.normal(jax.random.key(0), (1, 5, 5, 1))
    k = jax.random.normal(jax.random.key(1), (3, 3, 1, 2))
    np.testing.assert_allclose(
        cf.conv(x, k, padding="SAME", impl=res.impl), cf.conv(x, k, padding="SAME"), atol=1e-5
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(candidates="lax"), r"candidates='lax' must be a sequence of impl names"),
        (dict(candidates=("auto",)), r"candidates contains 'auto', not a convolution impl"),
        (dict(objective="fast"), r"objective='fast' is not one of 'train', 'first_layer'"),
        (dict(repeats=0), r"repeats=0 must be an int >= 1"),
        (dict(timer=3), r"timer=3 must be callable"),
        (dict(bias=1), r"bias=1 is not a convolution option the tuner measures"),
    ],
)
def test_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tuning.choose_conv_impl(X, K, **kwargs)


def test_reference_errors_and_bad_cache_files(tmp_path):
    with pytest.raises(ValueError, match=r"reference='lax' is not among the candidates"):
        tuning.time_candidates({"a": lambda x, k: x}, X, K, reference="lax")
    with pytest.raises(ValueError, match=r"reference='a' failed: boom"):

        def boom(x, k):
            raise RuntimeError("boom")

        tuning.time_candidates({"a": boom}, X, K, reference="a")
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"holds a JSON list, not an object"):
        tuning.ConvTuningCache.load(bad)
    bad.write_text("{not json")
    with pytest.raises(ValueError, match=r"is not a JSON file of tuning entries"):
        tuning.ConvTuningCache.load(bad)
    with pytest.raises(ValueError, match=r"entries\['k'\]='auto' is not a convolution impl"):
        tuning.ConvTuningCache({"k": "auto"})
