"""Activations: PyTorch parity, stability at extreme inputs, kink conventions, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the parity oracle (scripts/install.sh installs it): missing, it fails

import convjax.functional as cf

F = torch.nn.functional

CASES = [
    ("relu", cf.relu, F.relu, {}),
    ("leaky_relu", lambda x: cf.leaky_relu(x, 0.2), lambda t: F.leaky_relu(t, 0.2), {}),
    ("leaky_relu_default", cf.leaky_relu, F.leaky_relu, {}),
    ("elu", lambda x: cf.elu(x, 0.7), lambda t: F.elu(t, 0.7), {}),
    ("gelu_exact", cf.gelu, F.gelu, {}),
    ("gelu_tanh", lambda x: cf.gelu(x, True), lambda t: F.gelu(t, approximate="tanh"), {}),
    ("sigmoid", cf.sigmoid, torch.sigmoid, {}),
    ("tanh", cf.tanh, torch.tanh, {}),
    ("softmax", cf.softmax, lambda t: F.softmax(t, -1), {}),
    ("softmax_axis0", lambda x: cf.softmax(x, 0), lambda t: F.softmax(t, 0), {}),
    ("log_softmax", cf.log_softmax, lambda t: F.log_softmax(t, -1), {}),
    ("log_softmax_axis1", lambda x: cf.log_softmax(x, 1), lambda t: F.log_softmax(t, 1), {}),
]


@pytest.mark.parametrize("name,fn,ref,_", CASES, ids=[c[0] for c in CASES])
def test_matches_torch_values_and_gradients(name, fn, ref, _):
    rng = np.random.default_rng(0)
    x = rng.normal(scale=3.0, size=(3, 4, 5))
    g = rng.normal(size=x.shape)
    t = torch.tensor(x, requires_grad=True)
    out = ref(t)
    (out * torch.tensor(g)).sum().backward()
    with jax.enable_x64(True):
        y, vjp = jax.vjp(fn, jnp.asarray(x))
        (dx,) = vjp(jnp.asarray(g))
        np.testing.assert_allclose(np.asarray(y), out.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(np.asarray(dx), t.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name,fn,ref,_", CASES, ids=[c[0] for c in CASES])
def test_jit_vmap_and_dtype(name, fn, ref, _):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 4)), jnp.float32)
    y = fn(x)
    assert y.shape == x.shape and y.dtype == jnp.float32
    np.testing.assert_allclose(jax.jit(fn)(x), y, rtol=1e-6, atol=1e-7)
    if "axis" not in name:  # axis-0 softmax couples the batch, so vmapping changes its meaning
        np.testing.assert_allclose(jax.vmap(fn)(x), y, rtol=1e-6, atol=1e-7)


def test_softmax_and_log_softmax_are_stable_at_extremes():
    x = jnp.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]], jnp.float32)
    p = cf.softmax(x)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    lp = cf.log_softmax(x)
    # log p of a logit 1000 below the max is -1000, not -inf (no log(0)).
    np.testing.assert_allclose(lp, [[0, -1000, -2000], [-np.log(3)] * 3], rtol=1e-6)
    g = jax.grad(lambda x: cf.log_softmax(x)[0, 2])(x)
    assert np.all(np.isfinite(g))


def test_sigmoid_elu_stable_at_extremes():
    x = jnp.array([-1e4, -100.0, 0.0, 100.0, 1e4], jnp.float32)
    np.testing.assert_allclose(cf.sigmoid(x), [0, 0, 0.5, 1, 1], atol=1e-30)
    np.testing.assert_allclose(cf.elu(x), [-1, -1, 0, 100, 1e4])
    # elu's exp branch must not produce inf/NaN in the gradient for large positive x.
    np.testing.assert_allclose(
        jax.grad(lambda v: jnp.sum(cf.elu(v)))(x), [0, 0, 1, 1, 1], atol=1e-30
    )


def test_kink_derivative_conventions():
    zero = jnp.zeros(())
    assert float(jax.grad(cf.relu)(zero)) == 0.0
    assert float(jax.grad(lambda v: cf.leaky_relu(v, 0.1))(zero)) == pytest.approx(0.1)
    assert float(jax.grad(lambda v: cf.elu(v, 0.5))(zero)) == pytest.approx(0.5)
    np.testing.assert_array_equal(cf.relu(jnp.array([-2.0, 0.0, 3.0])), [0, 0, 3])


def test_softmax_hand_computed():
    # logits log([1, 2, 1]) -> probabilities [1/4, 1/2, 1/4].
    x = jnp.log(jnp.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(cf.softmax(x), [0.25, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(cf.log_softmax(x), np.log([0.25, 0.5, 0.25]), rtol=1e-6)


def test_activation_errors():
    with pytest.raises(ValueError, match=r"axis=2 is out of range for softmax .* 2 axes"):
        cf.softmax(jnp.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match=r"axis=-3 is out of range for log_softmax"):
        cf.log_softmax(jnp.ones((2, 3)), axis=-3)
    with pytest.raises(ValueError, match=r"axis='last' must be an int for softmax"):
        cf.softmax(jnp.ones((2, 3)), axis="last")
    with pytest.raises(ValueError, match=r"softmax needs an input with at least one axis"):
        cf.softmax(jnp.ones(()))
    with pytest.raises(ValueError, match=r"approximate='tanh' must be a bool"):
        cf.gelu(jnp.ones(3), approximate="tanh")
