"""convjax.inspect.forward / activations / layer_names: named layer outputs against a NumPy
forward pass, perturbation gradients against the hand-derived chain rule, purity (no state
change, no leaked tracers, the layer hook restored), names of residual and shared layers,
and every error message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn
from convjax.nn import _trace

# float32 forward passes of a few dozen terms against float64 NumPy: relative error about
# 1e-6 per term; an atol covers outputs near zero (after ReLU, batch-norm centring).
TOL = dict(rtol=1e-5, atol=1e-5)


def _bn_model():
    """1x1 conv (hand weights) -> BatchNorm (training mode) -> ReLU -> global mean -> dense."""
    r = nnx.Rngs(0)
    conv = cnn.Conv2d(2, 3, 1, rngs=r)
    conv.kernel[...] = jnp.asarray([[1.0, -0.5, 0.25], [0.5, 2.0, -1.0]]).reshape(1, 1, 2, 3)
    conv.bias[...] = jnp.asarray([0.1, -0.2, 0.3])
    bn = cnn.BatchNorm(3)
    bn.scale[...] = jnp.asarray([1.5, 0.5, 2.0])
    bn.bias[...] = jnp.asarray([0.0, 0.1, -0.1])
    dense = cnn.Dense(3, 2, rngs=r)
    dense.kernel[...] = jnp.asarray([[1.0, -1.0], [0.5, 0.25], [-2.0, 1.0]])
    dense.bias[...] = jnp.asarray([0.0, 1.0])
    return cnn.Sequential(conv, bn, cnn.ReLU(), cnn.GlobalAvgPool(), dense)


def _numpy_forward(x):
    """The same network in float64 NumPy, batch-norm on the batch's statistics."""
    w = np.array([[1.0, -0.5, 0.25], [0.5, 2.0, -1.0]])
    h0 = x @ w + np.array([0.1, -0.2, 0.3])
    mean = h0.mean(axis=(0, 1, 2))
    var = h0.var(axis=(0, 1, 2))
    h1 = (h0 - mean) / np.sqrt(var + 1e-5) * np.array([1.5, 0.5, 2.0]) + [0.0, 0.1, -0.1]
    h2 = np.maximum(h1, 0)
    h3 = h2.mean(axis=(1, 2))
    h4 = h3 @ np.array([[1.0, -1.0], [0.5, 0.25], [-2.0, 1.0]]) + [0.0, 1.0]
    return [h0, h1, h2, h3, h4]


def test_activations_match_numpy_forward_in_training_mode():
    model = _bn_model()
    x = np.random.default_rng(0).normal(size=(4, 3, 5, 2))
    acts = ci.activations(model, jnp.asarray(x, jnp.float32))
    assert list(acts) == [f"layers.{i}" for i in range(5)]  # call order
    for got, want in zip(acts.values(), _numpy_forward(x)):
        np.testing.assert_allclose(np.asarray(got), want, **TOL)
    one = ci.activations(model, jnp.asarray(x, jnp.float32), "layers.2")
    assert list(one) == ["layers.2"]
    np.testing.assert_allclose(np.asarray(one["layers.2"]), _numpy_forward(x)[2], **TOL)


def test_activations_leave_the_model_unchanged():
    # BatchNorm in training mode would update its running statistics; Dropout in training
    # mode would advance its key counter. The caller's model sees neither.
    r = nnx.Rngs(0)
    model = cnn.Sequential(
        cnn.Conv2d(1, 2, 3, rngs=r), cnn.BatchNorm(2), cnn.Dropout(0.5, rngs=r), cnn.ReLU()
    )

    def snapshot():
        leaves = jax.tree.leaves(nnx.to_pure_dict(nnx.state(model)))
        return [
            np.asarray(
                jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a
            )
            for a in leaves
        ]

    before = snapshot()
    x = jnp.asarray(np.random.default_rng(5).normal(size=(2, 6, 6, 1)), jnp.float32)
    first = ci.activations(model, x, ["layers.1", "layers.2"])
    second = ci.activations(model, x, "layers.2")["layers.2"]
    ci.forward(model, x)  # eager, unjitted: the same copy semantics
    jax.grad(lambda x: ci.forward(model, x)[0].sum())(x)
    after = snapshot()
    # conv kernel and bias, BN scale, bias, mean and var, the dropout stream's key and count
    assert len(before) == len(after) == 8
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    # The copy's stream starts where the model's is, so both calls draw the same mask.
    np.testing.assert_array_equal(first["layers.2"], second)
    assert model.layers[1].use_running_average is False  # mode kept
    # Dropout ran in training mode: each unit is 0 or twice the batch-norm output (rate 0.5),
    # and both happen (72 units; the mask is fixed by the seed).
    bn, dropped = np.asarray(first["layers.1"]), np.asarray(first["layers.2"])
    kept = dropped != 0
    np.testing.assert_allclose(dropped[kept], 2 * bn[kept], rtol=1e-6)
    assert 0.2 < kept.mean() < 0.8


