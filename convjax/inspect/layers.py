"""What one layer call costs: its kind, parameters, FLOPs and receptive-field step.

A layer is recognised by the public attributes ``convjax.nn`` modules carry, named exactly
like the functional arguments (``kernel_size``, ``stride``, ``padding``, ``dilation``,
``groups``, ``channels_last``, ``window``, ``output_size``, ``in_features`` ...), and by its
class name for the pooling flavour. A module of another kind gets ``flops=None`` and breaks
the analytic receptive-field chain (the empirical method still covers it).

FLOP conventions (one FLOP = one add, multiply, compare or elementwise op; a multiply-add,
MAC, is 2 FLOPs; ``out`` = number of output elements, batch included; ``w`` = elements of
one window, padding taps included):

========================  ===================================================================
conv                      ``2 * out * prod(F) * C_in / groups`` (MACs: half of that); plus
                          ``out`` bias adds when the layer has a bias.
conv_transpose            ``2 * in * prod(F) * C_out / groups`` (each input element scatters
                          to ``prod(F) * C_out / groups`` outputs) plus ``out`` bias adds.
dense                     ``2 * rows * in_features * out_features`` plus ``out`` bias adds.
max/min pool              ``out * (w - 1)`` comparisons.
sum pool                  ``out * (w - 1)`` adds.
avg pool                  ``out * (w - 1)`` adds and ``out`` divides: ``out * w``.
Lp pool                   ``|x|^p`` per tap, ``w - 1`` adds, one root: ``out * (2 w)``.
global/adaptive avg       ``in`` (each input added once; ``in - out`` adds and ``out`` divides).
global/adaptive max       ``in - out`` comparisons.
batch norm                ``2 * out``: the scale-and-shift ``x * a + b`` it folds to at inference.
activation                ``out``: one op per element (transcendentals not expanded).
dropout, flatten          0 (identity at inference; a reshape).
========================  ===================================================================

These match what XLA's cost analysis counts for conv, dense, bias, ReLU and pooling (checked
in ``tests/test_inspect.py``); XLA counts more for batch norm (``(x - m) * r * g + b``
unfused) and in training mode, and counts ``exp``/``tanh`` as transcendentals.
"""

from __future__ import annotations

import math
from typing import Any

from flax import nnx

from convjax.functional.shapes import (
    effective_kernel_size,
    normalize_tuple,
    resolve_padding,
    spatial_axes,
)

__all__ = [
    "layer_kind",
    "own_param_count",
    "layer_flops",
    "layer_macs",
    "in_bounds_macs",
    "spatial_geometry",
    "KINDS",
]

#: Every kind :func:`layer_kind` returns.
KINDS = (
    "conv",
    "conv_transpose",
    "dense",
    "max_pool",
    "min_pool",
    "sum_pool",
    "avg_pool",
    "lp_pool",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "global_avg_pool",
    "global_max_pool",
    "batch_norm",
    "activation",
    "dropout",
    "flatten",
    "other",
)


def layer_kind(module) -> str:
    """Classify a layer module (one of :data:`KINDS`)."""
    cls = type(module).__name__.lower()
    has = lambda a: hasattr(module, a)  # noqa: E731
    if has("kernel_size") and has("output_padding"):
        return "conv_transpose"
    if has("kernel_size") and has("kernel"):
        return "conv"
    if has("in_features") and has("out_features") and has("kernel"):
        return "dense"
    if "global" in cls and "pool" in cls:
        return "global_max_pool" if "max" in cls else "global_avg_pool"
    if has("output_size") and "pool" in cls:
        return "adaptive_max_pool" if "max" in cls else "adaptive_avg_pool"
    if has("window"):
        for flavour in ("lp", "max", "min", "sum"):
            if cls.startswith(flavour):
                return f"{flavour}_pool"
        return "avg_pool"
    if "batchnorm" in cls:
        return "batch_norm"
    if type(module).__module__ == "convjax.nn.activation":
        return "activation"
    if "dropout" in cls:
        return "dropout"
    if "flatten" in cls:
        return "flatten"
    return "other"


def own_param_count(module) -> int:
    """Number of parameter values held by ``module`` itself (not by its sub-modules)."""
    total = 0
    for value in vars(module).values():
        if isinstance(value, nnx.Param):
            total += math.prod(value.shape)
    return total


def own_param_bytes(module) -> int:
    """Bytes of the parameters held by ``module`` itself."""
    total = 0
    for value in vars(module).values():
        if isinstance(value, nnx.Param):
            total += math.prod(value.shape) * value.dtype.itemsize
    return total


def _num_spatial(module, in_shape) -> int:
    for attr in ("kernel_size", "window", "output_size"):
        v = getattr(module, attr, None)
        if isinstance(v, (tuple, list)):
            return len(v)
    n = getattr(module, "num_spatial_dims", None)
    if isinstance(n, int):
        return n
    # A batched channels-last/first input: everything but batch and channel axes.
    return max(len(in_shape) - 2, 1)


