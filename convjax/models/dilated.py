"""A dilated context network in the style of Yu & Koltun 2016 ("Multi-Scale Context
Aggregation by Dilated Convolutions").

The basic context module: seven 3x3 convolutions of width C with dilations
``1, 1, 2, 4, 8, 16, 1`` (padding = dilation keeps the resolution), each followed by ReLU,
then a 1x1 convolution. Its receptive field grows exponentially with depth while the
parameter count grows linearly: ``1 + 2 * (1 + 1 + 2 + 4 + 8 + 16 + 1) = 67`` pixels.

Here the module sits between a 3x3 stem (input channels -> C) and a head. With
``dense_output=True`` the head is a 1x1 conv to ``num_classes`` and the output is a map of
per-pixel logits (the paper's dense-prediction setting); otherwise global average pooling
and a dense layer give image logits. ``identity_init=True`` is the paper's identity
initialisation of the context layers (each 3x3 kernel passes its input straight through).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["DilatedContextNet"]


class DilatedContextNet(nnx.Module):
    """Stem + dilated context module + classification (or per-pixel) head.

    Args:
      input_shape: ``(H, W, C)``.
      num_classes: classes (image logits, or logits per pixel with ``dense_output``).
      rngs: :class:`flax.nnx.Rngs`.
      width: C, channels of the stem and of every context layer.
      dilations: dilation of each 3x3 context layer (``(1, 1, 2, 4, 8, 16, 1)``); ablate
        with e.g. all ones to compare plain and dilated stacks of equal depth.
      kernel_size: of the context layers (3).
      identity_init: the paper's identity initialisation of the context layers (their
        biases stay 0, so the context module starts as the identity on the stem's output).
      batch_norm: a BatchNorm after each stem/context conv (not in the paper).
      dense_output: per-pixel logits ``(N, H, W, num_classes)`` instead of ``(N, num_classes)``.
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)`` or ``(N, H, W, num_classes)``.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
        width: int = 32,
        dilations: Sequence[int] = (1, 1, 2, 4, 8, 16, 1),
        kernel_size: int = 3,
        identity_init: bool = False,
        batch_norm: bool = False,
        dense_output: bool = False,
        head_scheme: str = "zeros",
    ):
        owner = "DilatedContextNet"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        width = _util.positive_int(width, "width", owner)
        dilations = tuple(dilations)
        if not dilations or any(
            isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations
        ):
            raise ValueError(
                f"{owner}: dilations={dilations!r} must be one or more ints >= 1, e.g. "
                f"(1, 1, 2, 4, 8, 16, 1)."
            )
        if (
            isinstance(kernel_size, bool)
            or not isinstance(kernel_size, int)
            or kernel_size % 2 != 1
        ):
            raise ValueError(
                f"{owner}: kernel_size={kernel_size} must be odd so that padding "
                f"dilation * (F - 1) / 2 keeps the resolution; use 3."
            )
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.width = width
        self.dilations = dilations
        self.kernel_size = kernel_size
        self.identity_init = identity_init
        self.batch_norm = batch_norm
        self.dense_output = dense_output

        def conv_relu(cin, k, dilation):
            conv = nn.Conv2d(
                cin,
                width,
                k,
                dilation=dilation,
                padding=dilation * (k - 1) // 2,
                use_bias=not batch_norm,
                rngs=rngs,
            )
            layers = [conv]
            if batch_norm:
                layers.append(nn.BatchNorm(width))
            return conv, [*layers, nn.ReLU()]

        _, stem = conv_relu(c, 3, 1)
        self.stem = nn.Sequential(*stem)
        layers = []
        for d in dilations:
            conv, block = conv_relu(width, kernel_size, d)
            if identity_init:
                centre = kernel_size // 2
                kernel = jnp.zeros_like(conv.kernel[...])
                conv.kernel[...] = kernel.at[centre, centre].set(jnp.eye(width, dtype=kernel.dtype))
            layers += block
        final = nn.Conv2d(width, width, 1, rngs=rngs)
        if identity_init:
            final.kernel[...] = jnp.eye(width, dtype=final.kernel[...].dtype)[None, None]
        layers.append(final)
        self.context = nn.Sequential(*layers)
        if dense_output:
            self.head = nn.Sequential(
                nn.ReLU(), nn.Conv2d(width, num_classes, 1, scheme=head_scheme, rngs=rngs)
            )
        else:
            self.head = nn.Sequential(
                nn.ReLU(),
                nn.GlobalAvgPool(),
                nn.Dense(width, num_classes, scheme=head_scheme, rngs=rngs),
            )

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` (or ``(N, H, W, num_classes)``)."""
        return self.head(self.context(self.stem(x)))