def test_eval_mode_uses_running_statistics_and_no_dropout():
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.BatchNorm(2), cnn.Dropout(0.5, rngs=r))
    model.layers[0].mean[...] = jnp.asarray([1.0, -1.0])
    model.layers[0].var[...] = jnp.asarray([4.0, 0.25])
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4, 2)), jnp.float32)
    acts = ci.activations(model, x, eval_mode=True)
    want = (np.asarray(x) - [1.0, -1.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5)
    np.testing.assert_allclose(np.asarray(acts["layers.1"]), want, **TOL)
    assert model.layers[1].deterministic is False  # the caller's mode is untouched


def test_perturbation_gradient_is_the_downstream_weight():
    # out = relu(x W1 + b1) W2 + b2 with delta added after the ReLU: d out[:, c] / d delta
    # is W2[:, c] for every example, whatever x is (the chain rule by hand).
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Dense(3, 4, rngs=r), cnn.ReLU(), cnn.Dense(4, 2, rngs=r))
    w2 = np.asarray(model.layers[2].kernel[...])
    x = jnp.asarray(np.random.default_rng(2).normal(size=(5, 3)), jnp.float32)
    zero = jnp.zeros((5, 4))

    def score(delta, c):
        out, _ = ci.forward(model, x, perturb={"layers.1": delta})
        return out[:, c].sum()

    for c in range(2):
        g = jax.jit(jax.grad(score), static_argnums=1)(zero, c)
        np.testing.assert_allclose(np.asarray(g), np.broadcast_to(w2[:, c], (5, 4)), rtol=1e-6)
    # The perturbation moves the output by delta @ W2, and the captured value includes it.
    delta = jnp.asarray(np.random.default_rng(3).normal(size=(5, 4)), jnp.float32)
    base, _ = ci.forward(model, x)
    moved, acts = ci.forward(model, x, capture=["layers.1"], perturb={"layers.1": delta})
    np.testing.assert_allclose(np.asarray(moved - base), np.asarray(delta) @ w2, **TOL)
    relu = np.maximum(np.asarray(model.layers[0](x)), 0)
    np.testing.assert_allclose(np.asarray(acts["layers.1"]), relu + np.asarray(delta), **TOL)


def test_no_leaked_tracers_and_the_hook_is_restored():
    model = cm.PatternCNN(
        (8, 8, 1), 3, widths=(2,), convs_per_stage=1, fc_widths=(), rngs=nnx.Rngs(0)
    )
    x = jnp.ones((2, 8, 8, 1))
    original = _trace.record
    with jax.checking_leaks():
        acts = jax.jit(lambda x: ci.forward(model, x, capture=None)[1])(x)
        g = jax.grad(lambda x: ci.forward(model, x)[0].sum())(x)
    assert _trace.record is original
    assert set(acts) == set(ci.layer_names(model, (8, 8, 1)))
    assert g.shape == x.shape
    # After a failing call (bad perturbation) the hook is restored too.
    with pytest.raises(ValueError, match="perturb"):
        ci.forward(model, x, perturb={"features.layers.0": jnp.zeros((1,))})
    assert _trace.record is original


def test_vmap_over_perturbations():
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Dense(3, 4, rngs=r), cnn.ReLU(), cnn.Dense(4, 2, rngs=r))
    x = jnp.ones((1, 3))
    deltas = jnp.asarray(np.random.default_rng(4).normal(size=(6, 1, 4)), jnp.float32)
    batched = jax.vmap(lambda d: ci.forward(model, x, perturb={"layers.1": d})[0])(deltas)
    single = jnp.stack([ci.forward(model, x, perturb={"layers.1": d})[0] for d in deltas])
    np.testing.assert_allclose(np.asarray(batched), np.asarray(single), **TOL)


def test_residual_and_shared_layer_names():
    resnet = cm.ResNet20(num_classes=10, rngs=nnx.Rngs(0))
    x = jnp.zeros((1, 32, 32, 3))
    names = ci.layer_names(resnet, (32, 32, 3))
    acts = ci.activations(resnet, x)
    assert list(acts) == names  # call order, every call
    assert "stages.layers.8.relu2" in acts and acts["stages.layers.8.relu2"].shape == (1, 8, 8, 64)

    r = nnx.Rngs(0)
    shared = cnn.Dense(3, 3, rngs=r)

    class Twice(nnx.Module):
        def __init__(self):
            self.layer = shared
            self.act = cnn.Tanh()

        def __call__(self, x):
            return self.layer(self.act(self.layer(x)))

    x = jnp.asarray([[1.0, 2.0, -1.0]])
    acts = ci.activations(Twice(), x)
    assert list(acts) == ["layer", "act", "layer#2"]
    w, b = np.asarray(shared.kernel[...]), np.asarray(shared.bias[...])
    first = np.asarray(x) @ w + b
    np.testing.assert_allclose(np.asarray(acts["layer#2"]), np.tanh(first) @ w + b, **TOL)


def test_errors():
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Dense(3, 4, rngs=r), cnn.ReLU())
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"layers names \['layers.7'\].*'layers.0', 'layers.1'"):
        ci.activations(model, x, "layers.7")
    with pytest.raises(ValueError, match=r"perturb names \['relu'\] that are no layer call"):
        ci.forward(model, x, perturb={"relu": jnp.zeros((2, 4))})
    with pytest.raises(ValueError, match=r"perturb\['layers.1'\] has shape \(4,\).*\(2, 4\)"):
        ci.forward(model, x, perturb={"layers.1": jnp.zeros((4,))})
    with pytest.raises(ValueError, match="perturb=list must be a dict"):
        ci.forward(model, x, perturb=[jnp.zeros((2, 4))])
    with pytest.raises(ValueError, match=r"capture=3 must be a layer name"):
        ci.forward(model, x, capture=3)
    with pytest.raises(ValueError, match=r"layers=\[0\] must be a layer name"):
        ci.activations(model, x, [0])
