"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), the classic form.

``C1 conv5x5x6 - S2 pool2 - C3 conv5x5x16 - S4 pool2 - C5 conv5x5x120 - F6 fc84 - output``
on a 32x32 input. Classic choices: tanh activations, average pooling without trainable
coefficients, full C1->C3 connectivity (the paper's sparse table is not reproduced) and a
plain dense output layer instead of the RBF units: 61,706 parameters for 10 classes.
"""

from __future__ import annotations

from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["LeNet5"]


class LeNet5(nnx.Module):
    """LeNet-5 classifier.

    Args:
      input_shape: ``(H, W, C)``; ``(32, 32, 1)`` in the paper. For 28x28 MNIST-style
        images pass ``first_padding=2`` (the paper padded 28x28 digits to 32x32).
      num_classes: outputs of the last layer.
      rngs: :class:`flax.nnx.Rngs`.
      widths: channels of C1, C3, C5 (``(6, 16, 120)``).
      fc_width: width of F6 (84).
      activation: ``"tanh"`` (classic) or e.g. ``"relu"``.
      pool: ``"avg"`` (classic subsampling) or ``"max"``.
      first_padding: padding of C1 (0 in the paper on 32x32 inputs).
      scheme: initialiser (LeCun normal suits tanh: variance ``1 / fan_in``).
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)``.
    """

    def __init__(
        self,
        input_shape=(32, 32, 1),
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
        widths=(6, 16, 120),
        fc_width: int = 84,
        activation: str = "tanh",
        pool: str = "avg",
        first_padding: int = 0,
        scheme: str = "lecun_normal",
        head_scheme: str = "zeros",
    ):
        owner = "LeNet5"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        if pool not in ("avg", "max"):
            raise ValueError(f"{owner}: pool={pool!r} must be 'avg' (classic) or 'max'.")
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.widths = _util.positive_ints(widths, "widths", owner, 3)
        self.fc_width = _util.positive_int(fc_width, "fc_width", owner)
        if (
            isinstance(first_padding, bool)
            or not isinstance(first_padding, int)
            or first_padding < 0
        ):
            raise ValueError(
                f"{owner}: first_padding={first_padding!r} must be an int >= 0 (2 turns a 28x28 "
                f"image into the paper's 32x32)."
            )
        self.activation = activation
        self.pool = pool
        c1, c3, c5 = self.widths
        pool_cls = nn.AvgPool if pool == "avg" else nn.MaxPool

        def conv(cin, cout, padding=0):
            return nn.Conv2d(cin, cout, 5, padding=padding, scheme=scheme, rngs=rngs)

        self.features = nn.Sequential(
            conv(c, c1, first_padding),  # C1: 32x32 -> 28x28x6
            nn.activation(activation),
            pool_cls((2, 2)),  # S2: -> 14x14x6
            conv(c1, c3),  # C3: -> 10x10x16
            nn.activation(activation),
            pool_cls((2, 2)),  # S4: -> 5x5x16
            conv(c3, c5),  # C5: -> 1x1x120
            nn.activation(activation),
        )
        feat = _util.check_fits(
            self.features,
            self.input_shape,
            owner,
            f"first_padding={first_padding} (28x28 images need first_padding=2)",
        )
        d = feat[0] * feat[1] * feat[2]
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dense(d, fc_width, scheme=scheme, rngs=rngs),  # F6
            nn.activation(activation),
            nn.Dense(fc_width, num_classes, scheme=head_scheme, rngs=rngs),  # output
        )

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.classifier(self.features(x))
