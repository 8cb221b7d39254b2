"""Every `impl` of `conv` / `conv_transpose` gives the numbers (and gradients) of impl="lax"."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.functional import CONV_IMPLS, ConvImpl, conv, conv_transpose
from convjax.functional.conv_table import get_conv_impl

IMPLS = ("matmul_grad", "im2col", "direct")


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_table_is_fixed_and_read_only():
    assert list(CONV_IMPLS) == ["lax", "matmul_grad", "im2col", "direct", "winograd"]
    for name, entry in CONV_IMPLS.items():
        assert isinstance(entry, ConvImpl) and entry.name == name
        assert callable(entry.apply) and callable(entry.check) and entry.description
    with pytest.raises(TypeError):
        CONV_IMPLS["mine"] = CONV_IMPLS["lax"]  # no hidden, process-wide additions


def _config(seed):
    rng = np.random.default_rng(100 + seed)
    n = 1 + seed % 3
    groups = [1, 2, 3][seed % 3 if seed % 4 else 0]
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    ksz = tuple(int(v) for v in rng.integers(1, 4, n))
    spatial = tuple(int(v) for v in rng.integers(5, 9 if n < 3 else 7, n))
    kw = dict(
        stride=tuple(int(v) for v in rng.integers(1, 4, n)),
        dilation=tuple(int(v) for v in rng.integers(1, 3, n)),
        groups=groups,
        padding=["VALID", "SAME", "FULL", "CAUSAL", 1, ((0, 2),) * n][seed % 6],
        padding_mode=["zeros", "circular", "replicate", "reflect"][seed % 4],
        channels_last=bool(seed % 2),
        flip=bool((seed // 2) % 2),
    )
    if kw["padding_mode"] == "reflect" and kw["padding"] == "FULL":
        kw["padding"] = "SAME"  # FULL with dilation can be wider than reflect allows
    shape = (2, *spatial, cin) if kw["channels_last"] else (2, cin, *spatial)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((*ksz, cin // groups, cout))
    b = rng.standard_normal(cout)
    return x, w, b, kw


@pytest.mark.parametrize("seed", range(16))
@pytest.mark.parametrize("impl", IMPLS)
def test_matches_lax_float64(impl, seed, x64):
    x, w, b, kw = _config(seed)
    want = conv(x, w, b, **kw)
    got = conv(x, w, b, impl=impl, **kw)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("impl", IMPLS)
def test_matches_lax_float32_and_unbatched(impl):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((9, 8, 4)), jnp.float32)
    w = jnp.asarray(rng.standard_normal((3, 3, 2, 6)), jnp.float32)
    kw = dict(stride=2, padding="SAME", groups=2, dilation=(2, 1))
    want = conv(x, w, **kw, precision=jax.lax.Precision.HIGHEST)
    got = conv(x, w, **kw, impl=impl)
    assert got.dtype == jnp.float32 and got.shape == want.shape == (5, 4, 6)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", [0, 4, 7])  # 1-D, 2-D, 2-D: 3-D compiles slowly, same code
@pytest.mark.parametrize("impl", IMPLS)
def test_gradients_match_lax(impl, seed, x64):
    x, w, b, kw = _config(seed)
    ct = None

    def vjp(name):
        nonlocal ct
        y, pullback = jax.vjp(lambda *a: conv(*a, impl=name, **kw), x, w, b)
        if ct is None:
            ct = np.random.default_rng(seed).standard_normal(y.shape)
        return pullback(ct)

    for got, want in zip(vjp(impl), vjp("lax")):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("impl", IMPLS)
def test_jit_matches_eager(impl, x64):
    x, w, b, kw = _config(4)
    f = lambda *a: conv(*a, impl=impl, **kw)
    np.testing.assert_allclose(jax.jit(f)(x, w, b), f(x, w, b), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_conv_transpose_matches_lax(impl, channels_last, x64):
    rng = np.random.default_rng(7)
    shape = (2, 4, 5, 4) if channels_last else (2, 4, 4, 5)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((3, 2, 2, 6))
    kw = dict(
        stride=(2, 3),
        padding=(1, (0, 2)),
        output_padding=(1, 0),
        dilation=(1, 2),
        groups=2,
        channels_last=channels_last,
    )
    want = conv_transpose(x, w, np.arange(6.0), **kw)
    got = conv_transpose(x, w, np.arange(6.0), impl=impl, **kw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_precision_and_preferred_element_type_in_matmul_impls():
    x = jnp.ones((1, 5, 5, 2), jnp.bfloat16)
    k = jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    for impl in ("im2col", "direct"):
        y = conv(x, k, impl=impl, preferred_element_type=jnp.float32)
        assert y.dtype == jnp.float32
        np.testing.assert_array_equal(y, np.full((1, 3, 3, 4), 18.0))
        y = conv(x.astype(jnp.float32), k, impl=impl, precision=jax.lax.Precision.HIGHEST)
        np.testing.assert_array_equal(y, np.full((1, 3, 3, 4), 18.0))


def test_unsupported_options_are_clear_errors():
    x = jnp.ones((1, 5, 5, 2))
    k = jnp.ones((3, 3, 2, 4))
    with pytest.raises(
        ValueError, match=r"impl='toeplitz' is not a known convolution implementation"
    ):
        conv(x, k, impl="toeplitz")
    with pytest.raises(ValueError, match=r"impl=None is not a known convolution implementation"):
        get_conv_impl(None)


@pytest.mark.parametrize("impl", ["lax", "matmul_grad"])
def test_3d_strided_gradient_workaround(impl, x64):
    # This configuration's input gradient, taken by JAX's own rule, aborted XLA's CPU
    # compiler (see conv_grad._input_tangent); the workaround must give the gradient of
    # the independent "direct" implementation, in reverse and in forward mode.
    rng = np.random.default_rng(0)
    c, groups, channels_last = 3, 3, False
    x = rng.standard_normal((2, c, 6, 7, 6))
    w = rng.standard_normal((3, 3, 2, c // groups, 6))
    kw = dict(
        stride=(3, 3, 2),
        padding=((1, 0), (1, 2), (1, 1)),
        dilation=(2, 1, 1),
        groups=groups,
        channels_last=channels_last,
    )
    loss = lambda impl: lambda x_, w_: jnp.sum(jnp.cos(conv(x_, w_, impl=impl, **kw)))
    got = jax.grad(loss(impl), argnums=(0, 1))(x, w)
    want = jax.jit(jax.grad(loss("direct"), argnums=(0, 1)))(x, w)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10)
    tx, tw = rng.standard_normal(x.shape), rng.standard_normal(w.shape)
    _, got_t = jax.jvp(loss(impl), (x, w), (tx, tw))
    _, want_t = jax.jvp(loss("direct"), (x, w), (tx, tw))
    np.testing.assert_allclose(got_t, want_t, rtol=1e-10, atol=1e-10)
