"""Internals of the pooling family: argument checks, window geometry, the max-pool derivative.

Public functions live in :mod:`convjax.functional.pooling`; this module holds what they share.

Every windowed pool is computed from "window slices": for each offset ``k`` inside the
window (row-major over the window, ``k = i_1 * F_2 * ... + ... + i_n``) the strided slice of
the padded input that the ``k``-th tap of every window sees. A pool is then an elementwise
reduction over ``prod(window)`` slices, which XLA fuses into one loop, and whose derivative is
a select plus strided pads instead of XLA's ``select_and_scatter``. When windows tile the input
(``stride == window``, no dilation) the slices are views of one reshape, and the whole
forward and backward are a reshape, a reduce and one fused select.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convjax.functional import _checks
from convjax.functional.shapes import (
    conv_output_size,
    effective_kernel_size,
    normalize_tuple,
    resolve_padding,
    spatial_axes,
)

__all__ = [
    "Geometry",
    "spatial_rank",
    "check_input",
    "make_geometry",
    "pad_to_windows",
    "max_pool_padded",
    "max_pool_any",
    "window_offsets",
    "axis_geometries",
    "max_argmax",
    "sum_windows",
    "flat_indices",
    "lowest_value",
]


def spatial_rank(value, num_spatial_dims, name: str) -> int:
    """Number of spatial dimensions of a pool.

    The rule: a tuple ``window`` (or ``output_size``) gives the number of spatial
    dimensions by its length; a single int is ambiguous (a rank-4 array is a batch of 2-D
    images or one 3-D volume), so it needs ``num_spatial_dims``.
    """
    if num_spatial_dims is not None:
        if isinstance(num_spatial_dims, bool) or num_spatial_dims not in (1, 2, 3):
            raise ValueError(
                f"num_spatial_dims={num_spatial_dims!r} must be 1, 2 or 3; pass the number of "
                f"spatial dimensions of the input."
            )
        if isinstance(value, Sequence) and not isinstance(value, str):
            if len(value) != num_spatial_dims:
                raise ValueError(
                    f"{name}={tuple(value)!r} has {len(value)} entries but "
                    f"num_spatial_dims={num_spatial_dims}; make them agree."
                )
        return int(num_spatial_dims)
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) not in (1, 2, 3):
            raise ValueError(
                f"{name}={tuple(value)!r} has {len(value)} entries; pooling supports 1, 2 or 3 "
                f"spatial dimensions, so give 1 to 3 entries."
            )
        return len(value)
    raise ValueError(
        f"{name}={value!r} is a single int, which does not say how many spatial dimensions "
        f"the input has; pass a tuple with one entry per spatial dimension (e.g. (2, 2)) or "
        f"num_spatial_dims=1, 2 or 3."
    )


def check_input(x, n: int, channels_last: bool, fn: str):
    """Return ``x`` as an array after checking it fits a pool over ``n`` spatial dimensions.

    ``x`` needs rank ``n + 1`` (unbatched) or more: any number of leading batch axes, as in
    Flax (a pool reduces spatial axes only, so the leading axes are carried through as
    they are, which is the same as folding them into one batch axis and back). Strings,
    booleans and zero-size spatial axes are refused.
    """
    x = _checks.as_array(x, "x", fn)
    layout = "(..., *spatial, C)" if channels_last else "(..., C, *spatial)"
    if x.ndim < n + 1:
        fix = (
            "x has no channel axis: add one (x[..., None] for a single channel)"
            if x.ndim == n
            else "add the missing axes or change the window / num_spatial_dims"
        )
        raise ValueError(
            f"x has shape {tuple(x.shape)} ({x.ndim} dims) but {fn} with {n} spatial "
            f"dimension(s) needs at least {n + 1} dims {layout} (channels_last="
            f"{bool(channels_last)}, any number of leading batch axes); {fix}."
        )
    axes = spatial_axes(x.ndim, n, channels_last)
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise ValueError(
            f"x has shape {tuple(x.shape)} with a zero-size spatial axis (axis {empty[0]}, read "
            f"as {layout} with channels_last={bool(channels_last)}); {fn} needs at least one "
            f"sample along every spatial axis."
        )
    return x


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Static description of a windowed pool on one input shape (hashable, for ``jit``).

    Attributes:
      axes: the spatial axes of ``x``.
      in_spatial, out_spatial: input and output spatial sizes.
      window, stride, dilation: per spatial dimension.
      pads: the user's ``(lo, hi)`` padding per dimension (after resolving names).
      used: ``(out - 1) * stride + F_eff``: padded extent the windows actually read; the
        input is padded (or cropped) to exactly this, which also covers ``ceil_mode``.
    """

    axes: tuple[int, ...]
    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    window: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    used: tuple[int, ...]

    @property
    def tiles(self) -> bool:
        """Windows tile the padded input: no overlap, no gaps, no dilation."""
        return all(s == f and d == 1 for s, f, d in zip(self.stride, self.window, self.dilation))

    @property
    def size(self) -> int:
        return math.prod(self.window)

    def offsets(self):
        """Window offsets in row-major order (the order that decides ties)."""
        return itertools.product(*(range(f) for f in self.window))


