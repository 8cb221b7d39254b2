"""Interchangeable implementations of one convolution, chosen by ``conv(..., impl=NAME)``.

Every implementation computes the same cross-correlation

    y[n, o, c_out] = sum_{tap, c} x_pad[n, o * S + tap * D, c] * k[tap, c, c_out]

(with ``c`` running over the input channels of ``c_out``'s group) from the same
:class:`ConvSpec`, so they are tested against each other number for number. ``conv``
has already resolved padding names, applied non-zero padding modes, flipped the kernel
for ``flip=True`` and promoted ``x`` and ``kernel`` to one dtype; an implementation only
sees zero padding, strides, dilation, groups and the layout.

Dispatch table: :data:`CONV_IMPLS` maps a name to a :class:`ConvImpl` (``check`` raises a
``ValueError`` for options the implementation does not support, ``apply`` computes). A
new implementation (Winograd, an ``"auto"`` chooser that calls other entries' ``check``)
is one :func:`register_conv_impl` call; ``conv`` needs no change.

Implementations:
  * ``"lax"``: ``lax.conv_general_dilated``; XLA's own convolution. Supports everything.
    For 3-D convolutions with a stride > 1 its input gradient is written out here (see
    ``_lax_safe_grad``: JAX's own rule crashed XLA's CPU compiler), so those support
    reverse-mode autodiff only (``jax.grad``/``jax.vjp``, not ``jax.jvp``).
  * ``"im2col"``: every receptive field is a row of a patch matrix built from strided
    slices (one per kernel tap) and one reshape, then a single matrix multiply with the
    reshaped kernel (a batched one, over groups, when ``groups > 1``). Slices and
    reshape instead of ``lax.conv_general_dilated_patches`` because that op ran a small
    CNN about 20x slower than ``conv_general_dilated`` on a 2-core x86 CPU (jax 0.10.2), while
    plain ``dot_general`` is XLA's fastest kernel. Memory: ``taps`` times the input.
    Supports everything.
  * ``"direct"``: the sum over kernel taps of (strided slice of the input) @ (kernel
    tap), i.e. ``taps`` matrix multiplies of the input size and no patch matrix.
    Supports everything.
  * ``"fft"``: pointwise products in the frequency domain (``jnp.fft.rfftn`` at the
    padded input size, so the circular wrap-around only touches discarded positions),
    channel mixing per frequency, inverse FFT, then the strided valid positions.
    Dilation is a zero-stuffed kernel and stride a subsampling of the stride-1 result,
    so both cost as much as the undilated, unstrided case. Needs real floating-point
    inputs (16-bit floats are computed in float32); ``precision`` has no meaning for an
    FFT and is refused rather than ignored.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "ConvSpec",
    "ConvImpl",
    "CONV_IMPLS",
    "register_conv_impl",
    "get_conv_impl",
    "conv_dimension_numbers",
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


#: name -> :class:`ConvImpl`; ``conv(impl=name)`` looks names up here.
CONV_IMPLS: dict[str, ConvImpl] = {}


def register_conv_impl(impl: ConvImpl, *, overwrite: bool = False) -> ConvImpl:
    """Add ``impl`` to :data:`CONV_IMPLS` (refuses to replace an entry unless ``overwrite``)."""
    if impl.name in CONV_IMPLS and not overwrite:
        raise ValueError(
            f"impl={impl.name!r} is already registered; pick another name or pass overwrite=True."
        )
    CONV_IMPLS[impl.name] = impl
    return impl


def get_conv_impl(name) -> ConvImpl:
    """Look up ``name`` in :data:`CONV_IMPLS`, raising a ``ValueError`` listing the choices."""
    if not isinstance(name, str) or name not in CONV_IMPLS:
        raise ValueError(
            f"impl={name!r} is not a known convolution implementation; use one of "
            f"{', '.join(repr(k) for k in CONV_IMPLS)}."
        )
    return CONV_IMPLS[name]


def _no_check(x, kernel, spec) -> None:
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


# --------------------------------------------------------------------------- "lax"


def _lax_forward(x, kernel, spec: ConvSpec):
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


# JAX differentiates conv_general_dilated w.r.t. its input with a convolution that uses
# lhs_dilation = stride. For 3-D strided convolutions whose output is small next to the
# kernel, XLA's CPU compiler aborted the whole process compiling that gradient
# (algebraic_simplifier.cc "Window dimensions do not match RHS shape"; measured with
# jax 0.10.2: input 6x7x6, kernel 3x3x2, stride (3, 3, 2), padding ((1, 0), (1, 2),
# (1, 1))). For 3-D convolutions with a stride > 1 the input gradient is therefore written
# out here as an explicitly zero-stuffed, stride-1 convolution (the same numbers), and
# the kernel gradient is JAX's own. Cost of the workaround: forward-mode autodiff
# (jax.jvp) is not available for those convolutions (custom_vjp); every other case keeps
# JAX's rules untouched.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _lax_safe_grad(x, kernel, spec):
    return _lax_forward(x, kernel, spec)


def _lax_safe_grad_fwd(x, kernel, spec):
    return _lax_forward(x, kernel, spec), (x, kernel)


def _lax_safe_grad_bwd(spec, residuals, ct):
    x, kernel = residuals
    n = spec.num_spatial
    axes = range(1, n + 1) if spec.channels_last else range(2, n + 2)
    in_spatial = [x.shape[a] for a in axes]
    pads = []
    for w, f, s, (lo, hi), d in zip(
        in_spatial, kernel.shape[:n], spec.stride, spec.padding, spec.dilation
    ):
        f_eff = d * (f - 1) + 1
        extra = (w + lo + hi - f_eff) % s  # input rows the floor dropped get zero gradient
        pads.append((f_eff - 1 - lo, f_eff - 1 - hi + extra))
    # The barrier keeps XLA from folding the stuffing and the flip back into the
    # convolution (as base dilation and window reversal), the form it crashed on.
    stuffed, back = lax.optimization_barrier(
        (
            zero_stuff(ct, pads, spec.stride, spec.channels_last),
            swap_io(kernel, spec.groups)[(slice(None, None, -1),) * n],
        )
    )
    dx = lax.conv_general_dilated(
        stuffed,
        back.astype(stuffed.dtype),
        window_strides=(1,) * n,
        padding=((0, 0),) * n,
        rhs_dilation=spec.dilation,
        dimension_numbers=conv_dimension_numbers(n, spec.channels_last),
        feature_group_count=spec.groups,
        precision=spec.precision,
    ).astype(x.dtype)
    _, kernel_pullback = jax.vjp(lambda k: _lax_forward(x, k, spec), kernel)
    (dkernel,) = kernel_pullback(ct)
    return dx, dkernel


_lax_safe_grad.defvjp(_lax_safe_grad_fwd, _lax_safe_grad_bwd)


def _lax_apply(x, kernel, spec: ConvSpec):
    if spec.num_spatial == 3 and any(s > 1 for s in spec.stride):
        return _lax_safe_grad(x, kernel, spec)
    return _lax_forward(x, kernel, spec)


# --------------------------------------------------------------------------- "im2col"


def _im2col_apply(x, kernel, spec: ConvSpec):
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


def _direct_apply(x, kernel, spec: ConvSpec):
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


# --------------------------------------------------------------------------- "fft"


def _fft_check(x, kernel, spec: ConvSpec) -> None:
    for name, arr in (("x", x), ("kernel", kernel)):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise ValueError(
                f"impl='fft' needs real floating-point inputs, but {name} has dtype "
                f"{arr.dtype}; cast it to a float dtype or use impl='lax'."
            )
    if spec.precision is not None:
        raise ValueError(
            f"impl='fft' does not support precision={spec.precision!r}: an FFT has no "
            f"matmul precision setting (it runs at the input dtype's full precision); "
            f"pass precision=None or use impl='lax'."
        )
    pet = spec.preferred_element_type
    if pet is not None and not jnp.issubdtype(pet, jnp.floating):
        raise ValueError(
            f"impl='fft' does not support preferred_element_type={pet!r}; the FFT result "
            f"is floating point; pass a float dtype or None, or use impl='lax'."
        )


def _fft_apply(x, kernel, spec: ConvSpec):
    n = spec.num_spatial
    x = _to_channels_last(x, spec.channels_last)
    pet = spec.preferred_element_type
    out_dtype = x.dtype if pet is None else pet
    # jnp.fft has no 16-bit transforms; compute those in float32.
    compute = jnp.promote_types(x.dtype, jnp.float32)
    x, kernel = x.astype(compute), kernel.astype(compute)
    kernel_spatial = kernel.shape[:n]
    out_spatial = spec.output_spatial(x.shape[1 : n + 1], kernel_spatial)
    xp = _zero_pad(x, spec.padding)
    if any(d > 1 for d in spec.dilation):
        # Dilation = zeros stuffed between taps: F taps become F_eff = D*(F-1)+1.
        config = [(0, 0, d - 1) for d in spec.dilation] + [(0, 0, 0), (0, 0, 0)]
        kernel = lax.pad(kernel, jnp.zeros((), kernel.dtype), config)
    f_eff = kernel.shape[:n]
    size = xp.shape[1 : n + 1]
    # Cross-correlation is convolution with the reversed kernel. With transforms of the
    # padded input's size L the product is a circular convolution; positions
    # j >= F_eff - 1 never wrap, and they are exactly the valid outputs j = t + F_eff - 1.
    flipped = kernel[(slice(None, None, -1),) * n]
    xf = jnp.fft.rfftn(xp, s=size, axes=tuple(range(1, n + 1)))
    kf = jnp.fft.rfftn(flipped, s=size, axes=tuple(range(n)))
    g = spec.groups
    c_in, c_out = x.shape[-1], kernel.shape[-1]
    xf = xf.reshape(*xf.shape[:-1], g, c_in // g)
    kf = kf.reshape(*kf.shape[:-1], g, c_out // g)  # (*freq, C/G, G, O/G)
    yf = jnp.einsum("n...gc,...cgo->n...go", xf, kf, precision=lax.Precision.HIGHEST)
    yf = yf.reshape(*yf.shape[:-2], c_out)
    y = jnp.fft.irfftn(yf, s=size, axes=tuple(range(1, n + 1)))
    start = [0] + [f - 1 for f in f_eff] + [0]
    limit = (
        [y.shape[0]]
        + [b + (o - 1) * s + 1 for b, o, s in zip(start[1:-1], out_spatial, spec.stride)]
        + [c_out]
    )
    y = lax.slice(y, start, limit, (1, *spec.stride, 1)).astype(out_dtype)
    return _from_channels_last(y, spec.channels_last)


register_conv_impl(
    ConvImpl("lax", _lax_apply, _no_check, "XLA's lax.conv_general_dilated (default)")
)
register_conv_impl(
    ConvImpl("im2col", _im2col_apply, _no_check, "patch matrix from strided slices, one matmul")
)
register_conv_impl(
    ConvImpl("direct", _direct_apply, _no_check, "sum over kernel taps of shifted matmuls")
)
register_conv_impl(
    ConvImpl("fft", _fft_apply, _fft_check, "frequency-domain products (real floats only)")
)
