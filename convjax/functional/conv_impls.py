"""Matrix-multiply implementations of one convolution, and what every implementation shares.

Every implementation computes the same cross-correlation

    y[n, o, c_out] = sum_{tap, c} x_pad[n, o * S + tap * D, c] * k[tap, c, c_out]

(with ``c`` running over the input channels of ``c_out``'s group) from the same
:class:`ConvSpec`, so they are tested against each other number for number. ``conv``
has already resolved padding names, applied non-zero padding modes, flipped the kernel
for ``flip=True`` and promoted ``x`` and ``kernel`` to one dtype; an implementation only
sees zero padding, strides, dilation, groups and the layout. The table of names
(``conv(..., impl=NAME)``) is :data:`convjax.functional.conv_table.CONV_IMPLS`, a fixed
mapping.

Implementations here:
  * ``"im2col"``: every receptive field is a row of a patch matrix built from strided
    slices (one per kernel tap) and one reshape, then a single matrix multiply with the
    reshaped kernel (a batched one, over groups, when ``groups > 1``). Slices and
    reshape instead of ``lax.conv_general_dilated_patches`` because that op ran a small
    CNN about 20x slower than ``conv_general_dilated`` on a 2-core x86 CPU (jax 0.10.2), while
    plain ``dot_general`` is XLA's fastest kernel. Memory: ``taps`` times the input.
    Supports everything. Measured to win: forward and forward+backward of the 1- and
    3-channel first layers on an H100 (``benchmarks/results/gpu.md``).
  * ``"direct"``: the sum over kernel taps of (strided slice of the input) @ (kernel
    tap), i.e. ``taps`` matrix multiplies of the input size and no patch matrix.
    Supports everything. Its derivative with respect to the kernel is ``taps`` matrix
    multiplies ``x_tap^T @ dy``: the kernel gradient of ``impl="matmul_grad"``
    (:mod:`convjax.functional.conv_grad`).

``"lax"`` and ``"matmul_grad"`` live in :mod:`convjax.functional.conv_grad`, Winograd in
:mod:`convjax.functional.conv_winograd`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "ConvSpec",
    "ConvImpl",
    "IM2COL_IMPL",
    "DIRECT_IMPL",
    "conv_dimension_numbers",
    "lax_forward",
    "no_check",
    "swap_io",
    "zero_stuff",
]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything an implementation needs besides ``x`` and ``kernel``.

    Attributes:
      stride: one int >= 1 per spatial dimension.
      padding: one ``(lo, hi)`` pair of zero padding per spatial dimension.
      dilation: one int >= 1 per spatial dimension (kernel dilation).
      groups: feature groups; ``x`` has ``groups * kernel.shape[-2]`` channels.
      channels_last: layout of ``x`` and of the result: ``(N, *spatial, C)`` if True,
        else ``(N, C, *spatial)``. The kernel is always HWIO ``(*spatial, C/groups, O)``.
      precision: passed to the matrix multiplies (``lax.Precision`` or None).
      preferred_element_type: accumulation/result dtype, or None for the input dtype.
    """

    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]
    dilation: tuple[int, ...]
    groups: int = 1
    channels_last: bool = True
    precision: Any = None
    preferred_element_type: Any = None

    @property
    def num_spatial(self) -> int:
        return len(self.stride)

    def output_spatial(self, in_spatial, kernel_spatial) -> tuple[int, ...]:
        """``(W + P_lo + P_hi - F_eff) // S + 1`` per dimension (sizes already validated)."""
        return tuple(
            (w + lo + hi - (d * (f - 1) + 1)) // s + 1
            for w, f, s, (lo, hi), d in zip(
                in_spatial, kernel_spatial, self.stride, self.padding, self.dilation
            )
        )


