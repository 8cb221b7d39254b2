"""Residual networks (He, Zhang, Ren & Sun 2016): ImageNet and CIFAR forms.

ImageNet form (:class:`ResNet`): 7x7/2 conv 64 + BN + ReLU, 3x3/2 max pool, four stages of
basic blocks (widths 64, 128, 256, 512; the first block of stages 2-4 has stride 2 and a
1x1 projection shortcut, the paper's option B), global average pool, FC. Padding follows
the reference implementations (explicit ``(F - 1) // 2``), which fixes the receptive field
and the parameter count: ResNet-18 has 11,689,512 parameters for 1000 classes, ResNet-34
21,797,672, ResNet-50 (bottleneck blocks) 25,557,032.

CIFAR form (:class:`CifarResNet`, Section 4.2 of the paper): 3x3 conv 16, three stages of n
basic blocks with widths 16, 32, 64, global average pool, FC: 6n + 2 layers. The shortcut
across a change of size is option A (stride-2 subsampling and zero channels, no
parameters), as in the paper: ResNet-20 (n=3) has 269,722 parameters and ResNet-56 (n=9)
853,018 for 10 classes ("0.27M" and "0.85M" in the paper's Table 6). With option B the two
1x1 projections add 2,752: 272,474 and 855,770, the counts many re-implementations print.

Ablation knobs: ``residual=False`` gives the paper's "plain" networks; ``shortcut`` picks
option A or B; ``zero_init_residual`` starts each block as the identity (Goyal et al. 2017).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

from convjax import nn
from convjax.models import _util

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "CifarResNet",
    "ResNet20",
    "ResNet56",
]


def _conv(cin, cout, k, stride, rngs):
    # No bias: every conv is followed by a BatchNorm whose beta plays that role.
    return nn.Conv2d(cin, cout, k, stride=stride, padding=(k - 1) // 2, use_bias=False, rngs=rngs)


class _Shortcut(nnx.Module):
    """The identity path of a block whose size changes: option A (subsample and zero-pad
    channels, no parameters) or option B (1x1 conv of the stride + BatchNorm)."""

    def __init__(self, cin, cout, stride, kind, rngs):
        self.kind = kind
        self.stride = stride
        self.pad_channels = cout - cin
        if kind == "B":
            self.conv = _conv(cin, cout, 1, stride, rngs)
            self.bn = nn.BatchNorm(cout)

    def __call__(self, x):
        if self.kind == "B":
            return self.bn(self.conv(x))
        # Option A: keep every stride-th pixel (what a 1x1 conv of that stride would see)
        # and append zero channels; the same on both sides of the block as in the paper.
        y = x[:, :: self.stride, :: self.stride, :]
        return jnp.pad(y, ((0, 0), (0, 0), (0, 0), (0, self.pad_channels)))


class BasicBlock(nnx.Module):
    """Two 3x3 convs with BN; ``relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))``."""

    expansion = 1

    def __init__(
        self,
        cin,
        width,
        *,
        stride=1,
        shortcut="B",
        residual=True,
        zero_init_residual=False,
        rngs,
    ):
        cout = width * self.expansion
        self.residual = residual
        self.conv1 = _conv(cin, width, 3, stride, rngs)
        self.bn1 = nn.BatchNorm(width)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(width, cout, 3, 1, rngs)
        self.bn2 = nn.BatchNorm(cout)
        self.relu2 = nn.ReLU()
        if zero_init_residual:
            self.bn2.scale[...] = jnp.zeros_like(self.bn2.scale[...])
        changes = stride != 1 or cin != cout
        self.shortcut = (
            _Shortcut(cin, cout, stride, shortcut, rngs) if residual and changes else None
        )

    def __call__(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        if self.residual:
            y = y + (x if self.shortcut is None else self.shortcut(x))
        return self.relu2(y)


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (carries the stride, as in torchvision's "v1.5"), 1x1 expand by 4."""

    expansion = 4

    def __init__(
        self,
        cin,
        width,
        *,
        stride=1,
        shortcut="B",
        residual=True,
        zero_init_residual=False,
        rngs,
    ):
        cout = width * self.expansion
        self.residual = residual
        self.conv1 = _conv(cin, width, 1, 1, rngs)
        self.bn1 = nn.BatchNorm(width)
        self.relu1 = nn.ReLU()
        self.conv2 = _conv(width, width, 3, stride, rngs)
        self.bn2 = nn.BatchNorm(width)
        self.relu2 = nn.ReLU()
        self.conv3 = _conv(width, cout, 1, 1, rngs)
        self.bn3 = nn.BatchNorm(cout)
        self.relu3 = nn.ReLU()
        if zero_init_residual:
            self.bn3.scale[...] = jnp.zeros_like(self.bn3.scale[...])
        changes = stride != 1 or cin != cout
        self.shortcut = (
            _Shortcut(cin, cout, stride, shortcut, rngs) if residual and changes else None
        )

    def __call__(self, x):
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        if self.residual:
            y = y + (x if self.shortcut is None else self.shortcut(x))
        return self.relu3(y)


_BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def _check_common(owner, block, shortcut, stage_sizes):
    if block not in _BLOCKS:
        raise ValueError(f"{owner}: block={block!r} must be 'basic' or 'bottleneck'.")
    if shortcut not in ("A", "B"):
        raise ValueError(
            f"{owner}: shortcut={shortcut!r} must be 'A' (zero-padded identity, no parameters) "
            f"or 'B' (1x1 projection)."
        )
    stage_sizes = tuple(stage_sizes)
    if not stage_sizes or any(
        isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in stage_sizes
    ):
        raise ValueError(
            f"{owner}: stage_sizes={stage_sizes!r} must be one or more ints >= 1 (blocks per "
            f"stage), e.g. (2, 2, 2, 2) for ResNet-18."
        )
    return stage_sizes


