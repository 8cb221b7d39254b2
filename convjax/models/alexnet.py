"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), one-tower form.

On a 227x227x3 input (the size that makes the arithmetic work; the paper says 224):
conv11x11/4 96 -> 55x55x96, maxpool 3/2 -> 27, conv5x5 256 pad 2, maxpool -> 13,
conv3x3 384, conv3x3 384, conv3x3 256 (pad 1), maxpool -> 6x6x256, fc4096, fc4096, fc.

``groups=2`` reproduces the paper's two-GPU split (conv2, conv4 and conv5 see only the
half of the channels on their own GPU): 60,965,224 parameters for 1000 classes, the
paper's "60 million"; ``groups=1`` (default, as in most re-implementations) gives
62,378,344. Local response normalisation is omitted (later work found it does not help).
"""

from __future__ import annotations

from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["AlexNet"]


class AlexNet(nnx.Module):
    """AlexNet classifier.

    Args:
      input_shape: ``(H, W, C)``, ``(227, 227, 3)`` in the paper.
      num_classes: 1000 for ImageNet.
      rngs: :class:`flax.nnx.Rngs`.
      widths: channels of the five convs (``(96, 256, 384, 384, 256)``).
      fc_width: width of the two hidden FC layers (4096).
      groups: 1, or 2 for the paper's two-GPU connectivity of conv2, conv4, conv5.
      dropout: rate before each hidden FC layer's output use (0.5 in the paper).
      pool_window, pool_stride: the overlapping 3/2 max pooling of the paper (set 2/2 for
        the non-overlapping ablation the paper compares against).
      batch_norm: a BatchNorm after each conv (not in the paper).
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)``.
    """

    def __init__(
        self,
        input_shape=(227, 227, 3),
        num_classes: int = 1000,
        *,
        rngs: nnx.Rngs,
        widths=(96, 256, 384, 384, 256),
        fc_width: int = 4096,
        groups: int = 1,
        dropout: float = 0.5,
        pool_window: int = 3,
        pool_stride: int = 2,
        batch_norm: bool = False,
        head_scheme: str = "zeros",
    ):
        owner = "AlexNet"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.widths = _util.positive_ints(widths, "widths", owner, 5)
        self.fc_width = _util.positive_int(fc_width, "fc_width", owner)
        self.groups = _util.positive_int(groups, "groups", owner)
        self.dropout = _util.rate(dropout, "dropout", owner)
        _util.positive_int(pool_window, "pool_window", owner)
        _util.positive_int(pool_stride, "pool_stride", owner)
        self.batch_norm = batch_norm
        w1, w2, w3, w4, w5 = self.widths
        window = (pool_window, pool_window)

        def block(cin, cout, k, stride=1, padding=0, g=1):
            layers = [
                nn.Conv2d(
                    cin,
                    cout,
                    k,
                    stride=stride,
                    padding=padding,
                    groups=g,
                    rngs=rngs,
                    use_bias=not batch_norm,
                )
            ]
            if batch_norm:
                layers.append(nn.BatchNorm(cout))
            return [*layers, nn.ReLU()]

        self.features = nn.Sequential(
            *block(c, w1, 11, stride=4),  # 227 -> 55
            nn.MaxPool(window, stride=pool_stride),  # -> 27
            *block(w1, w2, 5, padding=2, g=groups),  # 27
            nn.MaxPool(window, stride=pool_stride),  # -> 13
            *block(w2, w3, 3, padding=1),  # conv3 sees both GPUs' maps in the paper
            *block(w3, w4, 3, padding=1, g=groups),
            *block(w4, w5, 3, padding=1, g=groups),
            nn.MaxPool(window, stride=pool_stride),  # -> 6
        )
        feat = _util.check_fits(self.features, self.input_shape, owner)
        d = feat[0] * feat[1] * feat[2]
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout, rngs=rngs),
            nn.Dense(d, fc_width, rngs=rngs),
            nn.ReLU(),
            nn.Dropout(dropout, rngs=rngs),
            nn.Dense(fc_width, fc_width, rngs=rngs),
            nn.ReLU(),
            nn.Dense(fc_width, num_classes, scheme=head_scheme, rngs=rngs),
        )

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.classifier(self.features(x))