@dataclasses.dataclass(frozen=True)
class ConvImpl:
    """One entry of the dispatch table.

    Attributes:
      name: the ``impl=`` string.
      apply: ``apply(x, kernel, spec) -> y`` with batched ``x`` in ``spec``'s layout,
        HWIO ``kernel`` of the same dtype, and ``y`` batched in the same layout (no bias).
      check: ``check(x, kernel, spec)`` raises ``ValueError`` (naming the option, its
        value and what to use instead) for anything ``apply`` does not support; it sees
        only static information (shapes, dtypes, spec).
      description: one line for error messages and documentation.
    """

    name: str
    apply: Callable[..., Any]
    check: Callable[..., None]
    description: str = ""


def no_check(x, kernel, spec) -> None:
    """``check`` of an implementation that supports every option."""
    del x, kernel, spec


# --------------------------------------------------------------------------- layout helpers


def conv_dimension_numbers(num_spatial: int, channels_last: bool) -> lax.ConvDimensionNumbers:
    """``lax`` dimension numbers for batched ``x`` in either layout and an HWIO kernel."""
    n = num_spatial
    spatial = tuple(range(1, n + 1)) if channels_last else tuple(range(2, n + 2))
    feature = n + 1 if channels_last else 1
    lhs = (0, feature) + spatial
    rhs = (n + 1, n) + tuple(range(n))  # (out, in, spatial...) positions in HWIO
    return lax.ConvDimensionNumbers(lhs_spec=lhs, rhs_spec=rhs, out_spec=lhs)


def _to_channels_last(x, channels_last: bool):
    return x if channels_last else jnp.moveaxis(x, 1, -1)


def _from_channels_last(y, channels_last: bool):
    return y if channels_last else jnp.moveaxis(y, -1, 1)


def _zero_pad(x, padding):
    """Zero-pad the spatial axes of a batched channels-last array."""
    if not any(lo or hi for lo, hi in padding):
        return x
    config = [(0, 0, 0)] + [(lo, hi, 0) for lo, hi in padding] + [(0, 0, 0)]
    return lax.pad(x, jnp.zeros((), x.dtype), config)


def _tap_slices(xp, kernel_spatial, out_spatial, stride, dilation):
    """For each kernel tap (row-major, as HWIO reshapes), the input it meets at every output.

    ``xp`` is batched, channels-last and already zero-padded. The slice for tap ``t``
    starts at ``t * D`` and takes every ``S``-th position, ``out`` of them, so slice
    element ``o`` is ``xp[o * S + t * D]``.
    """
    batch, channels = xp.shape[0], xp.shape[-1]
    for tap in np.ndindex(*kernel_spatial):
        start = [0] + [t * d for t, d in zip(tap, dilation)] + [0]
        limit = (
            [batch]
            + [b + (o - 1) * s + 1 for b, o, s in zip(start[1:-1], out_spatial, stride)]
            + [channels]
        )
        yield lax.slice(xp, start, limit, (1, *stride, 1))