def make_geometry(
    x,
    window,
    stride,
    padding,
    dilation,
    ceil_mode: bool,
    channels_last: bool,
    n: int,
    *,
    fn: str,
) -> Geometry:
    """Validate every windowed-pool argument and compute the static geometry.

    Raises ``ValueError`` (naming the argument, its value and the fix) for a bad window,
    stride, dilation or padding, a window larger than the padded input, or padding larger
    than half the (dilated) window, which would let a window lie entirely in the padding.
    """
    window_t = normalize_tuple(window, n, "window")
    stride_t = window_t if stride is None else normalize_tuple(stride, n, "stride")
    dilation_t = normalize_tuple(dilation, n, "dilation")
    axes = spatial_axes(x.ndim, n, channels_last)
    in_spatial = tuple(int(x.shape[a]) for a in axes)
    pads = resolve_padding(padding, in_spatial, window_t, stride_t, dilation_t)
    out, used = [], []
    for w, f, s, d, (lo, hi) in zip(in_spatial, window_t, stride_t, dilation_t, pads):
        f_eff = effective_kernel_size(f, d)
        if f_eff > w + lo + hi:
            raise ValueError(
                f"window={window!r} (effective size {f_eff} with dilation={dilation!r}) is "
                f"larger than the padded input of {fn} (size {w} + {lo} + {hi} = "
                f"{w + lo + hi}); use a smaller window or dilation, or more padding."
            )
        if lo > f_eff // 2 or hi > f_eff // 2:
            raise ValueError(
                f"padding={padding!r} gives ({lo}, {hi}), more than half of the window "
                f"(effective size {f_eff}), so a window could lie entirely in the padding; "
                f"use at most {f_eff // 2} per side (PyTorch's rule)."
            )
        o = conv_output_size(w, f, s, (lo, hi), d, ceil_mode=ceil_mode)
        out.append(o)
        used.append((o - 1) * s + f_eff)
    geom = Geometry(
        axes=axes,
        in_spatial=in_spatial,
        out_spatial=tuple(out),
        window=window_t,
        stride=stride_t,
        dilation=dilation_t,
        pads=pads,
        used=tuple(used),
    )
    if any(d > 1 for d in dilation_t):
        # Padding <= half the window keeps every undilated window on the input, but dilated
        # taps can step over a small input entirely: such a window would see only padding.
        for d, (w, f, s, dil, (lo, _), o) in enumerate(
            zip(in_spatial, window_t, stride_t, dilation_t, pads, out)
        ):
            taps = np.arange(o)[:, None] * s - lo + np.arange(f)[None, :] * dil
            empty = np.flatnonzero(((taps >= 0) & (taps < w)).sum(axis=1) == 0)
            if empty.size:
                raise ValueError(
                    f"dilation={dilation!r} with padding={padding!r}: in spatial dimension {d} "
                    f"(size {w}) the window at output {int(empty[0])} has taps "
                    f"{taps[empty[0]].tolist()}, all in the padding; use a smaller dilation "
                    f"or less padding."
                )
    return geom


def lowest_value(dtype):
    """The identity of ``max``: ``-inf`` for floats, the smallest value for integers."""
    dtype = jnp.dtype(dtype)
    if jnp.issubdtype(dtype, jnp.floating):
        return -jnp.inf
    if jnp.issubdtype(dtype, jnp.integer):
        return jnp.iinfo(dtype).min
    raise ValueError(f"x has dtype {dtype}; pooling needs a float or integer array, cast x.")


def pad_to_windows(x, geom: Geometry, fill):
    """Pad ``x`` with ``fill`` to the extent the windows read (negative high pad crops).

    ``ceil_mode`` windows that run past the high padding read ``fill`` there, which is the
    identity of the reduction, so they are not counted.
    """
    config = [(0, 0, 0)] * x.ndim
    for a, w, (lo, _), u in zip(geom.axes, geom.in_spatial, geom.pads, geom.used):
        config[a] = (lo, u - w - lo, 0)
    if all(c == (0, 0, 0) for c in config):
        return x
    return lax.pad(x, jnp.asarray(fill, x.dtype), config)


