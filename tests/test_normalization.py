"""``cf.batch_norm``, ``cf.batch_moments`` and ``cf.dropout``: pure functions checked against
PyTorch's ``F.batch_norm`` and a NumPy reference, and by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import convjax.functional as cf


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# float64 means and variances of <= 100 values of magnitude < 20: another summation order
# changes them by about 100 * 2.2e-16 * 20 ~ 5e-13; atol for statistics near zero.
TOL64 = dict(rtol=1e-10, atol=1e-10)


def _case(channels_last, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((4, 5, 5, 3)) * 3 + 2
    if not channels_last:
        x = np.moveaxis(x, -1, 1)
    c = 3
    scale, bias = rng.standard_normal(c), rng.standard_normal(c)
    mean, var = rng.standard_normal(c), rng.random(c) + 0.5
    return x, scale, bias, mean, var


def _to_torch(x, channels_last):
    t = torch.tensor(x)
    return t.permute(0, 3, 1, 2) if channels_last else t


def _from_torch(t, channels_last):
    t = t.detach()
    return (t.permute(0, 2, 3, 1) if channels_last else t).numpy()


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch(channels_last, training, x64):
    x, scale, bias, mean, var = _case(channels_last)
    rm, rv = torch.tensor(mean), torch.tensor(var)
    ref = F.batch_norm(
        _to_torch(x, channels_last),
        rm,
        rv,
        torch.tensor(scale),
        torch.tensor(bias),
        training=training,
        momentum=0.1,  # PyTorch's weight of the new batch = 1 - convjax's momentum
        eps=1e-5,
    )
    y, (new_mean, new_var) = cf.batch_norm(
        x, scale, bias, mean, var, training=training, channels_last=channels_last
    )
    np.testing.assert_allclose(y, _from_torch(ref, channels_last), **TOL64)
    # PyTorch updates its running statistics in place (unbiased variance, as convjax)
    np.testing.assert_allclose(new_mean, rm.numpy(), **TOL64)
    np.testing.assert_allclose(new_var, rv.numpy(), **TOL64)


def test_batch_norm_numpy_reference_and_momentum(x64):
    x, scale, bias, mean, var = _case(True, seed=1)
    mu, sigma2 = x.mean((0, 1, 2)), x.var((0, 1, 2))
    n = 4 * 5 * 5
    y, (m, v) = cf.batch_norm(x, scale, bias, mean, var, training=True, momentum=0.7)
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(sigma2 + 1e-5) * scale + bias, **TOL64)
    np.testing.assert_allclose(m, 0.7 * mean + 0.3 * mu, **TOL64)
    np.testing.assert_allclose(v, 0.7 * var + 0.3 * sigma2 * n / (n - 1), **TOL64)
    # No affine parameters: scale 1, bias 0. Dense activations (N, C) work the same way.
    y0, _ = cf.batch_norm(x, None, None, mean, var, training=True)
    np.testing.assert_allclose(y0, (x - mu) / np.sqrt(sigma2 + 1e-5), **TOL64)
    d = x.reshape(-1, 3)
    yd, _ = cf.batch_norm(d, None, None, mean, var, training=False)
    np.testing.assert_allclose(yd, (d - mean) / np.sqrt(var + 1e-5), **TOL64)


def test_batch_norm_hand_computed():
    # two examples, one channel: mean 1, biased variance 1, unbiased 2
    y, (m, v) = cf.batch_norm(
        jnp.array([[0.0], [2.0]]), None, None, jnp.zeros(1), jnp.ones(1), training=True
    )
    # y = (x - 1) / sqrt(1 + 1e-5); float32 rounding of that quotient is below 1e-6
    np.testing.assert_allclose(y[:, 0], [-1, 1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m, [0.1], rtol=1e-6)  # 0.9 * 0 + 0.1 * 1
    np.testing.assert_allclose(v, [1.1], rtol=1e-6)  # 0.9 * 1 + 0.1 * 2


def test_batch_norm_gradient_matches_torch_and_stats_carry_none(x64):
    x, scale, bias, mean, var = _case(True, seed=2)
    w = np.random.default_rng(3).standard_normal(x.shape)

    def loss(x, scale, bias):
        y, _ = cf.batch_norm(x, scale, bias, mean, var, training=True)
        return jnp.sum(y * w)

    g = jax.grad(loss, argnums=(0, 1, 2))(x, scale, bias)
    tx, ts, tb = (torch.tensor(a, requires_grad=True) for a in (x.copy(), scale, bias))
    out = F.batch_norm(tx.permute(0, 3, 1, 2), None, None, ts, tb, training=True, eps=1e-5).permute(
        0, 2, 3, 1
    )
    (out * torch.tensor(w)).sum().backward()
    for ours, theirs in zip(g, (tx, ts, tb)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **TOL64)
    # the running statistics are outputs without gradient
    stats_grad = jax.grad(
        lambda x: jnp.sum(cf.batch_norm(x, None, None, mean, var, training=True)[1][0])
    )(x)
    np.testing.assert_array_equal(stats_grad, 0.0)


def test_batch_norm_jit_vmap(x64):
    x, scale, bias, mean, var = _case(True, seed=4)
    f = lambda x: cf.batch_norm(x, scale, bias, mean, var, training=True)  # noqa: E731
    y, stats = f(x)
    yj, statsj = jax.jit(f)(x)
    np.testing.assert_allclose(yj, y, **TOL64)
    np.testing.assert_allclose(statsj[1], stats[1], **TOL64)
    # vmap over two independent batches: each normalised with its own statistics
    xs = np.stack([x, x[::-1] * 2])
    ys, _ = jax.vmap(f)(xs)
    np.testing.assert_allclose(ys[1], f(x[::-1] * 2)[0], **TOL64)


def _op_by_op(x, scale, bias, axis, epsilon=1e-5):
    """Training-mode batch norm written op by op, so JAX differentiates the plain formula: the
    independent reference for the closed-form derivative inside ``cf.batch_norm``."""
    axes = tuple(a for a in range(x.ndim) if a != axis)
    mu = jnp.mean(x, axis=axes, keepdims=True)
    var = jnp.mean(jnp.square(x - mu), axis=axes, keepdims=True)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return (x - mu) / jnp.sqrt(var + epsilon) * scale.reshape(shape) + bias.reshape(shape)


# (shape, channels_last): dense, 2-D NHWC and NCHW, 3-D NDHWC
LAYOUTS = [((6, 4), True), ((3, 4, 5, 2), True), ((3, 2, 4, 5), False), ((2, 3, 2, 4, 3), True)]


@pytest.mark.parametrize("shape,channels_last", LAYOUTS)
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_derivatives_equal_the_op_by_op_formula(shape, channels_last, affine, x64):
    """Reverse mode (grad) and forward mode (jvp) of the closed-form derivative against JAX's
    derivative of the plain formula, in float64: both are exact up to rounding of sums of
    <= 120 terms of size < 10 (~1e-13), so 1e-9 leaves room and catches any wrong term."""
    rng = np.random.default_rng(7)
    axis = len(shape) - 1 if channels_last else 1
    c = shape[axis]
    x = rng.standard_normal(shape) * 2 + 1
    scale, bias = (rng.standard_normal(c), rng.standard_normal(c)) if affine else (None, None)
    ones, zeros = np.ones(c), np.zeros(c)
    w = rng.standard_normal(shape)  # a random linear read-out of the output

    def ours(x, scale, bias):
        y, _ = cf.batch_norm(
            x, scale, bias, zeros, ones, training=True, channels_last=channels_last
        )
        return y

    def ref(x, scale, bias):
        return _op_by_op(x, ones if scale is None else scale, zeros if bias is None else bias, axis)

    args = (x, scale, bias) if affine else (x,)
    argnums = (0, 1, 2) if affine else (0,)
    pad = (lambda a: (*a, None, None)) if not affine else (lambda a: a)
    loss = lambda f: lambda *a: jnp.sum(jnp.tanh(f(*pad(a))) * w)  # noqa: E731
    for g, g_ref in zip(jax.grad(loss(ours), argnums)(*args), jax.grad(loss(ref), argnums)(*args)):
        np.testing.assert_allclose(g, g_ref, rtol=1e-9, atol=1e-9)
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    y, dy = jax.jvp(lambda *a: ours(*pad(a)), args, tangents)
    y_ref, dy_ref = jax.jvp(lambda *a: ref(*pad(a)), args, tangents)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dy, dy_ref, rtol=1e-9, atol=1e-9)


def test_batch_norm_second_order(x64):
    """jax.hessian (forward over reverse) through the custom derivative equals the plain
    formula's, and gradcheck(order=2) agrees with finite differences."""
    from convjax.testing import gradcheck

    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 3, 3, 2))
    scale, bias = rng.standard_normal(2), rng.standard_normal(2)
    w = rng.standard_normal(x.shape)
    ones, zeros = np.ones(2), np.zeros(2)

    def loss(x, scale):
        y, _ = cf.batch_norm(x, scale, bias, zeros, ones, training=True)
        return jnp.sum(jnp.tanh(y) * w)

    def loss_ref(x, scale):
        return jnp.sum(jnp.tanh(_op_by_op(x, scale, bias, 3)) * w)

    h = jax.hessian(loss, (0, 1))(x, scale)
    h_ref = jax.hessian(loss_ref, (0, 1))(x, scale)
    for a, b in zip(jax.tree.leaves(h), jax.tree.leaves(h_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-9)
    gradcheck(loss, x, scale, order=2)


def test_batch_moments_two_pass_is_stable(x64):
    x = np.random.default_rng(5).standard_normal((6, 2)) + 1e8
    mean, var = cf.batch_moments(x)
    np.testing.assert_allclose(mean, x.mean(0), rtol=1e-14)
    # E[x^2] - E[x]^2 at 1e8 would keep no digit of a variance near 1 in float64
    np.testing.assert_allclose(var, x.var(0), rtol=1e-6)


def test_batch_norm_errors():
    x = jnp.ones((2, 3))
    c = jnp.ones(3)
    with pytest.raises(ValueError, match=r"training=1 must be True"):
        cf.batch_norm(x, c, c, c, c, training=1)
    with pytest.raises(ValueError, match=r"momentum=1.5 must be a number in \[0, 1\]"):
        cf.batch_norm(x, c, c, c, c, training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"epsilon=0.0 must be > 0"):
        cf.batch_norm(x, c, c, c, c, training=True, epsilon=0.0)
    with pytest.raises(ValueError, match=r"scale.shape=\(2,\) must be \(3,\)"):
        cf.batch_norm(x, jnp.ones(2), c, c, c, training=True)
    with pytest.raises(ValueError, match=r"x has 1 axis/axes but batch_norm needs a batch axis"):
        cf.batch_norm(jnp.ones(3), c, c, c, c, training=True)
    with pytest.raises(ValueError, match=r"x has dtype int32, but batch_norm needs floating"):
        cf.batch_norm(jnp.ones((2, 3), jnp.int32), c, c, c, c, training=True)
    with pytest.raises(ValueError, match=r"mean and var .* are needed"):
        cf.batch_norm(x, c, c, None, c, training=True)


# ------------------------------------------------------------------ dropout


def test_dropout_statistics_and_scaling():
    x = jnp.ones((100, 200))
    y = cf.dropout(x, 0.25, jax.random.key(0))
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01  # 20,000 Bernoulli draws: std of the mean 0.003
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.75], rtol=1e-6)
    np.testing.assert_array_equal(cf.dropout(x, 0.25, jax.random.key(0)), y)  # same key
    assert not np.array_equal(cf.dropout(x, 0.25, jax.random.key(1)), y)
    np.testing.assert_array_equal(cf.dropout(x, 0.0, jax.random.key(0)), x)


def test_dropout_broadcast_dims_drop_whole_maps():
    x = jnp.ones((8, 4, 4, 16))
    y = np.asarray(cf.dropout(x, 0.5, jax.random.key(2), broadcast_dims=(1, 2)))
    # every (example, channel) map is all zero or all 2
    per_map = np.moveaxis(y, -1, 1).reshape(8, 16, 16)
    assert np.all((per_map == 0).all(-1) | (per_map == 2).all(-1))
    assert 0 < (per_map == 0).all(-1).mean() < 1


def test_dropout_errors():
    x = jnp.ones((2, 2))
    with pytest.raises(ValueError, match=r"dropout: rate=1.0 must be a float in \[0, 1\)"):
        cf.dropout(x, 1.0, jax.random.key(0))
    with pytest.raises(ValueError, match=r"dropout: rate=True must be a float"):
        cf.dropout(x, True, jax.random.key(0))
    with pytest.raises(ValueError, match=r"dropout: key=0 must be a jax.random key"):
        cf.dropout(x, 0.5, 0)
    with pytest.raises(ValueError, match=r"x='abc' must be an array of numbers for dropout"):
        cf.dropout("abc", 0.5, jax.random.key(0))
