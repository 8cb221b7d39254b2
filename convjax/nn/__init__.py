"""Layer 3: Flax NNX modules. Each holds its parameters and calls one ``convjax.functional`` op.

Conventions (shared with ``convjax.inspect``):
  * every option of a layer's functional op is a public attribute with the functional
    argument's name (``kernel_size``, ``stride``, ``padding``, ``dilation``, ``groups``,
    ``padding_mode``, ``channels_last``, ``flip``, ``impl``, ``in_features``,
    ``out_features``, ``window``, ``ceil_mode``, ``count_include_pad`` ...);
  * parameters are ``kernel`` and ``bias`` :class:`flax.nnx.Param` with the functional
    layouts (``scale``/``bias`` and ``mean``/``var`` statistics for :class:`BatchNorm`);
  * every layer's ``__call__`` ends with ``_trace.record(self, x, y)``; the container
    :class:`Sequential` and the models record nothing themselves;
  * :class:`Dropout` and :class:`BatchNorm` follow ``model.train()`` / ``model.eval()``.

``nnx.split(model)`` gives ``(graphdef, state)``; ``state`` is a pure pytree that
``jax.jit``, ``jax.vmap`` and ``jax.grad`` take directly, and ``nnx.merge(graphdef, state)``
rebuilds the model.
"""

from convjax.nn.activation import ELU, GELU, LeakyReLU, ReLU, Sigmoid, Tanh, activation
from convjax.nn.container import Sequential
from convjax.nn.conv import Conv, Conv1d, Conv2d, Conv3d, ConvTranspose
from convjax.nn.dropout import Dropout, set_dropout_rate
from convjax.nn.linear import Dense, Flatten
from convjax.nn.normalization import BatchNorm
from convjax.nn.pooling import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    GlobalAvgPool,
    GlobalMaxPool,
    LpPool,
    MaxPool,
)

__all__ = [
    "Conv",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose",
    "Dense",
    "Flatten",
    "MaxPool",
    "AvgPool",
    "LpPool",
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "Dropout",
    "set_dropout_rate",
    "BatchNorm",
    "Sequential",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "GELU",
    "Sigmoid",
    "Tanh",
    "activation",
]
