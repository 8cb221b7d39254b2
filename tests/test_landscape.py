"""convjax.inspect.loss_landscape / filter_normalized_direction: filter norms, the centre of
the grid equals the unperturbed loss, a quadratic whose slice is known in closed form,
chunked == one batch, and every error message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn


def test_filter_normalisation():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(3, 3, 2, 4)).astype(np.float32)
    conv[..., 2] = 0.0  # a dead filter gets a zero direction
    params = {
        "conv": jnp.asarray(conv),
        "dense": jnp.asarray(rng.normal(size=(5, 3)), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=(3,)), jnp.float32),
        "scalar": jnp.asarray(2.0),
    }
    d = ci.filter_normalized_direction(params, jax.random.key(0))
    assert jax.tree.structure(d) == jax.tree.structure(params)
    for name in ("conv", "dense"):
        w, u = np.asarray(params[name], np.float64), np.asarray(d[name], np.float64)
        axes = tuple(range(w.ndim - 1))
        # float32 sums of <= 18 squares: relative error ~1e-7.
        np.testing.assert_allclose(
            np.sqrt((u**2).sum(axes)), np.sqrt((w**2).sum(axes)), rtol=1e-5, atol=1e-7
        )
        # Random, not a rescaled copy of the weights: the cosine per filter is not +-1.
        cos = (u * w).sum(axes) / (np.linalg.norm(u.reshape(-1, w.shape[-1]), axis=0) + 1e-30)
        cos = cos / (np.linalg.norm(w.reshape(-1, w.shape[-1]), axis=0) + 1e-30)
        assert np.all(np.abs(cos) < 0.99)
    np.testing.assert_array_equal(np.asarray(d["conv"][..., 2]), 0.0)
    np.testing.assert_array_equal(np.asarray(d["bias"]), 0.0)
    np.testing.assert_array_equal(np.asarray(d["scalar"]), 0.0)
    # Same key, same direction; another key, another.
    again = ci.filter_normalized_direction(params, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(again["dense"]), np.asarray(d["dense"]))
    other = ci.filter_normalized_direction(params, jax.random.key(1))
    assert not np.allclose(np.asarray(other["dense"]), np.asarray(d["dense"]))


def test_centre_equals_the_unperturbed_loss_and_state_is_kept():
    # a random head: with the zoo's zero head every logit is 0 and the slice is flat
    model = cm.PatternCNN(
        (8, 8, 1),
        3,
        widths=(3,),
        convs_per_stage=1,
        fc_widths=(4,),
        rngs=nnx.Rngs(0),
        head_scheme="he_normal",
    )
    x = jax.random.normal(jax.random.key(0), (6, 8, 8, 1))
    y = jnp.arange(6) % 3

    def loss(m):
        return cf.softmax_cross_entropy(m(x), y)

    before = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    land = ci.loss_landscape(model, loss, key=jax.random.key(1), steps=3, span=0.5)
    after = jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    jax.tree.map(np.testing.assert_array_equal, before, after)
    assert land.losses.shape == (3, 3)
    np.testing.assert_allclose(land.alphas, [-0.5, 0.0, 0.5])
    eval_copy = nnx.clone(model)
    eval_copy.eval()  # the landscape evaluates in evaluation mode
    # The vmapped grid runs the convolutions batched over parameter sets, which may sum in
    # another order: float32 rounding of a loss near 1, so an atol of 1e-5.
    assert land.losses[1, 1] == pytest.approx(float(loss(eval_copy)), abs=1e-5)
    assert model.features.layers[1].use_running_average is False  # caller's mode kept
    # Moving along a random direction changes the loss.
    assert np.ptp(land.losses) > 1e-3


def _quadratic():
    # loss(W) = 0.5 ||x W||^2 for a dense layer without bias: with u = x W, v = x d1,
    # w = x d2 the slice is 0.5 ||u + a v + b w||^2, a quadratic in (a, b).
    dense = cnn.Dense(3, 2, use_bias=False, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 3)), jnp.float32)
    return dense, x, lambda m: 0.5 * jnp.sum(m(x) ** 2)


def test_quadratic_slice_in_closed_form():
    dense, x, loss = _quadratic()
    land = ci.loss_landscape(dense, loss, key=jax.random.key(2), steps=5, span=2.0)
    d1, d2 = (np.asarray(d["kernel"], np.float64) for d in land.directions)
    xx, w = np.asarray(x, np.float64), np.asarray(dense.kernel[...], np.float64)
    u, v, t = xx @ w, xx @ d1, xx @ d2
    want = np.array(
        [[0.5 * np.sum((u + a * v + b * t) ** 2) for b in land.betas] for a in land.alphas]
    )
    # float32 evaluation of values up to ~100: relative error ~1e-6.
    np.testing.assert_allclose(land.losses, want, rtol=1e-5, atol=1e-5)
    # One batch or chunks of 4 points (the last chunk partial): the same numbers.
    chunked = ci.loss_landscape(
        dense, loss, directions=land.directions, steps=5, span=2.0, chunk_size=4
    )
    np.testing.assert_allclose(chunked.losses, land.losses, rtol=1e-6, atol=1e-6)


def test_given_directions_are_used_as_they_are():
    dense, x, loss = _quadratic()
    e1 = {"kernel": jnp.asarray([[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])}
    e2 = {"kernel": jnp.asarray([[0.0, 0.0], [0.0, 0.0], [0.0, 1.0]])}
    # Pure dicts (nnx.to_pure_dict's form) are accepted as directions.
    land = ci.loss_landscape(dense, loss, directions=(e1, e2), steps=3)
    xx, w = np.asarray(x, np.float64), np.asarray(dense.kernel[...], np.float64)
    for i, a in enumerate(land.alphas):
        for j, b in enumerate(land.betas):
            moved = w.copy()
            moved[0, 0] += a
            moved[2, 1] += b
            assert land.losses[i, j] == pytest.approx(0.5 * np.sum((xx @ moved) ** 2), rel=1e-5)


def test_errors():
    dense, _, loss = _quadratic()
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"steps=1 must be an int >= 2"):
        ci.loss_landscape(dense, loss, key=key, steps=1)
    with pytest.raises(ValueError, match=r"span=0 must be a positive number"):
        ci.loss_landscape(dense, loss, key=key, span=0)
    with pytest.raises(ValueError, match=r"chunk_size=0 must be None \(one batch\)"):
        ci.loss_landscape(dense, loss, key=key, chunk_size=0)
    with pytest.raises(ValueError, match=r"needs key=jax.random.key\(seed\)"):
        ci.loss_landscape(dense, loss)
    with pytest.raises(ValueError, match=r"directions must be a pair \(d1, d2\)"):
        ci.loss_landscape(dense, loss, directions=({"kernel": 0},))
    with pytest.raises(ValueError, match=r"directions\[0\] has another structure"):
        ci.loss_landscape(dense, loss, directions=({"w": jnp.zeros(3)}, {"w": jnp.zeros(3)}))
    with pytest.raises(ValueError, match=r"loss_fn returned shape \(4, 2\); it must return one"):
        ci.loss_landscape(dense, lambda m: m(jnp.ones((4, 3))), key=key)