def _tiled(xp, geom: Geometry):
    """Reshape a padded input whose windows tile it: axis ``a`` -> ``(out, window)``.

    Returns the reshaped array and the positions of the window axes in it.
    """
    shape, win_axes = [], []
    spatial = dict(zip(geom.axes, zip(geom.out_spatial, geom.window)))
    for a, size in enumerate(xp.shape):
        if a in spatial:
            o, f = spatial[a]
            shape.extend((o, f))
            win_axes.append(len(shape) - 1)
        else:
            shape.append(size)
    return xp.reshape(shape), tuple(win_axes)


def window_slices(xp, geom: Geometry):
    """Yield one strided slice of the padded input per window offset, row-major.

    Slice ``k`` has the output's shape; element ``o`` is the ``k``-th tap of window ``o``.
    """
    # Strided slices even when windows tile: XLA fuses a chain of them into one loop, which
    # measured faster on CPU than reducing the window axes of a reshape (L2 pooling 2x2/2 on
    # 64x56x56x64, fwd+bwd: 206 ms vs 392 ms).
    for offset in geom.offsets():
        start = [0] * xp.ndim
        limit = list(xp.shape)
        strides = [1] * xp.ndim
        for a, i, o, s, d in zip(geom.axes, offset, geom.out_spatial, geom.stride, geom.dilation):
            start[a] = i * d
            limit[a] = i * d + (o - 1) * s + 1
            strides[a] = s
        yield lax.slice(xp, start, limit, strides)


def _index_dtype(k: int):
    return jnp.int8 if k <= 127 else jnp.int32


def max_argmax(xp, geom: Geometry):
    """Window maxima and the offset of the winning tap, PyTorch's rule.

    Taps are visited in row-major window order and a tap replaces the current winner only
    if it is strictly larger or NaN: ties go to the FIRST maximal tap in row-major order,
    and a NaN wins (the last NaN, as in PyTorch's CPU kernel) and propagates.
    """
    # lax primitives, not jnp wrappers: tracing cost matters when many pools are traced.
    floating = jnp.issubdtype(xp.dtype, jnp.floating)
    best = idx = None
    for k, s in enumerate(window_slices(xp, geom)):
        if best is None:
            best, idx = s, lax.full(s.shape, 0, _index_dtype(geom.size))
            continue
        take = lax.gt(s, best)
        if floating:
            take = lax.bitwise_or(take, lax.ne(s, s))  # s != s: NaN
        best = lax.select(take, s, best)
        idx = lax.select(take, lax.full(s.shape, k, idx.dtype), idx)
    return best, idx


def _max_values(xp, geom: Geometry):
    if geom.tiles:
        xr, win_axes = _tiled(xp, geom)
        return lax.reduce_max(xr, win_axes)
    best = None
    for s in window_slices(xp, geom):
        best = s if best is None else lax.max(best, s)
    return best


def _select_taps(tp, idx, geom: Geometry):
    """Linear in ``tp``: for each window, the tap of ``tp`` at offset ``idx``.

    Its transpose (which JAX derives) routes each output cotangent to the winning input
    element: for tiling windows a single fused select on the reshaped input, otherwise one
    strided pad per window offset, summed.
    """
    idx = idx.astype(jnp.int32)
    if geom.tiles:
        tr, win_axes = _tiled(tp, geom)
        # Offset of every element inside its window, broadcast over the window axes.
        k = lax.full(tr.shape, 0, jnp.int32)
        mult = 1
        for ax, f in sorted(zip(win_axes, geom.window), reverse=True):
            k = k + lax.broadcasted_iota(jnp.int32, tr.shape, ax) * mult
            mult *= f
        keep = [d for d in range(tr.ndim) if d not in win_axes]
        idx_b = lax.broadcast_in_dim(idx, tr.shape, keep)
        picked = lax.select(lax.eq(k, idx_b), tr, lax.full(tr.shape, 0, tr.dtype))
        return lax.reduce_sum(picked, win_axes)
    cases = list(window_slices(tp, geom))
    return lax.select_n(idx, *cases) if len(cases) > 1 else cases[0]


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def max_pool_padded(xp, geom: Geometry):
    """Max over windows of an already padded input, with the PyTorch tie rule in its derivative.

    A ``custom_jvp`` whose tangent rule is linear in the tangent (select the winning tap),
    so JAX transposes it into the VJP: reverse mode never calls XLA's select-and-scatter
    (slow on CPU, and undefined for dilated windows), and forward mode works too.
    """
    return _max_values(xp, geom)


@max_pool_padded.defjvp
def _max_pool_padded_jvp(geom, primals, tangents):
    (xp,), (tp,) = primals, tangents
    y, idx = max_argmax(xp, geom)
    return y, _select_taps(tp, idx, geom)


