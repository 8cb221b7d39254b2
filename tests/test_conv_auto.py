"""impl="auto": measured choice, cached in memory and JSON, never a wrong number.

Every test injects a fake timer, so no outcome depends on which implementation is really
faster on the machine running the tests.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.functional import conv
from convjax.functional import conv_auto as ca
from convjax.functional.conv_impls import CONV_IMPLS, ConvImpl, ConvSpec, register_conv_impl

SPEC = ConvSpec(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))


class FakeTimer:
    """Returns preset seconds per implementation name and records who was timed."""

    def __init__(self, seconds):
        self.seconds = dict(seconds)
        self.calls = []

    def __call__(self, name, fn, args):
        self.calls.append(name)
        return self.seconds.get(name, 10.0)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVJAX_CACHE_DIR", str(tmp_path))
    previous = ca.configure_auto(candidates=("lax", "winograd"), objective="train", use_disk=True)
    ca.clear_auto_cache()
    yield tmp_path
    ca.clear_auto_cache()
    ca.configure_auto(**previous)
    if previous["timer"] is None:
        ca.configure_auto(timer=ca.default_timer)


def _data(shape=(2, 6, 6, 2), cout=3):
    x = jax.random.normal(jax.random.key(0), shape)
    k = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], cout)) / 3
    return x, k


def test_picks_the_fastest_and_keeps_the_numbers():
    timer = FakeTimer({"lax": 2.0, "winograd": 1.0})
    ca.configure_auto(timer=timer)
    x, k = _data()
    y = conv(x, k, padding=1, impl="auto")
    assert sorted(timer.calls) == ["lax", "winograd"]
    assert ca.auto_choice(x.shape, k.shape, jnp.float32, SPEC) == "winograd"
    np.testing.assert_allclose(y, conv(x, k, padding=1), rtol=1e-5, atol=1e-5)
    g = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k, padding=1, impl="auto") ** 2), (0, 1)))
    want = jax.grad(lambda x, k: jnp.sum(conv(x, k, padding=1) ** 2), (0, 1))(x, k)
    for a, b in zip(g(x, k), want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_picks_lax_when_it_is_fastest():
    ca.configure_auto(timer=FakeTimer({"lax": 1.0, "winograd": 3.0}))
    x, k = _data()
    assert ca.auto_choice(x.shape, k.shape, jnp.float32, SPEC) == "lax"


def test_memory_and_disk_cache(isolated):
    timer = FakeTimer({"lax": 2.0, "winograd": 1.0})
    ca.configure_auto(timer=timer)
    key_args = ((2, 6, 6, 2), (3, 3, 2, 3), jnp.float32, SPEC)
    assert ca.auto_choice(*key_args) == "winograd"
    n_calls = len(timer.calls)
    assert ca.auto_choice(*key_args) == "winograd"  # memory: no new measurement
    assert len(timer.calls) == n_calls
    path = isolated / "conv_auto.json"
    assert ca.auto_cache_path() == str(path)
    stored = json.loads(path.read_text())
    assert stored == {ca.auto_key(*key_args): "winograd"}
    ca.clear_auto_cache()  # a new process: memory empty, file still there
    assert ca.auto_choice(*key_args) == "winograd"
    assert len(timer.calls) == n_calls  # read from disk, not measured
    ca.clear_auto_cache(disk=True)
    assert not path.exists()
    timer.seconds = {"lax": 1.0, "winograd": 2.0}
    assert ca.auto_choice(*key_args) == "lax"  # measured again
    assert len(timer.calls) == n_calls + 2


def test_key_separates_objective_dtype_and_options():
    base = ca.auto_key((2, 6, 6, 2), (3, 3, 2, 3), jnp.float32, SPEC)
    assert base != ca.auto_key((2, 6, 6, 2), (3, 3, 2, 3), jnp.float32, SPEC, "forward")
    assert base != ca.auto_key((2, 6, 6, 2), (3, 3, 2, 3), jnp.bfloat16, SPEC)
    strided = ConvSpec(stride=(2, 2), padding=((1, 1), (1, 1)), dilation=(1, 1))
    assert base != ca.auto_key((2, 6, 6, 2), (3, 3, 2, 3), jnp.float32, strided)
    assert json.loads(base)["backend"] == jax.default_backend()


def test_unsupported_candidates_are_not_timed():
    timer = FakeTimer({"lax": 2.0, "winograd": 1.0})
    ca.configure_auto(timer=timer)
    x, k = _data((1, 8, 8, 2))
    y = conv(x, k, stride=2, padding=1, impl="auto")  # winograd's check refuses stride 2
    assert timer.calls == ["lax"]
    np.testing.assert_allclose(y, conv(x, k, stride=2, padding=1), rtol=1e-6)


@pytest.fixture
def rogue_impls():
    from convjax.functional.conv_impls import _lax_apply, _no_check

    def wrong(x, k, spec):  # 1% off: must never be chosen, however fast
        return _lax_apply(x, k, spec) * 1.01

    def broken(x, k, spec):
        raise RuntimeError("this implementation fails to lower")

    register_conv_impl(ConvImpl("test_wrong", wrong, _no_check), overwrite=True)
    register_conv_impl(ConvImpl("test_broken", broken, _no_check), overwrite=True)
    yield
    del CONV_IMPLS["test_wrong"], CONV_IMPLS["test_broken"]


def test_wrong_or_failing_candidates_are_never_chosen(rogue_impls):
    timer = FakeTimer({"lax": 5.0, "test_wrong": 0.1, "test_broken": 0.1, "winograd": 9.0})
    ca.configure_auto(candidates=("lax", "test_wrong", "test_broken", "winograd"), timer=timer)
    x, k = _data((1, 7, 7, 2))  # a shape no other test traced conv(impl="auto") with
    assert ca.auto_choice(x.shape, k.shape, jnp.float32, SPEC) == "lax"
    assert "test_wrong" not in timer.calls and "test_broken" not in timer.calls
    np.testing.assert_allclose(
        conv(x, k, padding=1, impl="auto"), conv(x, k, padding=1), rtol=1e-6, atol=1e-6
    )


def test_measurement_failure_falls_back_to_lax():
    def failing_timer(name, fn, args):
        raise RuntimeError("no clock")

    ca.configure_auto(timer=failing_timer)
    x, k = _data()
    assert ca.auto_choice(x.shape, k.shape, jnp.float32, SPEC) == "lax"


def test_stale_disk_entry_is_ignored(isolated):
    key_args = ((2, 6, 6, 2), (3, 3, 2, 3), jnp.float32, SPEC)
    (isolated / "conv_auto.json").write_text(json.dumps({ca.auto_key(*key_args): "gone_impl"}))
    timer = FakeTimer({"lax": 1.0, "winograd": 2.0})
    ca.configure_auto(timer=timer)
    assert ca.auto_choice(*key_args) == "lax"
    assert timer.calls  # measured instead of trusting the unknown name


def test_forward_objective_and_repeats_with_real_timer():
    # The real timer runs (outcome not asserted: it depends on the machine), and the
    # choice is always one of the candidates and gives lax's numbers.
    ca.configure_auto(timer=ca.default_timer, objective="forward", repeats=1, use_disk=False)
    x, k = _data((1, 5, 5, 1), 2)
    y = jax.jit(lambda x, k: conv(x, k, padding="SAME", impl="auto"))(x, k)
    spec = ConvSpec(stride=(1, 1), padding=((1, 1), (1, 1)), dilation=(1, 1))
    assert ca.auto_choice(x.shape, k.shape, jnp.float32, spec) in ("lax", "winograd")
    np.testing.assert_allclose(y, conv(x, k, padding="SAME"), rtol=1e-5, atol=1e-5)


def test_tolerance_per_dtype():
    assert ca.allclose_tolerance(jnp.bfloat16)[0] > ca.allclose_tolerance(jnp.float32)[0]
    assert ca.allclose_tolerance(jnp.float32)[0] > ca.allclose_tolerance(np.float64)[0]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"candidates": "lax"}, r"candidates='lax' must be a sequence"),
        ({"candidates": ("lax", "auto")}, r"contains 'auto'"),
        ({"candidates": ("nope",)}, r"impl='nope' is not a known"),
        ({"objective": "fast"}, r"objective='fast' must be one of"),
        ({"repeats": 0}, r"repeats=0 must be an int >= 1"),
        ({"timer": 3}, r"timer=3 must be callable"),
    ],
)
def test_configure_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ca.configure_auto(**kwargs)
