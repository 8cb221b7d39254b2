"""The benchmark networks written directly on ``convjax.functional`` and on plain ``lax``.

The textbook CNN of issue 8 (conv32-conv32-pool-conv64-conv64-pool-fc256-fc10, 3x3 "SAME"
convolutions with bias and ReLU, 2x2/2 max pooling, on 28x28x1 inputs) as a pure function of
a parameter dict, in three spellings that compute the same numbers:

  * ``lax_cnn``: the pure-``lax`` reference (``lax.conv_general_dilated`` and
    ``lax.reduce_window`` max pooling, i.e. what Flax linen runs);
  * ``convjax_cnn``: ``convjax.functional`` ops (``cf.conv(impl=...)``, ``cf.max_pool``,
    ``cf.dense``), with the conv implementation and the layout as knobs.

The train step is SGD with momentum in PyTorch's form (``v = mu * v + g; p -= lr * v``) on
the mean softmax cross-entropy, so the PyTorch and Flax versions in the sibling modules
run the same arithmetic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import convjax.functional as cf

# 3x3 "SAME" convolutions: (in, out) channels; a 2x2/2 max pool after layers 2 and 4.
CNN_CONVS = ((1, 32), (32, 32), (32, 64), (64, 64))
CNN_POOL_AFTER = (1, 3)
CNN_FC = ((7 * 7 * 64, 256), (256, 10))
LR, MOMENTUM = 0.01, 0.9


def cnn_params(key, dtype=jnp.float32):
    """He-normal kernels (HWIO), zero biases: ``{"conv0": {"kernel", "bias"}, ..., "fc1"}``."""
    keys = jax.random.split(key, len(CNN_CONVS) + len(CNN_FC))
    params = {}
    for i, (cin, cout) in enumerate(CNN_CONVS):
        std = np.sqrt(2.0 / (9 * cin))
        params[f"conv{i}"] = {
            "kernel": (std * jax.random.normal(keys[i], (3, 3, cin, cout))).astype(dtype),
            "bias": jnp.zeros((cout,), dtype),
        }
    for j, (fin, fout) in enumerate(CNN_FC):
        std = np.sqrt(2.0 / fin)
        params[f"fc{j}"] = {
            "kernel": (std * jax.random.normal(keys[len(CNN_CONVS) + j], (fin, fout))).astype(
                dtype
            ),
            "bias": jnp.zeros((fout,), dtype),
        }
    return params


def lax_cnn(params, x):
    """Pure-``lax`` reference forward: NHWC ``x`` ``(N, 28, 28, 1)`` -> logits ``(N, 10)``."""
    dn = ("NHWC", "HWIO", "NHWC")
    for i in range(len(CNN_CONVS)):
        p = params[f"conv{i}"]
        x = lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=dn)
        x = jax.nn.relu(x + p["bias"])
        if i in CNN_POOL_AFTER:
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    x = x.reshape(x.shape[0], -1)
    x = jax.nn.relu(x @ params["fc0"]["kernel"] + params["fc0"]["bias"])
    return x @ params["fc1"]["kernel"] + params["fc1"]["bias"]


def convjax_cnn(params, x, *, impl="lax", channels_last=True):
    """The same network with ``convjax.functional`` ops.

    ``impl`` is the conv implementation for every conv, or one name per conv (e.g. the choices
    of ``convjax.tuning``); ``channels_last=False`` runs the
    convolutions and pools in NCHW (``x`` is then ``(N, 1, 28, 28)``). The flatten before
    the first FC layer is always in NHWC order, so parameters are shared between layouts.
    """
    impls = (impl,) * len(CNN_CONVS) if isinstance(impl, str) else tuple(impl)
    for i in range(len(CNN_CONVS)):
        p = params[f"conv{i}"]
        x = cf.relu(
            cf.conv(
                x,
                p["kernel"],
                p["bias"],
                padding="SAME",
                impl=impls[i],
                channels_last=channels_last,
            )
        )
        if i in CNN_POOL_AFTER:
            x = cf.max_pool(x, (2, 2), channels_last=channels_last)
    if not channels_last:
        x = jnp.moveaxis(x, 1, -1)
    x = cf.flatten(x) if hasattr(cf, "flatten") else x.reshape(x.shape[0], -1)
    x = cf.relu(cf.dense(x, params["fc0"]["kernel"], params["fc0"]["bias"]))
    return cf.dense(x, params["fc1"]["kernel"], params["fc1"]["bias"])


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy with integer labels (float32 accumulation)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32))
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def make_train_step(forward, lr=LR, momentum=MOMENTUM):
    """``step(params, velocity, x, y) -> (params, velocity, loss)`` for a pure ``forward``."""

    def step(params, velocity, x, y):
        loss, grads = jax.value_and_grad(lambda p: cross_entropy(forward(p, x), y))(params)
        velocity = jax.tree.map(lambda v, g: momentum * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - lr * v, params, velocity)
        return params, velocity, loss

    return step


def make_nnx_train_step(graphdef):
    """``step(params, rest, velocity, x, y) -> (params, batch_stats, velocity, loss)`` for an
    NNX model split as ``nnx.split(model, nnx.Param, ...)``: the same SGD momentum."""
    from flax import nnx

    def step(params, rest, velocity, x, y):
        # NNX's own transform carries the BatchStat updates through the gradient trace.
        m = nnx.merge(graphdef, params, rest)
        loss, grads = nnx.value_and_grad(lambda m: cross_entropy(m(x), y))(m)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - LR * v, params, velocity)
        return params, nnx.state(m, nnx.BatchStat), velocity, loss

    return step


def cnn_batch(key, batch=128, dtype=jnp.float32, channels_last=True):
    """A random batch ``(x, labels)`` of the textbook CNN's input size."""
    kx, ky = jax.random.split(key)
    x = jax.random.normal(kx, (batch, 28, 28, 1), dtype)
    if not channels_last:
        x = jnp.moveaxis(x, -1, 1)
    return x, jax.random.randint(ky, (batch,), 0, 10)
