"""convjax.inspect.saliency / grad_cam on hand-built models whose answers are derived by hand
and computed in NumPy, and every error message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.inspect as ci
import convjax.nn as cnn

# float32 against float64 NumPy with sums of at most a few dozen terms: relative error
# ~1e-6; the atol covers entries near zero.
TOL = dict(rtol=1e-5, atol=1e-6)


def _set(layer, kernel, bias=None):
    layer.kernel[...] = jnp.asarray(kernel, jnp.float32)
    if bias is not None:
        layer.bias[...] = jnp.asarray(bias, jnp.float32)


def _rng(seed):
    return np.random.default_rng(seed)


def test_saliency_of_a_two_layer_net_is_the_hand_chain_rule():
    # logits = relu(flatten(x) W1 + b1) W2 + b2; d logit_c / d x = (W1 diag(relu'(h)) W2)[:, c]
    r = nnx.Rngs(0)
    model = cnn.Sequential(
        cnn.Flatten(), cnn.Dense(12, 5, rngs=r), cnn.ReLU(), cnn.Dense(5, 3, rngs=r)
    )
    w1, b1 = _rng(0).normal(size=(12, 5)), _rng(1).normal(size=5)
    w2, b2 = _rng(2).normal(size=(5, 3)), _rng(3).normal(size=3)
    _set(model.layers[1], w1, b1)
    _set(model.layers[3], w2, b2)
    x = _rng(4).normal(size=(4, 2, 3, 2))
    s = ci.saliency(model, jnp.asarray(x, jnp.float32))
    h = x.reshape(4, 12) @ w1 + b1
    logits = np.maximum(h, 0) @ w2 + b2
    target = logits.argmax(axis=1)
    want = np.stack([(w1 * (h[n] > 0)) @ w2[:, target[n]] for n in range(4)]).reshape(x.shape)
    np.testing.assert_array_equal(s.target, target)
    np.testing.assert_allclose(s.gradient, want, **TOL)
    np.testing.assert_allclose(s.map, np.abs(want).max(axis=-1), **TOL)
    # An explicit class, the same for every example.
    s1 = ci.saliency(model, jnp.asarray(x, jnp.float32), target=1)
    want1 = np.stack([(w1 * (h[n] > 0)) @ w2[:, 1] for n in range(4)]).reshape(x.shape)
    np.testing.assert_allclose(s1.gradient, want1, **TOL)


def test_smoothgrad_of_a_linear_model_is_its_gradient():
    # A linear model's gradient does not depend on x, so averaging it over noisy copies
    # changes nothing (up to the rounding of a mean of 8 equal float32 numbers, ~1e-7).
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Flatten(), cnn.Dense(8, 3, rngs=r))
    w = _rng(5).normal(size=(8, 3))
    _set(model.layers[1], w, np.zeros(3))
    x = jnp.asarray(_rng(6).normal(size=(2, 2, 2, 2)), jnp.float32)
    s = ci.saliency(model, x, target=[2, 0], samples=8, key=jax.random.key(0))
    want = np.stack([w[:, 2], w[:, 0]]).reshape(2, 2, 2, 2)
    np.testing.assert_allclose(s.gradient, want, rtol=1e-5)


def test_smoothgrad_differs_from_the_gradient_of_a_relu_net():
    # For a ReLU network the noisy copies cross kinks, so the average is not the gradient:
    # guards against the noise being ignored.
    r = nnx.Rngs(1)
    model = cnn.Sequential(
        cnn.Flatten(), cnn.Dense(8, 16, rngs=r), cnn.ReLU(), cnn.Dense(16, 3, rngs=r)
    )
    x = jnp.asarray(_rng(7).normal(size=(2, 2, 2, 2)), jnp.float32)
    plain = ci.saliency(model, x, target=0)
    smooth = ci.saliency(model, x, target=0, samples=16, noise=0.5, key=jax.random.key(0))
    assert np.abs(plain.gradient - smooth.gradient).max() > 1e-3


def _gap_model():
    """1x1 conv (1 -> 2 channels, hand weights) -> ReLU -> global mean -> dense (2 -> 3)."""
    r = nnx.Rngs(0)
    conv = cnn.Conv2d(1, 2, 1, rngs=r)
    _set(conv, np.array([1.0, -2.0]).reshape(1, 1, 1, 2), [0.0, 0.5])
    dense = cnn.Dense(2, 3, rngs=r)
    wd = np.array([[1.0, -1.0, 0.5], [2.0, 0.5, -1.0]])
    _set(dense, wd, [0.1, 0.0, -0.1])
    return cnn.Sequential(conv, cnn.ReLU(), cnn.GlobalAvgPool(), dense), wd


def test_grad_cam_global_average_head_by_hand():
    # y_c = sum_k W[k, c] mean_ij A_ijk + b_c, so dy_c / dA_ijk = W[k, c] / (H W), the channel
    # weights are alpha_k = W[k, c] / (H W) and the map is relu(sum_k alpha_k A_k): CAM.
    model, wd = _gap_model()
    x = _rng(8).normal(size=(3, 4, 5, 1))
    a = np.maximum(np.concatenate([x * 1.0, x * -2.0 + 0.5], axis=-1), 0)
    for target in ([0, 1, 2], [2, 2, 0]):
        g = ci.grad_cam(model, jnp.asarray(x, jnp.float32), "layers.1", target=target)
        alpha = wd[:, target].T / 20.0
        cam = np.maximum(np.einsum("nhwk,nk->nhw", a, alpha), 0)
        np.testing.assert_allclose(g.weights, alpha, **TOL)
        np.testing.assert_allclose(g.cam, cam, **TOL)
        # The layer has the input's resolution, so the heat map is the map over its maximum.
        peak = cam.reshape(3, -1).max(axis=1)[:, None, None]
        want = np.where(peak > 0, cam / np.where(peak > 0, peak, 1), 0)
        np.testing.assert_allclose(g.heatmap, want, **TOL)
        np.testing.assert_array_equal(g.target, target)
    # Default target: the predicted class.
    logits = a.mean(axis=(1, 2)) @ wd + [0.1, 0.0, -0.1]
    g = ci.grad_cam(model, jnp.asarray(x, jnp.float32), "layers.1")
    np.testing.assert_array_equal(g.target, logits.argmax(axis=1))


def test_grad_cam_flatten_head_and_upsampling():
    # conv 1x1 -> ReLU -> 2x2 average pool -> flatten -> dense: the pooled map A (2x2x2) has
    # position-dependent gradients dy_c / dA_ijk = W[(2 i + j) 2 + k, c].
    r = nnx.Rngs(0)
    conv = cnn.Conv2d(1, 2, 1, rngs=r)
    _set(conv, np.array([1.0, -1.0]).reshape(1, 1, 1, 2), [0.2, 0.1])
    dense = cnn.Dense(8, 3, rngs=r)
    w = _rng(9).normal(size=(8, 3))
    _set(dense, w, np.zeros(3))
    model = cnn.Sequential(conv, cnn.ReLU(), cnn.AvgPool((2, 2)), cnn.Flatten(), dense)
    x = _rng(10).normal(size=(2, 4, 4, 1))
    h = np.maximum(np.concatenate([x + 0.2, -x + 0.1], axis=-1), 0)
    a = h.reshape(2, 2, 2, 2, 2, 2).mean(axis=(2, 4))  # (n, i, di, j, dj, k) -> (n, i, j, k)
    g = ci.grad_cam(model, jnp.asarray(x, jnp.float32), "layers.2", target=1)
    grad = w[:, 1].reshape(2, 2, 2)  # flatten order (i, j, k)
    alpha = grad.mean(axis=(0, 1))
    cam = np.maximum(np.einsum("nijk,k->nij", a, alpha), 0)
    np.testing.assert_allclose(g.weights, np.broadcast_to(alpha, (2, 2)), **TOL)
    np.testing.assert_allclose(g.cam, cam, **TOL)
    assert g.heatmap.shape == (2, 4, 4)
    assert g.heatmap.min() >= 0 and g.heatmap.max() <= 1 + 1e-6
    # A 2x2 map upsampled to 4x4 keeps its per-example arg-max quadrant.
    for n in range(2):
        if cam[n].max() > 0:
            i, j = np.unravel_index(cam[n].argmax(), (2, 2))
            quadrant = g.heatmap[n, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
            assert quadrant.max() == pytest.approx(1.0, abs=1e-6)


def test_score_for_dense_outputs():
    # A per-pixel output (N, H, W, classes): score = the class-1 logit summed over pixels.
    r = nnx.Rngs(0)
    conv = cnn.Conv2d(1, 2, 1, rngs=r)
    _set(conv, np.array([1.0, 3.0]).reshape(1, 1, 1, 2), [0.0, 0.0])
    model = cnn.Sequential(conv)
    x = jnp.asarray(_rng(11).normal(size=(2, 3, 3, 1)), jnp.float32)
    s = ci.saliency(model, x, score=lambda out: out[..., 1].sum(axis=(1, 2)))
    np.testing.assert_allclose(s.gradient, np.full((2, 3, 3, 1), 3.0), rtol=1e-6)
    np.testing.assert_array_equal(s.target, [-1, -1])  # no class index: the score chose
    with pytest.raises(ValueError, match=r"output has shape \(2, 3, 3, 2\), not \(N, num_classes"):
        ci.saliency(model, x)


def test_errors():
    model, _ = _gap_model()
    x = jnp.zeros((2, 4, 4, 1))
    with pytest.raises(ValueError, match=r"layer='layers.3' outputs shape \(2, 3\).*no spatial"):
        ci.grad_cam(model, x, "layers.3")
    with pytest.raises(ValueError, match=r"layers names \['conv'\] that are no layer call"):
        ci.grad_cam(model, x, "conv")
    with pytest.raises(ValueError, match=r"layer=3 must be a layer name"):
        ci.grad_cam(model, x, 3)
    with pytest.raises(ValueError, match=r"target contains \[3\], outside the model's 3 classes"):
        ci.grad_cam(model, x, "layers.1", target=[0, 3])
    with pytest.raises(ValueError, match=r"target=\[0, 1, 2\] must be None .* or 2 ints"):
        ci.saliency(model, x, target=[0, 1, 2])
    with pytest.raises(ValueError, match=r"x has dtype int32; gradients need a float input"):
        ci.saliency(model, jnp.zeros((2, 4, 4, 1), jnp.int32))
    with pytest.raises(ValueError, match=r"x has shape \(4, 1\); pass a batch"):
        ci.saliency(model, jnp.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"samples=4 asks for SmoothGrad, which needs key"):
        ci.saliency(model, x, samples=4)
    with pytest.raises(ValueError, match=r"samples=-1 must be an int >= 0"):
        ci.saliency(model, x, samples=-1)
    with pytest.raises(ValueError, match=r"noise=0 must be a positive float"):
        ci.saliency(model, x, samples=2, noise=0, key=jax.random.key(0))
    with pytest.raises(ValueError, match=r"score\(output\) returned shape \(\); it must return"):
        ci.saliency(model, x, score=lambda out: out.sum())
