"""Plain Flax (``flax.linen``) versions of the benchmark networks, as a Flax user writes them.

``TextbookCNN``: conv32-conv32-pool-conv64-conv64-pool-fc256-fc10 (``nn.Conv`` 3x3 "SAME",
ReLU, ``nn.max_pool`` 2x2/2). ``ResNet20``: the CIFAR ResNet (option-A shortcuts, BatchNorm in
training mode with ``batch_stats`` updated each step). The train steps use the same SGD with
momentum (PyTorch's form) as :mod:`benchmarks.models_jax`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from benchmarks.models_jax import LR, MOMENTUM, cross_entropy


class TextbookCNN(nn.Module):
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        for i, width in enumerate((32, 32, 64, 64)):
            x = nn.relu(nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype)(x))
            if i in (1, 3):
                x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(256, dtype=self.dtype)(x))
        return nn.Dense(10, dtype=self.dtype)(x)


class _Block(nn.Module):
    width: int
    stride: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        conv = lambda s: nn.Conv(  # noqa: E731
            self.width, (3, 3), (s, s), padding=1, use_bias=False, dtype=self.dtype
        )
        bn = lambda: nn.BatchNorm(use_running_average=False, momentum=0.9, dtype=self.dtype)  # noqa: E731
        y = nn.relu(bn()(conv(self.stride)(x)))
        y = bn()(conv(1)(y))
        short = x
        if self.stride != 1 or x.shape[-1] != self.width:
            short = x[:, :: self.stride, :: self.stride, :]
            short = jnp.pad(short, ((0, 0), (0, 0), (0, 0), (0, self.width - x.shape[-1])))
        return nn.relu(y + short)


class ResNet20(nn.Module):
    num_classes: int = 10
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(16, (3, 3), padding=1, use_bias=False, dtype=self.dtype)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=False, momentum=0.9, dtype=self.dtype)(x))
        for stage, width in enumerate((16, 32, 64)):
            for b in range(3):
                x = _Block(width, 2 if stage and b == 0 else 1, self.dtype)(x)
        return nn.Dense(self.num_classes, dtype=self.dtype)(jnp.mean(x, axis=(1, 2)))


def make_train_step(model: nn.Module):
    """``step(variables, velocity, x, y) -> (variables, velocity, loss)``; updates batch_stats."""

    def step(variables, velocity, x, y):
        params = variables["params"]
        rest = {k: v for k, v in variables.items() if k != "params"}

        def loss_fn(p):
            if rest:
                logits, updates = model.apply({"params": p, **rest}, x, mutable=list(rest))
            else:
                logits, updates = model.apply({"params": p}, x), {}
            return cross_entropy(logits, y), updates

        (loss, updates), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - LR * v, params, velocity)
        return {"params": params, **updates}, velocity, loss

    return step