def swap_io(kernel, groups: int):
    """``(*F, A / G, B)`` -> ``(*F, B / G, A)``: the kernel of the transposed channel map.

    Output ``g * B/G + o`` of group ``g`` reads input ``i`` of that group through
    ``kernel[..., i, g * B/G + o]``; the swapped kernel holds the same number at
    ``[..., o, g * A/G + i]``.
    """
    i, o = kernel.shape[-2:]
    spatial = kernel.shape[:-2]
    k = kernel.reshape(*spatial, i, groups, o // groups)
    k = jnp.swapaxes(k, -1, -3)  # (*F, O/G, G, I)
    return k.reshape(*spatial, o // groups, groups * i)


def zero_stuff(x, pads, stride, channels_last: bool):
    """Put ``S - 1`` zeros between samples and pad ``(lo, hi)`` (negative = crop), per axis.

    ``x`` is batched; this is the input of a transposed convolution written as a stride-1
    convolution.
    """
    n = len(stride)
    axes = range(1, n + 1) if channels_last else range(2, n + 2)
    config = [(0, 0, 0)] * x.ndim
    for a, (lo, hi), s in zip(axes, pads, stride):
        config[a] = (lo, hi, s - 1)
    return lax.pad(x, jnp.zeros((), x.dtype), config)


# --------------------------------------------------------------------------- "lax" forward


def lax_forward(x, kernel, spec: ConvSpec):
    """``lax.conv_general_dilated`` for ``spec`` (batched ``x``, HWIO ``kernel``), JAX's own
    derivatives. ``convjax.functional.conv_grad`` wraps it with the derivative rules."""
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=spec.stride,
        padding=spec.padding,
        rhs_dilation=spec.dilation,
        dimension_numbers=conv_dimension_numbers(spec.num_spatial, spec.channels_last),
        feature_group_count=spec.groups,
        precision=spec.precision,
        preferred_element_type=spec.preferred_element_type,
    )


# --------------------------------------------------------------------------- "im2col"


def im2col_apply(x, kernel, spec: ConvSpec):
    n = spec.num_spatial
    x = _to_channels_last(x, spec.channels_last)
    kernel_spatial = kernel.shape[:n]
    out_spatial = spec.output_spatial(x.shape[1 : n + 1], kernel_spatial)
    xp = _zero_pad(x, spec.padding)
    taps = math.prod(kernel_spatial)
    c_in, c_out, g = x.shape[-1], kernel.shape[-1], spec.groups
    rows = x.shape[0] * math.prod(out_spatial)
    # (N, *out, taps, C): row-major taps then channels, the order HWIO flattens in.
    patches = jnp.stack(
        list(_tap_slices(xp, kernel_spatial, out_spatial, spec.stride, spec.dilation)), axis=-2
    )
    if g == 1:
        y = lax.dot_general(
            patches.reshape(rows, taps * c_in),
            kernel.reshape(taps * c_in, c_out),
            (((1,), (0,)), ((), ())),
            precision=spec.precision,
            preferred_element_type=spec.preferred_element_type,
        )
    else:
        cg, og = c_in // g, c_out // g
        y = lax.dot_general(
            patches.reshape(rows, taps, g, cg),
            kernel.reshape(taps, cg, g, og),
            (((1, 3), (0, 1)), ((2,), (2,))),  # contract taps and channels; batch over groups
            precision=spec.precision,
            preferred_element_type=spec.preferred_element_type,
        )  # (G, rows, O/G)
        y = jnp.transpose(y, (1, 0, 2))
    y = y.reshape((x.shape[0], *out_spatial, c_out))
    return _from_channels_last(y, spec.channels_last)


# --------------------------------------------------------------------------- "direct"


def direct_apply(x, kernel, spec: ConvSpec):
    n = spec.num_spatial
    x = _to_channels_last(x, spec.channels_last)
    kernel_spatial = kernel.shape[:n]
    out_spatial = spec.output_spatial(x.shape[1 : n + 1], kernel_spatial)
    xp = _zero_pad(x, spec.padding)
    c_in, c_out, g = x.shape[-1], kernel.shape[-1], spec.groups
    cg, og = c_in // g, c_out // g
    out_shape = (x.shape[0], *out_spatial, c_out)
    y = None
    slices = _tap_slices(xp, kernel_spatial, out_spatial, spec.stride, spec.dilation)
    for tap, xs in zip(np.ndindex(*kernel_spatial), slices):
        w = kernel[tap]  # (C/G, O)
        if g == 1:
            term = lax.dot_general(
                xs,
                w,
                (((n + 1,), (0,)), ((), ())),
                precision=spec.precision,
                preferred_element_type=spec.preferred_element_type,
            )
        else:
            term = lax.dot_general(
                xs.reshape(*xs.shape[:-1], g, cg),
                w.reshape(cg, g, og),
                (((n + 2,), (0,)), ((n + 1,), (1,))),  # contract C/G; batch over groups
                precision=spec.precision,
                preferred_element_type=spec.preferred_element_type,
            )  # (G, N, *out, O/G)
            term = jnp.moveaxis(term, 0, -2).reshape(out_shape)
        y = term if y is None else y + term
    return _from_channels_last(y, spec.channels_last)


IM2COL_IMPL = ConvImpl(
    "im2col", im2col_apply, no_check, "patch matrix from strided slices, one matmul"
)
DIRECT_IMPL = ConvImpl("direct", direct_apply, no_check, "sum over kernel taps of shifted matmuls")