def sum_windows(xp, geom: Geometry):
    """Sum over windows of an already (zero-)padded input; plain JAX ops, autodiff for grads."""
    out = None
    for s in window_slices(xp, geom):
        out = s if out is None else out + s
    return out


def index_dtype():
    """Integer dtype of returned indices: int64 when x64 is enabled, else int32."""
    return jax.dtypes.canonicalize_dtype(jnp.int64)


def axis_geometries(geom: Geometry) -> list[tuple[int, Geometry]]:
    """One 1-D geometry per spatial dimension, for an input already padded to ``geom.used``.

    Listed innermost dimension first: pooling the last spatial dimension first and the first
    dimension last, each with the first-maximum rule, picks the first maximum of the whole
    box in row-major order (the smallest row holding the maximum, then its first column),
    so the separable pool has exactly the same tie rule as the full one.
    """
    out = []
    for d in reversed(range(len(geom.axes))):
        out.append(
            (
                d,
                Geometry(
                    axes=(geom.axes[d],),
                    in_spatial=(geom.used[d],),
                    out_spatial=(geom.out_spatial[d],),
                    window=(geom.window[d],),
                    stride=(geom.stride[d],),
                    dilation=(geom.dilation[d],),
                    pads=((0, 0),),
                    used=(geom.used[d],),
                ),
            )
        )
    return out


def max_pool_any(xp, geom: Geometry):
    """Max pooling of a padded input with the custom derivative.

    Tiling windows: one reshape-and-max. Otherwise a box max is separable, so pool one
    dimension at a time: ``sum(F)`` window slices instead of ``prod(F)`` (9 instead of 27
    for a 3x3x3 window), in the forward and the backward pass.
    """
    if geom.tiles or len(geom.axes) == 1:
        return max_pool_padded(xp, geom)
    y = xp
    for _, g1 in axis_geometries(geom):
        y = max_pool_padded(y, g1)
    return y


def window_offsets(xp, geom: Geometry):
    """Per spatial dimension, the window offset of each output's winner (first maximum)."""
    if geom.tiles or len(geom.axes) == 1:
        _, k = max_argmax(xp, geom)
        k = k.astype(jnp.int32)
        offsets, inner = [None] * len(geom.axes), 1
        for d in reversed(range(len(geom.axes))):
            offsets[d] = (k // inner) % geom.window[d]
            inner *= geom.window[d]
        return offsets
    y, offsets = xp, {}
    for d, g1 in axis_geometries(geom):
        y, k = max_argmax(y, g1)
        k = k.astype(jnp.int32)
        # Offsets found for inner dimensions follow the rows this dimension picked.
        for dd in offsets:
            cases = list(window_slices(offsets[dd], g1))
            offsets[dd] = lax.select_n(k, *cases) if len(cases) > 1 else cases[0]
        offsets[d] = k
    return [offsets[d] for d in range(len(geom.axes))]


def flat_indices(offsets, geom: Geometry, out_ndim: int):
    """PyTorch-style flat per-channel index of each window's winner in the UNPADDED input.

    ``index = sum_d position_d * prod(in_spatial[d+1:])`` with
    ``position_d = o_d * stride_d + offset_d * dilation_d - pad_lo_d``.
    """
    dt = index_dtype()
    flat = jnp.zeros((), dt)
    inner = 1
    for d in reversed(range(len(geom.axes))):
        a, s, dil = geom.axes[d], geom.stride[d], geom.dilation[d]
        shape = [1] * out_ndim
        shape[a] = geom.out_spatial[d]
        o_d = lax.broadcasted_iota(dt, shape, a)
        pos = o_d * s + offsets[d].astype(dt) * dil - geom.pads[d][0]
        flat = flat + pos * inner
        inner *= geom.in_spatial[d]
    return flat


def static_counts(geom: Geometry, include_pad: bool) -> np.ndarray:
    """Number of taps of each window inside the input (or the input plus its padding).

    Separable per dimension, so the result is an outer product; shape ``out_spatial``.
    PyTorch's avg pooling counts padding taps but never taps past the high padding that
    ``ceil_mode`` adds; ``include_pad`` selects between the two ranges.
    """
    total = np.ones((), np.float64)
    for w, f, s, d, (lo, hi), o in zip(
        geom.in_spatial, geom.window, geom.stride, geom.dilation, geom.pads, geom.out_spatial
    ):
        taps = np.arange(o)[:, None] * s - lo + np.arange(f)[None, :] * d
        low, high = (-lo, w + hi) if include_pad else (0, w)
        per = ((taps >= low) & (taps < high)).sum(axis=1).astype(np.float64)
        total = np.multiply.outer(total, per)
    return total
