"""All-CNN-C (Springenberg, Dosovitskiy, Brox & Riedmiller 2014, "Striving for Simplicity").

Max pooling replaced by 3x3 convolutions of stride 2, the FC layers by 1x1 convolutions and
global average pooling. On 32x32x3 (CIFAR-10):

  dropout 0.2 on the input
  3x3 conv 96 - 3x3 conv 96 - 3x3 conv 96 stride 2   (32 -> 16), dropout 0.5
  3x3 conv 192 - 3x3 conv 192 - 3x3 conv 192 stride 2 (16 -> 8), dropout 0.5
  3x3 conv 192 (valid, 8 -> 6) - 1x1 conv 192 - 1x1 conv classes - global average pool

every conv followed by ReLU except the last. 1,369,738 parameters for 10 classes.
"""

from __future__ import annotations

from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["AllCNNC"]


class AllCNNC(nnx.Module):
    """All-CNN-C classifier.

    Args:
      input_shape: ``(H, W, C)``, ``(32, 32, 3)`` in the paper.
      num_classes: 10 for CIFAR-10.
      rngs: :class:`flax.nnx.Rngs`.
      widths: the two stage widths (``(96, 192)``).
      input_dropout, dropout: 0.2 on the input and 0.5 after each downsampling conv.
      downsample: ``"conv"`` (the paper's stride-2 conv) or ``"max"`` (the "ConvPool-CNN-C"
        baseline: 3x3/2 max pooling after a stride-1 conv), the paper's key ablation.
      batch_norm: a BatchNorm after each conv but the last (not in the paper).
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)``.
    """

    def __init__(
        self,
        input_shape=(32, 32, 3),
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
        widths=(96, 192),
        input_dropout: float = 0.2,
        dropout: float = 0.5,
        downsample: str = "conv",
        batch_norm: bool = False,
        head_scheme: str = "zeros",
    ):
        owner = "AllCNNC"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        if downsample not in ("conv", "max"):
            raise ValueError(
                f"{owner}: downsample={downsample!r} must be 'conv' (All-CNN-C) or 'max' "
                f"(ConvPool-CNN-C)."
            )
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.widths = _util.positive_ints(widths, "widths", owner, 2)
        input_dropout = _util.rate(input_dropout, "input_dropout", owner)
        dropout = _util.rate(dropout, "dropout", owner)
        self.downsample = downsample
        self.batch_norm = batch_norm
        w1, w2 = self.widths

        def conv(cin, cout, k, stride=1, padding=1):
            layers = [
                nn.Conv2d(
                    cin,
                    cout,
                    k,
                    stride=stride,
                    padding=padding,
                    use_bias=not batch_norm,
                    rngs=rngs,
                )
            ]
            if batch_norm:
                layers.append(nn.BatchNorm(cout))
            return [*layers, nn.ReLU()]

        def down(width):
            if downsample == "conv":
                return conv(width, width, 3, stride=2)
            return [*conv(width, width, 3), nn.MaxPool((3, 3), stride=2, padding=1)]

        self.features = nn.Sequential(
            nn.Dropout(input_dropout, rngs=rngs),
            *conv(c, w1, 3),
            *conv(w1, w1, 3),
            *down(w1),  # 32 -> 16
            nn.Dropout(dropout, rngs=rngs),
            *conv(w1, w2, 3),
            *conv(w2, w2, 3),
            *down(w2),  # 16 -> 8
            nn.Dropout(dropout, rngs=rngs),
            *conv(w2, w2, 3, padding=0),  # 8 -> 6
            *conv(w2, w2, 1, padding=0),
            nn.Conv2d(w2, num_classes, 1, scheme=head_scheme, rngs=rngs),
            nn.GlobalAvgPool(),
        )
        _util.check_fits(self.features, self.input_shape, owner, "its two stride-2 stages")

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.features(x)
