"""PatternCNN: the textbook ConvNet pattern ``[(CONV-RELU)*N-POOL?]*M-(FC-RELU)*K-FC``.

The CS231n notes describe most classic ConvNets as this one pattern. Every part of it is a knob
so ablations are one argument away: N, M, K, the widths, kernel size, dilation, padding,
the pooling kind (max, average, L2 or none) and, with no pooling, downsampling by a stride-2
convolution (the all-convolutional way of Springenberg et al. 2014), batch norm and dropout.

The defaults are a good Fashion-MNIST network (28x28x1, 10 classes):
``conv32-conv32-pool-conv64-conv64-pool-fc256-fc10`` (3x3 SAME convs, 2x2/2 max pools), batch
norm after every conv and hidden FC layer, dropout 0.3 after the hidden FC-RELU: 871,082
parameters. The configuration trained by default is ``configs/default.py``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = ["PatternCNN", "POOL_KINDS"]

#: Pooling kinds of PatternCNN; "none" downsamples with a stride-2 convolution instead.
POOL_KINDS = ("max", "avg", "l2", "none")


class PatternCNN(nnx.Module):
    """``[(CONV-RELU)*N-POOL?]*M-(FC-RELU)*K-FC`` classifier.

    Args:
      input_shape: ``(H, W, C)`` of one image.
      num_classes: size of the last FC layer (logits).
      rngs: :class:`flax.nnx.Rngs` (``params`` for weights, ``dropout`` for masks).
      widths: filters of each of the M stages, e.g. ``(32, 64)``; M = ``len(widths)``.
      convs_per_stage: N, one int for every stage or one int per stage.
      fc_widths: widths of the K hidden FC layers (K = ``len(fc_widths)``; ``()`` for none).
      kernel_size, dilation, padding, padding_mode: of every conv (``padding="SAME"`` keeps
        the spatial size, as the CS231n notes recommend: "P = (F - 1) / 2").
      pool: ``"max"``, ``"avg"``, ``"l2"`` (Lp pooling with p=2) or ``"none"``.
      pool_window, pool_stride: the pooling window F and stride S (S defaults to F); for
        ``pool="none"`` the stride of the downsampling convolution.
      pool_after: which stages end with a pool (or downsampling); default every stage.
      downsample: with ``pool="none"``: ``"conv"`` adds a ``kernel_size`` conv of stride
        ``pool_stride`` in place of the pool (All-CNN's "ConvPool" form); ``"stride"`` gives
        the stage's last conv that stride instead (All-CNN's "Strided" form).
      batch_norm: a BatchNorm between each conv and its ReLU (convs then have no bias), and
        between each hidden FC layer and its ReLU.
      dropout: drop rate after each hidden FC-RELU.
      conv_dropout: drop rate after each stage's pool (0 disables).
      activation: name of the nonlinearity (``"relu"``, ``"elu"``, ``"tanh"``, ...).
      scheme: initialiser of every conv and dense kernel (He normal for ReLU nets).
      impl: convolution implementation passed to every conv.
      head_scheme: initialiser of the last layer (one of ``convjax.functional.INIT_SCHEMES``);
        ``"zeros"`` (default) makes the untrained model predict uniform probabilities, a
        cross-entropy of ``ln(num_classes)``; a random head (``"he_normal"``) starts higher.

    Call: ``(N, H, W, C) -> (N, num_classes)`` logits.
    """

    def __init__(
        self,
        input_shape=(28, 28, 1),
        num_classes: int = 10,
        *,
        rngs: nnx.Rngs,
        widths: Sequence[int] = (32, 64),
        convs_per_stage: int | Sequence[int] = 2,
        fc_widths: Sequence[int] = (256,),
        kernel_size: int = 3,
        dilation: int = 1,
        padding="SAME",
        padding_mode: str = "zeros",
        pool: str = "max",
        pool_window: int = 2,
        pool_stride: int | None = None,
        pool_after: Sequence[bool] | None = None,
        downsample: str = "conv",
        batch_norm: bool = True,
        dropout: float = 0.3,
        conv_dropout: float = 0.0,
        activation: str = "relu",
        scheme: str = "he_normal",
        impl: str = "lax",
        head_scheme: str = "zeros",
    ):
        owner = "PatternCNN"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        if pool not in POOL_KINDS:
            raise ValueError(
                f"{owner}: pool={pool!r} is not a pooling kind; use one of "
                f"{', '.join(map(repr, POOL_KINDS))} ('none' downsamples with a stride-2 conv)."
            )
        if downsample not in ("conv", "stride"):
            raise ValueError(
                f"{owner}: downsample={downsample!r} must be 'conv' (an extra strided conv) or "
                f"'stride' (the stage's last conv is strided)."
            )
        widths = _util.positive_ints(widths, "widths", owner)
        if not widths:
            raise ValueError(f"{owner}: widths=() gives no conv stage; give at least one width.")
        fc_widths = _util.positive_ints(fc_widths, "fc_widths", owner)
        for name, value in (
            ("kernel_size", kernel_size),
            ("dilation", dilation),
            ("pool_window", pool_window),
        ):
            _util.positive_int(value, name, owner)
        if pool_stride is not None:
            _util.positive_int(pool_stride, "pool_stride", owner)
        dropout = _util.rate(dropout, "dropout", owner)
        conv_dropout = _util.rate(conv_dropout, "conv_dropout", owner)
        if not isinstance(batch_norm, bool):
            raise ValueError(f"{owner}: batch_norm={batch_norm!r} must be True or False.")
        m = len(widths)
        if isinstance(convs_per_stage, int):
            convs = (convs_per_stage,) * m
        else:
            convs = tuple(convs_per_stage)
        if len(convs) != m or any(
            isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in convs
        ):
            raise ValueError(
                f"{owner}: convs_per_stage={convs_per_stage!r} must be an int >= 1 or {m} such "
                f"ints (one per stage of widths={widths})."
            )
        if pool_after is None:
            pool_after = (True,) * m
        pool_after = tuple(bool(p) for p in pool_after)
        if len(pool_after) != m:
            raise ValueError(
                f"{owner}: pool_after={pool_after!r} has {len(pool_after)} entries but there are "
                f"{m} stages; give one bool per stage."
            )
        stride = pool_window if pool_stride is None else pool_stride
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.widths = widths
        self.convs_per_stage = convs
        self.fc_widths = tuple(fc_widths)
        self.kernel_size = kernel_size
        self.dilation = dilation
        self.padding = padding
        self.padding_mode = padding_mode
        self.pool = pool
        self.pool_window = pool_window
        self.pool_stride = stride
        self.pool_after = pool_after
        self.downsample = downsample
        self.batch_norm = batch_norm
        self.dropout = dropout
        self.conv_dropout = conv_dropout
        self.activation = activation

        def conv(cin, cout, conv_stride=1):
            k = (kernel_size, kernel_size)
            layers = [
                nn.Conv(
                    cin,
                    cout,
                    k,
                    stride=conv_stride,
                    padding=padding,
                    dilation=dilation,
                    padding_mode=padding_mode,
                    impl=impl,
                    use_bias=not batch_norm,
                    scheme=scheme,
                    rngs=rngs,
                )
            ]
            if batch_norm:
                layers.append(nn.BatchNorm(cout))
            layers.append(nn.activation(activation))
            return layers

        layers = []
        cin = c
        for width, n, do_pool in zip(widths, convs, pool_after):
            for i in range(n):
                last = i == n - 1
                strided = do_pool and pool == "none" and downsample == "stride" and last
                layers += conv(cin, width, stride if strided else 1)
                cin = width
            if do_pool:
                window = (pool_window, pool_window)
                if pool == "max":
                    layers.append(nn.MaxPool(window, stride=stride))
                elif pool == "avg":
                    layers.append(nn.AvgPool(window, stride=stride))
                elif pool == "l2":
                    layers.append(nn.LpPool(2.0, window, stride=stride))
                elif downsample == "conv":
                    layers += conv(width, width, stride)
                if conv_dropout:
                    layers.append(nn.Dropout(conv_dropout, rngs=rngs))
        self.features = nn.Sequential(*layers)
        feat = _util.check_fits(self.features, self.input_shape, owner, "these convs and pools")

        head = [nn.Flatten()]
        d = feat[0] * feat[1] * feat[2]
        for width in self.fc_widths:
            head.append(nn.Dense(d, width, use_bias=not batch_norm, scheme=scheme, rngs=rngs))
            if batch_norm:
                head.append(nn.BatchNorm(width))
            head.append(nn.activation(activation))
            if dropout:
                head.append(nn.Dropout(dropout, rngs=rngs))
            d = width
        head.append(nn.Dense(d, num_classes, scheme=head_scheme, rngs=rngs))
        self.classifier = nn.Sequential(*head)

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.classifier(self.features(x))