def _stages(cin, stage_sizes, base_width, block, first_stride, **kwargs):
    blocks = []
    block_cls = _BLOCKS[block]
    for i, n in enumerate(stage_sizes):
        width = base_width * 2**i
        for j in range(n):
            stride = (first_stride if i == 0 else 2) if j == 0 else 1
            blocks.append(block_cls(cin, width, stride=stride, **kwargs))
            cin = width * block_cls.expansion
    return nn.Sequential(*blocks), cin


class ResNet(nnx.Module):
    """ImageNet-form residual network.

    Args:
      input_shape: ``(H, W, C)``, ``(224, 224, 3)`` for ImageNet.
      num_classes: 1000 for ImageNet.
      rngs: :class:`flax.nnx.Rngs`.
      stage_sizes: blocks per stage: ``(2, 2, 2, 2)`` ResNet-18, ``(3, 4, 6, 3)`` ResNet-34/50.
      block: ``"basic"`` (two 3x3) or ``"bottleneck"`` (1x1-3x3-1x1, 4x expansion).
      base_width: width of the first stage (64); stage i has ``base_width * 2**i``.
      shortcut: ``"B"`` (projection, default) or ``"A"`` (parameter-free).
      residual: False removes every shortcut (the paper's plain network).
      zero_init_residual: start each block's last BN scale at 0.
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
        block: str = "basic",
        base_width: int = 64,
        shortcut: str = "B",
        residual: bool = True,
        zero_init_residual: bool = False,
        head_scheme: str = "zeros",
    ):
        owner = "ResNet"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        self.stage_sizes = _check_common(owner, block, shortcut, stage_sizes)
        base_width = _util.positive_int(base_width, "base_width", owner)
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.block = block
        self.base_width = base_width
        self.shortcut = shortcut
        self.residual = residual
        self.stem = nn.Sequential(
            nn.Conv2d(c, base_width, 7, stride=2, padding=3, use_bias=False, rngs=rngs),
            nn.BatchNorm(base_width),
            nn.ReLU(),
            nn.MaxPool((3, 3), stride=2, padding=1),
        )
        self.stages, cout = _stages(
            base_width,
            self.stage_sizes,
            base_width,
            block,
            1,
            shortcut=shortcut,
            residual=residual,
            zero_init_residual=zero_init_residual,
            rngs=rngs,
        )
        self.pool = nn.GlobalAvgPool()
        self.fc = nn.Dense(cout, num_classes, scheme=head_scheme, rngs=rngs)

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.fc(self.pool(self.stages(self.stem(x))))


#: ResNet-18: 11,689,512 parameters for 1000 classes.
ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2), block="basic")
#: ResNet-34: 21,797,672 parameters for 1000 classes.
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="basic")
#: ResNet-50: 25,557,032 parameters for 1000 classes.
ResNet50 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3), block="bottleneck")


class CifarResNet(nnx.Module):
    """CIFAR-form residual network of depth ``6n + 2`` (He et al. 2016, Section 4.2).

    Args:
      input_shape: ``(H, W, C)``, ``(32, 32, 3)`` for CIFAR.
      num_classes: 10 for CIFAR-10.
      rngs: :class:`flax.nnx.Rngs`.
      stage_sizes: blocks per stage, ``(n, n, n)``: n=3 ResNet-20, n=9 ResNet-56.
      base_width: 16; stage i has ``base_width * 2**i``.
      shortcut: ``"A"`` (paper's CIFAR choice) or ``"B"``.
      residual, zero_init_residual: as in :class:`ResNet`.
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
        stage_sizes: Sequence[int],
        base_width: int = 16,
        shortcut: str = "A",
        residual: bool = True,
        zero_init_residual: bool = False,
        head_scheme: str = "zeros",
    ):
        owner = "CifarResNet"
        h, w, c = _util.check_input_shape(input_shape, owner)
        num_classes = _util.check_classes(num_classes, owner)
        self.stage_sizes = _check_common(owner, "basic", shortcut, stage_sizes)
        base_width = _util.positive_int(base_width, "base_width", owner)
        self.input_shape = (h, w, c)
        self.num_classes = num_classes
        self.head_scheme = head_scheme
        self.base_width = base_width
        self.shortcut = shortcut
        self.residual = residual
        self.stem = nn.Sequential(
            _conv(c, base_width, 3, 1, rngs),
            nn.BatchNorm(base_width),
            nn.ReLU(),
        )
        self.stages, cout = _stages(
            base_width,
            self.stage_sizes,
            base_width,
            "basic",
            1,
            shortcut=shortcut,
            residual=residual,
            zero_init_residual=zero_init_residual,
            rngs=rngs,
        )
        self.pool = nn.GlobalAvgPool()
        self.fc = nn.Dense(cout, num_classes, scheme=head_scheme, rngs=rngs)

    def __call__(self, x):
        """``(N, H, W, C) -> (N, num_classes)`` logits."""
        return self.fc(self.pool(self.stages(self.stem(x))))


#: ResNet-20 (n=3): 269,722 parameters for 10 classes (option A).
ResNet20 = functools.partial(CifarResNet, stage_sizes=(3, 3, 3))
#: ResNet-56 (n=9): 853,018 parameters for 10 classes (option A).
ResNet56 = functools.partial(CifarResNet, stage_sizes=(9, 9, 9))
