"""dense and flatten: hand-computed cases, NumPy/PyTorch references, transforms, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch  # the parity oracle (scripts/install.sh installs it): missing, it fails

import convjax.functional as cf

# The lecture's "backprop with matrices" numbers (x: N x D, w: D x M).
X = np.array([[2.0, 1.0, -3.0], [-3.0, 4.0, 2.0]])
W = np.array([[3.0, 2.0, 1.0, -1.0], [2.0, 1.0, 3.0, 2.0], [3.0, 2.0, 1.0, -2.0]])


def test_dense_hand_computed_lecture_matrices():
    # Row 0: 2*[3,2,1,-1] + 1*[2,1,3,2] - 3*[3,2,1,-2] = [-1,-1,2,6]
    # Row 1: -3*[3,2,1,-1] + 4*[2,1,3,2] + 2*[3,2,1,-2] = [5,2,11,7]
    # (The slide prints [[13,9,-2,-6],[5,2,17,1]], which is not x @ w.)
    y = cf.dense(jnp.asarray(X), jnp.asarray(W))
    np.testing.assert_array_equal(np.asarray(y), [[-1, -1, 2, 6], [5, 2, 11, 7]])
    y_b = cf.dense(jnp.asarray(X), jnp.asarray(W), jnp.array([1.0, 0.0, -1.0, 0.5]))
    np.testing.assert_array_equal(np.asarray(y_b), [[0, -1, 1, 6.5], [6, 2, 10, 7.5]])


def test_dense_unbatched_and_many_batch_dims_match_numpy():
    rng = np.random.default_rng(0)
    k = rng.normal(size=(5, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    for shape in [(5,), (4, 5), (2, 3, 5), (2, 1, 3, 5)]:
        x = rng.normal(size=shape).astype(np.float32)
        y = cf.dense(x, k, b)
        assert y.shape == shape[:-1] + (3,)
        np.testing.assert_allclose(np.asarray(y), x @ k + b, rtol=1e-5, atol=1e-5)


def test_dense_matches_torch_linear():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 7))
    k = rng.normal(size=(7, 4))
    b = rng.normal(size=(4,))
    # torch.nn.functional.linear stores the weight as (out, in): our kernel transposed.
    ref = torch.nn.functional.linear(torch.tensor(x), torch.tensor(k.T), torch.tensor(b)).numpy()
    with jax.enable_x64(True):
        y = cf.dense(jnp.asarray(x), jnp.asarray(k), jnp.asarray(b))
        np.testing.assert_allclose(np.asarray(y), ref, rtol=1e-12, atol=1e-12)


def test_dense_jit_vmap_grad_agree_with_eager():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    b = jnp.asarray(rng.normal(size=(3,)), jnp.float32)
    eager = cf.dense(x, k, b)
    # float32 sums of 5 products of N(0, 1) values, maybe in another order under jit/vmap:
    # rounding <= 5 * 6e-8 * max|x k| (< 20), about 6e-6, large relative to outputs near 0.
    tol = dict(rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(jax.jit(cf.dense)(x, k, b), eager, **tol)
    np.testing.assert_allclose(jax.vmap(cf.dense, (0, None, None))(x, k, b), eager, **tol)
    # Gradients of sum(y * g) are the lecture's formulas: dx = g w^T, dw = x^T g, db = sum g.
    g = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    dx, dk, db = jax.grad(lambda x, k, b: jnp.sum(cf.dense(x, k, b) * g), (0, 1, 2))(x, k, b)
    np.testing.assert_allclose(dx, g @ k.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(dk, x.T @ g, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(db, g.sum(0), rtol=1e-5, atol=1e-6)


def test_dense_precision_and_preferred_element_type():
    x = jnp.ones((2, 3), jnp.bfloat16)
    k = jnp.ones((3, 4), jnp.bfloat16)
    y = cf.dense(x, k, precision=jax.lax.Precision.HIGHEST, preferred_element_type=jnp.float32)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), np.full((2, 4), 3.0))


def test_flatten_batched_and_unbatched():
    x = jnp.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    assert cf.flatten(x).shape == (2, 60)
    np.testing.assert_array_equal(cf.flatten(x), np.arange(120).reshape(2, 60))
    assert cf.flatten(x[0], start_axis=0).shape == (60,)
    assert cf.flatten(x, start_axis=2).shape == (2, 3, 20)
    assert cf.flatten(x, start_axis=-1).shape == (2, 3, 4, 5)
    assert cf.flatten(x, start_axis=-2).shape == (2, 3, 20)
    # Same numbers per example as vmapping the unbatched form.
    np.testing.assert_array_equal(jax.vmap(lambda a: cf.flatten(a, 0))(x), cf.flatten(x))


def test_dense_errors():
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 4, 1\) must be 2-D"):
        cf.dense(jnp.ones((2, 3)), jnp.ones((3, 4, 1)))
    with pytest.raises(ValueError, match=r"x.shape=\(2, 5\) has 5 features .* expects 3"):
        cf.dense(jnp.ones((2, 5)), jnp.ones((3, 4)))
    with pytest.raises(ValueError, match=r"bias.shape=\(3,\) must be \(4,\)"):
        cf.dense(jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.ones((3,)))
    with pytest.raises(ValueError, match=r"x.shape=\(\) must have at least one axis"):
        cf.dense(jnp.ones(()), jnp.ones((3, 4)))


def test_flatten_errors():
    with pytest.raises(ValueError, match=r"start_axis=4 is out of range .* 4 axes"):
        cf.flatten(jnp.ones((1, 2, 3, 4)), start_axis=4)
    with pytest.raises(ValueError, match=r"start_axis=1.5 must be an int"):
        cf.flatten(jnp.ones((1, 2)), start_axis=1.5)
    with pytest.raises(ValueError, match=r"x.shape=\(\) is 0-D"):
        cf.flatten(jnp.ones(()), start_axis=0)
