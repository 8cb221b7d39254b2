"""impl="winograd" (F(2x2, 3x3)) against impl="lax", a naive NumPy reference and hand values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.functional import CONV_IMPLS, conv
from convjax.functional.conv_winograd import winograd_conv2d_nhwc, winograd_kernel_transform


def _naive_nhwc(x, k, pads):
    """Direct loops: y[n, i, j, o] = sum x_pad[n, i + a, j + b, c] * k[a, b, c, o]."""
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    n, hp, wp, _ = xp.shape
    y = np.zeros((n, hp - 2, wp - 2, k.shape[-1]))
    for a in range(3):
        for b in range(3):
            y += np.einsum("nhwc,co->nhwo", xp[:, a : a + hp - 2, b : b + wp - 2], k[a, b])
    return y


def test_registered():
    assert "winograd" in CONV_IMPLS


def test_hand_computed_ones():
    # A 4x4 input of ones and a 3x3 kernel of ones: every valid 3x3 window sums to 9.
    y = conv(jnp.ones((4, 4, 1)), jnp.ones((3, 3, 1, 1)), impl="winograd")
    # The Winograd transforms round: the default rtol=1e-7 is below one float32 ulp of 9.
    np.testing.assert_allclose(np.asarray(y)[..., 0], np.full((2, 2), 9.0), rtol=1e-6)
    # With padding 1 the corners see 4 ones and the edges 6.
    y = conv(jnp.ones((4, 4, 1)), jnp.ones((3, 3, 1, 1)), padding=1, impl="winograd")
    expected = np.array([[4, 6, 6, 4], [6, 9, 9, 6], [6, 9, 9, 6], [4, 6, 6, 4]], float)
    np.testing.assert_allclose(np.asarray(y)[..., 0], expected, rtol=1e-6)


def test_kernel_transform_is_g_g_gt():
    g_mat = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    k = np.random.default_rng(0).standard_normal((3, 3, 2, 3))
    u = np.asarray(winograd_kernel_transform(jnp.asarray(k, jnp.float32)))
    expected = np.einsum("ai,ijco,bj->abco", g_mat, k, g_mat).reshape(16, 2, 3)
    np.testing.assert_allclose(u, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "shape,pads",
    [
        ((2, 6, 6, 3), ((1, 1), (1, 1))),  # even output
        ((1, 7, 5, 2), ((0, 0), (0, 0))),  # odd output sizes: last tile half cropped
        ((2, 3, 3, 1), ((2, 0), (0, 3))),  # asymmetric padding, output 3x4
        ((1, 9, 4, 4), ((1, 2), (2, 1))),
    ],
)
def test_matches_naive_numpy_float64(shape, pads):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    k = rng.standard_normal((3, 3, shape[-1], 5))
    with jax.enable_x64(True):
        y = winograd_conv2d_nhwc(jnp.asarray(x), jnp.asarray(k), pads)
        assert y.dtype == jnp.float64
        np.testing.assert_allclose(np.asarray(y), _naive_nhwc(x, k, pads), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "padding,channels_last",
    [("SAME", True), ("VALID", False), (2, False), (((0, 1), (1, 0)), True)],
)
def test_forward_and_gradients_match_lax(padding, channels_last):
    kx, kk, kb, kg = jax.random.split(jax.random.key(3), 4)
    x = jax.random.normal(kx, (2, 7, 6, 3) if channels_last else (2, 3, 7, 6))
    k = jax.random.normal(kk, (3, 3, 3, 4)) / 3
    b = jax.random.normal(kb, (4,))

    def f(impl):
        return lambda x, k, b: conv(
            x, k, b, padding=padding, channels_last=channels_last, impl=impl
        )

    y_ref, y = f("lax")(x, k, b), jax.jit(f("winograd"))(x, k, b)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    g = jax.random.normal(kg, y.shape)

    def grads(impl):
        # jitted: eager autodiff would dispatch every slice of the backward on its own
        return jax.jit(jax.grad(lambda *a: jnp.sum(f(impl)(*a) * g), argnums=(0, 1, 2)))(x, k, b)

    for got, want in zip(grads("winograd"), grads("lax")):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_gradients_float64_tight():
    rng = np.random.default_rng(7)
    with jax.enable_x64(True):
        x = jnp.asarray(rng.standard_normal((1, 5, 6, 2)))
        k = jnp.asarray(rng.standard_normal((3, 3, 2, 3)))

        def loss(impl):
            return lambda x, k: jnp.sum(jnp.tanh(conv(x, k, padding="SAME", impl=impl)))

        got = jax.jit(jax.grad(loss("winograd"), (0, 1)))(x, k)
        want = jax.grad(loss("lax"), (0, 1))(x, k)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-11)


def test_unbatched_jit_vmap_and_padding_mode():
    x = jax.random.normal(jax.random.key(0), (3, 6, 6, 2))
    k = jax.random.normal(jax.random.key(1), (3, 3, 2, 2))
    ref = conv(x, k, padding=1, padding_mode="reflect")
    got = jax.jit(lambda x: conv(x, k, padding=1, padding_mode="reflect", impl="winograd"))(x)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    per_example = jax.vmap(lambda xi: conv(xi, k, padding=1, impl="winograd"))(x)
    np.testing.assert_allclose(per_example, conv(x, k, padding=1), rtol=1e-5, atol=1e-5)


def test_bfloat16_close():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4)).astype(jnp.bfloat16)
    k = (jax.random.normal(jax.random.key(1), (3, 3, 4, 4)) / 6).astype(jnp.bfloat16)
    got = jax.jit(lambda x, k: conv(x, k, padding=1, impl="winograd"))(x, k)
    assert got.dtype == jnp.bfloat16
    ref = conv(x.astype(jnp.float32), k.astype(jnp.float32), padding=1)
    np.testing.assert_allclose(np.asarray(got, np.float32), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    "x_shape,k_shape,kwargs,match",
    [
        ((1, 8, 2), (3, 2, 2), {}, r"2-D convolutions only.*impl='lax'"),
        ((1, 8, 8, 2), (5, 5, 2, 2), {}, r"3x3 kernel.*kernel.shape=\(5, 5, 2, 2\)"),
        ((1, 8, 8, 2), (3, 3, 2, 2), {"stride": 2}, r"stride=1, but stride=\(2, 2\)"),
        ((1, 8, 8, 2), (3, 3, 2, 2), {"dilation": 2}, r"dilation=1, but dilation=\(2, 2\)"),
        ((1, 8, 8, 2), (3, 3, 1, 2), {"groups": 2}, r"groups=1, but groups=2"),
    ],
)
def test_unsupported_options_raise(x_shape, k_shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        conv(jnp.ones(x_shape), jnp.ones(k_shape), impl="winograd", **kwargs)


def test_integer_inputs_raise():
    with pytest.raises(ValueError, match=r"floating-point inputs.*x has dtype int32"):
        conv(jnp.ones((1, 5, 5, 1), jnp.int32), jnp.ones((3, 3, 1, 1), jnp.int32), impl="winograd")