def spatial_geometry(module, in_shape: tuple[int, ...]) -> dict[str, Any]:
    """Window geometry of a conv or pooling call on an input of ``in_shape`` (batch included).

    Returns a dict with ``n`` (spatial dims), ``axes`` (their positions in ``in_shape``),
    ``in_spatial``, ``kernel``, ``stride``, ``dilation`` and ``pads`` (``(lo, hi)`` per
    dimension, resolved by :func:`convjax.functional.resolve_padding`).
    """
    n = _num_spatial(module, in_shape)
    channels_last = getattr(module, "channels_last", True)
    axes = spatial_axes(len(in_shape), n, channels_last)
    in_spatial = tuple(in_shape[a] for a in axes)
    kernel = getattr(module, "kernel_size", None)
    if kernel is None:
        kernel = module.window
    kernel = normalize_tuple(kernel, n, "window")
    stride = getattr(module, "stride", None)
    stride = kernel if stride is None else normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(getattr(module, "dilation", 1), n, "dilation")
    padding = getattr(module, "padding", 0)
    pads = resolve_padding(padding, in_spatial, kernel, stride, dilation)
    return {
        "n": n,
        "axes": axes,
        "channels_last": channels_last,
        "in_spatial": in_spatial,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "pads": pads,
    }


def _has_bias(module) -> bool:
    return isinstance(getattr(module, "bias", None), nnx.Param)


def layer_macs(kind: str, module, in_shape, out_shape) -> int | None:
    """Multiply-adds of a conv, transposed conv or dense call; 0 for other known kinds."""
    out = math.prod(out_shape)
    if kind == "conv":
        groups = getattr(module, "groups", 1)
        return out * math.prod(module.kernel_size) * (module.in_features // groups)
    if kind == "conv_transpose":
        groups = getattr(module, "groups", 1)
        return math.prod(in_shape) * math.prod(module.kernel_size) * (module.out_features // groups)
    if kind == "dense":
        return out * module.in_features
    if kind == "other":
        return None
    return 0


def _in_bounds_taps(
    in_size: int, out_size: int, kernel: int, stride: int, pad_lo: int, dilation: int
):
    # (output position, tap) pairs whose input index lies inside [0, in_size).
    count = 0
    for o in range(out_size):
        for t in range(kernel):
            if 0 <= o * stride - pad_lo + t * dilation < in_size:
                count += 1
    return count


def in_bounds_macs(kind: str, module, in_shape, out_shape) -> int | None:
    """Multiply-adds whose input tap lies inside the input (padding taps skipped).

    Equal to :func:`layer_macs` except for padded convolutions. XLA's cost analysis counts
    a convolution this way, so this is the number to compare with :func:`xla_flops`;
    published figures (ResNet-18: 1.8 G) count every tap, padding included.
    """
    macs = layer_macs(kind, module, in_shape, out_shape)
    if kind != "conv":
        return macs
    g = spatial_geometry(module, in_shape)
    out_axes = spatial_axes(len(out_shape), g["n"], g["channels_last"])
    taps = 1
    for w, o, f, s, (lo, _), d in zip(
        g["in_spatial"],
        (out_shape[a] for a in out_axes),
        g["kernel"],
        g["stride"],
        g["pads"],
        g["dilation"],
    ):
        taps *= _in_bounds_taps(w, o, f, s, lo, d)
    rest = math.prod(out_shape) // math.prod(out_shape[a] for a in out_axes)
    groups = getattr(module, "groups", 1)
    return rest * taps * (module.in_features // groups)


def layer_flops(kind: str, module, in_shape, out_shape) -> int | None:
    """FLOPs of one call (conventions in the module docstring); None for unknown kinds."""
    out = math.prod(out_shape)
    size_in = math.prod(in_shape)
    if kind in ("conv", "conv_transpose", "dense"):
        flops = 2 * layer_macs(kind, module, in_shape, out_shape)
        return flops + (out if _has_bias(module) else 0)
    if kind in ("max_pool", "min_pool", "sum_pool", "avg_pool", "lp_pool"):
        geom = spatial_geometry(module, in_shape)
        w = math.prod(geom["kernel"])
        if kind == "avg_pool":
            return out * w
        if kind == "lp_pool":
            return out * 2 * w
        return out * (w - 1)
    if kind in ("global_avg_pool", "adaptive_avg_pool"):
        return size_in
    if kind in ("global_max_pool", "adaptive_max_pool"):
        return size_in - out
    if kind == "batch_norm":
        return 2 * out
    if kind == "activation":
        return out
    if kind in ("dropout", "flatten"):
        return 0
    return None


def effective_window(module, in_shape) -> tuple[int, ...]:
    """``F_eff`` per spatial dimension of a conv or pooling call."""
    g = spatial_geometry(module, in_shape)
    return tuple(effective_kernel_size(f, d) for f, d in zip(g["kernel"], g["dilation"]))
