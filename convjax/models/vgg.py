"""VGG (Simonyan & Zisserman 2014): stacks of 3x3 convs with 2x2 max pooling.

Five stages of widths ``base_width * (1, 2, 4, 8, 8)`` (64, 128, 256, 512, 512), each ending
with a 2x2/2 max pool, then FC-4096, FC-4096, FC-classes. ``stage_sizes`` is the number of
convs per stage: configuration A (VGG-11) ``(1, 1, 2, 2, 2)``, D (VGG-16) ``(2, 2, 3, 3, 3)``.
On 224x224x3 with 1000 classes: VGG-11 has 132,863,336 parameters and VGG-16 138,357,544.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["VGG", "VGG11", "VGG16"]


class VGG(nnx.Module):
    """VGG classifier.

    Args:
      input_shape: ``(H, W, C)``; ``(224, 224, 3)`` in the paper (any multiple of 32 works).
      num_classes: 1000 for ImageNet.
      rngs: :class:`flax.nnx.Rngs`.
      stage_sizes: convs in each of the stages (see module docstring).
      base_width: width of the first stage (64); later stages double up to 8x.
      fc_width: width of the two hidden FC layers (4096).
      dropout: rate after each hidden FC-RELU (0.5).
      batch_norm: VGG-BN: a BatchNorm after each conv (convs then have no bias).
      kernel_size: of every conv (3; padding keeps the size).
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)``.
    """

    def __init__(
        self,
        input_shape=(224, 224, 3),
        num_classes: int = 1000,
        *,
        rngs: nnx.Rngs,
        stage_sizes: Sequence[int],
        base_width: int = 64,
        fc_width: int = 4096,
        dropout: float = 0.5,
        batch_norm: bool = False,
        kernel_size: int = 3,
        head_scheme: str = "zeros",
    ):
        owner = "VGG"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.stage_sizes = _util.positive_ints(stage_sizes, "stage_sizes", owner)
        self.base_width = _util.positive_int(base_width, "base_width", owner)
        self.fc_width = _util.positive_int(fc_width, "fc_width", owner)
        _util.positive_int(kernel_size, "kernel_size", owner)
        self.dropout = _util.rate(dropout, "dropout", owner)
        self.batch_norm = batch_norm
        multipliers = (1, 2, 4, 8, 8, 8, 8)
        if not 1 <= len(self.stage_sizes) <= len(multipliers):
            raise ValueError(
                f"{owner}: stage_sizes={self.stage_sizes!r} must have 1 to {len(multipliers)} "
                f"entries (5 in the paper)."
            )
        layers = []
        cin = c
        for n, mult in zip(self.stage_sizes, multipliers):
            width = base_width * mult
            for _ in range(n):
                layers.append(
                    nn.Conv2d(
                        cin,
                        width,
                        kernel_size,
                        padding="SAME",
                        use_bias=not batch_norm,
                        rngs=rngs,
                    )
                )
                if batch_norm:
                    layers.append(nn.BatchNorm(width))
                layers.append(nn.ReLU())
                cin = width
            layers.append(nn.MaxPool((2, 2)))
        self.features = nn.Sequential(*layers)
        feat = _util.check_fits(
            self.features, self.input_shape, owner, f"its {len(self.stage_sizes)} 2x2 pools"
        )
        d = feat[0] * feat[1] * feat[2]
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dense(d, fc_width, rngs=rngs),
            nn.ReLU(),
            nn.Dropout(dropout, rngs=rngs),
            nn.Dense(fc_width, fc_width, rngs=rngs),
            nn.ReLU(),
            nn.Dropout(dropout, rngs=rngs),
            nn.Dense(fc_width, num_classes, scheme=head_scheme, rngs=rngs),
        )

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.classifier(self.features(x))


#: VGG-11 (configuration A): 8 convs + 3 FC.
VGG11 = functools.partial(VGG, stage_sizes=(1, 1, 2, 2, 2))
#: VGG-16 (configuration D): 13 convs + 3 FC.
VGG16 = functools.partial(VGG, stage_sizes=(2, 2, 3, 3, 3))
