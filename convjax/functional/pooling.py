"""The pooling family: max, min, sum, average, Lp, global, adaptive pooling and max unpooling.

Every function works on 1, 2 or 3 spatial dimensions, channels-last (``(N, *spatial, C)``,
the default) or channels-first (``channels_last=False``: ``(N, C, *spatial)``), batched or
unbatched (drop ``N``) or with several leading batch axes (``(..., *spatial, C)``, as in
Flax), and under ``jax.jit``, ``jax.vmap`` and ``jax.grad``. The windowed pools take a
``padding_mode`` as :func:`convjax.functional.conv` does (``"reflect"``, ``"replicate"``,
``"circular"``; the default ``"zeros"`` is the reduction's neutral padding).

How many spatial dimensions? A tuple ``window`` (or ``output_size``) says it by its length:
``max_pool(x, (2, 2))`` is a 2-D pool. A single int is ambiguous (a rank-4 array is a batch
of 2-D images or one 3-D volume), so it needs ``num_spatial_dims``:
``max_pool(x, 2, num_spatial_dims=2)``. Global pools always take ``num_spatial_dims``.

Windows follow the CS231n notes' notation: window ``F``, stride ``S`` (defaults to the window, so
``max_pool(x, (2, 2))`` is the common F=2, S=2 pool and ``max_pool(x, (3, 3), 2)`` the
overlapping one), padding ``P`` in any form :func:`convjax.functional.resolve_padding`
accepts, and window ``dilation``. Output size per dimension is
``(W - F_eff + P_lo + P_hi) // S + 1``; ``ceil_mode=True`` rounds up with PyTorch's rule (the
last window must start inside the input or the low padding). Padding may be at most half the
(dilated) window per side (PyTorch's rule; PyTorch's 2-D/3-D kernels measure the undilated
window, so with dilation convjax accepts a little more), so no window lies entirely in
padding; a dilated window whose taps all step over the input is an error too.

Max pooling pads with ``-inf`` (never zeros). Its derivative is custom: ties send the whole
gradient to the FIRST maximal element of the window in row-major order (PyTorch's CPU rule),
and a NaN in a window wins and propagates (the last NaN, as in PyTorch). The derivative
is a select plus strided pads, not XLA's ``select_and_scatter``, so dilated windows are
differentiable (``lax.reduce_window`` max pooling with dilation has no reverse-mode rule).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convjax.functional import pooling_core as core
from convjax.functional.padding import check_padding_mode, check_pads_fit, pad, source_indices
from convjax.functional.shapes import normalize_tuple, resolve_padding, spatial_axes

__all__ = [
    "max_pool",
    "min_pool",
    "sum_pool",
    "avg_pool",
    "lp_pool",
    "global_avg_pool",
    "global_max_pool",
    "adaptive_avg_pool",
    "adaptive_max_pool",
    "max_unpool",
]


def _setup(
    x,
    window,
    stride,
    padding,
    dilation,
    ceil_mode,
    channels_last,
    num_spatial_dims,
    fn,
    padding_mode="zeros",
):
    """Checked input and geometry; a non-zero ``padding_mode`` pads ``x`` here.

    Returns ``(x, geom, mode_pads)``: with ``padding_mode`` other than ``"zeros"`` the
    input comes back already padded (reflect/replicate/circular samples are data, so the
    pool then runs with no padding of its own) and ``mode_pads`` holds the pairs used.
    """
    n = core.spatial_rank(window, num_spatial_dims, "window")
    x = core.check_input(x, n, channels_last, fn)
    padding_mode = check_padding_mode(padding_mode)
    mode_pads = None
    if padding_mode != "zeros":
        window_t = normalize_tuple(window, n, "window")
        stride_t = window_t if stride is None else normalize_tuple(stride, n, "stride")
        dilation_t = normalize_tuple(dilation, n, "dilation")
        in_spatial = tuple(int(x.shape[a]) for a in spatial_axes(x.ndim, n, channels_last))
        mode_pads = resolve_padding(padding, in_spatial, window_t, stride_t, dilation_t)
        check_pads_fit(mode_pads, in_spatial, padding_mode, "padding", padding)
        x = pad(x, mode_pads, padding_mode, channels_last)
        padding = 0
    geom = core.make_geometry(
        x, window, stride, padding, dilation, ceil_mode, channels_last, n, fn=fn
    )
    return x, geom, (None if mode_pads is None else (padding_mode, mode_pads))


def max_pool(
    x,
    window,
    stride=None,
    padding=0,
    *,
    dilation=1,
    ceil_mode: bool = False,
    return_indices: bool = False,
    padding_mode: str = "zeros",
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Max pooling over 1, 2 or 3 spatial dimensions.

    Args:
      x: ``(N, *spatial, C)`` or ``(*spatial, C)`` (channels-first: ``(N, C, *spatial)`` or
        ``(C, *spatial)``), float or integer; any number of leading batch axes.
      window: window size F; a tuple gives the number of spatial dimensions.
      stride: S; defaults to ``window`` (non-overlapping windows), as in PyTorch and Keras.
        Flax's ``max_pool``/``avg_pool`` (``flax.linen`` and ``flax.nnx``) default to a
        stride of 1 instead: pass ``strides`` explicitly when porting from Flax.
      padding: int, one int per dimension, ``(lo, hi)`` pairs, or a name such as ``"VALID"``
        or ``"SAME"``; padded elements are ``-inf`` and never win.
      dilation: spacing between window taps, ``F_eff = dilation * (F - 1) + 1``.
      ceil_mode: round the output size up (PyTorch's rule).
      return_indices: also return, for every output, the flat index of the winning element
        inside its channel's unpadded spatial block (PyTorch's indices, e.g. ``h * W + w``
        for 2-D), for :func:`max_unpool`.
      padding_mode: ``"zeros"`` (default: the reduction's neutral padding, ``-inf`` here,
        so a padded sample never wins), or ``"reflect"``, ``"replicate"``, ``"circular"``
        as for :func:`convjax.functional.conv`: the padded samples are copies of the input
        and take part like any other (an index then names the input sample copied).
      channels_last: layout of ``x``.
      num_spatial_dims: needed when ``window`` is a single int.

    Returns:
      ``y`` with the spatial sizes replaced by the output sizes, or ``(y, indices)``.

    Ties give the gradient to the first maximal element in row-major window order.

    >>> import numpy as np
    >>> x = np.arange(16.0).reshape(4, 4, 1)
    >>> np.asarray(max_pool(x, (2, 2)))[..., 0]
    array([[ 5.,  7.],
           [13., 15.]], dtype=float32)
    """
    x, geom, mode_pads = _setup(
        x,
        window,
        stride,
        padding,
        dilation,
        ceil_mode,
        channels_last,
        num_spatial_dims,
        "max_pool",
        padding_mode,
    )
    core.lowest_value(x.dtype)  # rejects non-numeric dtypes before tracing
    out = _max_pool_impl(x, geom, bool(return_indices))
    if not return_indices or mode_pads is None:
        return out
    return out[0], _source_flat_indices(out[1], geom, *mode_pads)


def _source_flat_indices(idx, geom, mode: str, pads):
    """Map flat indices into the mode-padded input to the input samples they copy."""
    padded = geom.in_spatial
    coords, inner = [], 1
    for w in reversed(padded):
        coords.append((idx // inner) % w)
        inner *= w
    coords.reverse()
    flat, inner = jnp.zeros_like(idx), 1
    for d in reversed(range(len(padded))):
        lo, hi = pads[d]
        w = padded[d] - lo - hi
        table = jnp.asarray(source_indices(w, lo, hi, mode), idx.dtype)
        flat = flat + jnp.take(table, coords[d]) * inner
        inner *= w
    return flat


# Each pool is jitted with its static geometry: an eager call compiles one program instead
# of dispatching (and compiling) each window slice separately; under an outer jit it inlines.
@functools.partial(jax.jit, static_argnums=(1, 2))
def _max_pool_impl(x, geom, return_indices):
    xp = core.pad_to_windows(x, geom, core.lowest_value(x.dtype))
    y = core.max_pool_any(xp, geom)
    if not return_indices:
        return y
    offsets = core.window_offsets(lax.stop_gradient(xp), geom)
    return y, core.flat_indices(offsets, geom, y.ndim)


def min_pool(
    x,
    window,
    stride=None,
    padding=0,
    *,
    dilation=1,
    ceil_mode: bool = False,
    padding_mode: str = "zeros",
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Min pooling: ``-max_pool(-x)``; padding is ``+inf``, ties go to the first minimum.

    Arguments and shapes as :func:`max_pool`. Float inputs only (negating the smallest
    integer overflows).
    """
    n = core.spatial_rank(window, num_spatial_dims, "window")
    x = core.check_input(x, n, channels_last, "min_pool")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x has dtype {x.dtype}; min_pool needs floats, cast x to float.")
    return -max_pool(
        -x,
        window,
        stride,
        padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        padding_mode=padding_mode,
        channels_last=channels_last,
        num_spatial_dims=num_spatial_dims,
    )


def sum_pool(
    x,
    window,
    stride=None,
    padding=0,
    *,
    dilation=1,
    ceil_mode: bool = False,
    padding_mode: str = "zeros",
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Sum over each window; padding is zeros (or ``padding_mode``'s copies of the input).

    Arguments and shapes as :func:`max_pool`.
    """
    x, geom, _ = _setup(
        x,
        window,
        stride,
        padding,
        dilation,
        ceil_mode,
        channels_last,
        num_spatial_dims,
        "sum_pool",
        padding_mode,
    )
    return _sum_pool_impl(x, geom)


@functools.partial(jax.jit, static_argnums=(1,))
def _sum_pool_impl(x, geom):
    return core.sum_windows(core.pad_to_windows(x, geom, 0), geom)


def _divisor(geom, count_include_pad, divisor_override, ndim):
    if divisor_override is not None:
        if (
            isinstance(divisor_override, bool)
            or not isinstance(divisor_override, int | np.integer)
            or divisor_override < 1
        ):
            raise ValueError(
                f"divisor_override={divisor_override!r} must be a positive int or None; "
                f"pass e.g. divisor_override=4, or None to divide by the window count."
            )
        return float(divisor_override)
    counts = core.static_counts(geom, count_include_pad)
    if np.all(counts == counts.flat[0]):
        return float(counts.flat[0])
    shape = [1] * ndim
    for a, o in zip(geom.axes, geom.out_spatial):
        shape[a] = o
    return counts.reshape(shape)


def avg_pool(
    x,
    window,
    stride=None,
    padding=0,
    *,
    dilation=1,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    padding_mode: str = "zeros",
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Average pooling, PyTorch's divisor rules.

    Args:
      x, window, stride, padding, dilation, ceil_mode, channels_last, num_spatial_dims: as
        :func:`max_pool`; padding is zeros.
      count_include_pad: divide by the number of window taps inside the input plus its
        padding (True, PyTorch's default) or inside the input only (False, TensorFlow's
        ``SAME`` average). Taps that ``ceil_mode`` places past the padding never count.
      divisor_override: divide every window sum by this positive int instead.
      padding_mode: ``"zeros"`` (default), or ``"reflect"``, ``"replicate"``,
        ``"circular"``: padded samples are copies of the input, so they always count
        (``count_include_pad`` then only affects ``ceil_mode`` windows past the padding).

    Returns:
      ``y`` with the output spatial sizes, same dtype as ``x`` (floats).
    """
    x, geom, _ = _setup(
        x,
        window,
        stride,
        padding,
        dilation,
        ceil_mode,
        channels_last,
        num_spatial_dims,
        "avg_pool",
        padding_mode,
    )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x has dtype {x.dtype}; avg_pool needs floats, cast x to float.")
    div = _divisor(geom, count_include_pad, divisor_override, x.ndim)
    if isinstance(div, float):
        return _avg_pool_impl(x, geom, div)
    return _avg_pool_impl(x, geom, None, div)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _avg_pool_impl(x, geom, scalar_div, div=None):
    s = core.sum_windows(core.pad_to_windows(x, geom, 0), geom)
    return s / jnp.asarray(scalar_div if div is None else div, s.dtype)


def lp_pool(
    x,
    window,
    stride=None,
    padding=0,
    *,
    p: float = 2.0,
    dilation=1,
    ceil_mode: bool = False,
    padding_mode: str = "zeros",
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Power-average (Lp) pooling: ``(sum over the window of |x|^p) ** (1 / p)``.

    ``p = 2`` is the L2-norm pooling of the CS231n notes, ``p = 1`` the sum of magnitudes, and a
    large ``p`` approaches max pooling of ``|x|``. Padding is zeros.

    Matches PyTorch's ``lp_pool`` (which has no padding or dilation) for even ``p`` or
    non-negative inputs. PyTorch raises ``x`` itself to the power ``p``, so for odd or
    fractional ``p`` and negative inputs it returns negative sums or NaN; this function
    takes ``|x|`` and always returns the Lp norm of the window. Also, for ``ceil_mode``
    windows that run past the input PyTorch rescales by ``F / count`` (an artefact of
    computing it as an average); this function returns the plain Lp norm of what is inside.

    A window whose sum is zero has output 0 and gradient 0 (the true derivative is
    undefined there).

    Args:
      p: the power, a finite number > 0.
      Other arguments as :func:`max_pool` (``padding_mode`` too: zeros or copies of x).
    """
    if isinstance(p, bool) or not isinstance(p, int | float | np.floating | np.integer):
        raise ValueError(f"p={p!r} must be a number > 0 (e.g. p=2 for L2 pooling).")
    if not (math.isfinite(p) and p > 0):
        raise ValueError(
            f"p={p!r} must be finite and > 0; use p=2 for L2 pooling, or max_pool for p=inf."
        )
    x, geom, _ = _setup(
        x,
        window,
        stride,
        padding,
        dilation,
        ceil_mode,
        channels_last,
        num_spatial_dims,
        "lp_pool",
        padding_mode,
    )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x has dtype {x.dtype}; lp_pool needs floats, cast x to float.")
    return _lp_pool_impl(x, geom, float(p))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _lp_pool_impl(x, geom, p):
    powered = x * x if p == 2 else jnp.abs(x) ** jnp.asarray(p, x.dtype)
    s = core.sum_windows(core.pad_to_windows(powered, geom, 0), geom)
    return _root(s, p)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _root(s, p: float):
    """``s ** (1 / p)`` for ``s >= 0`` with derivative 0 (not inf) where ``s == 0``."""
    return jnp.sqrt(s) if p == 2 else s ** jnp.asarray(1.0 / p, s.dtype)


@_root.defjvp
def _root_jvp(p, primals, tangents):
    (s,), (t,) = primals, tangents
    y = _root(s, p)
    # dy = ds / (p y^(p-1)), zero where y == 0. The scale is computed from y alone (s stays
    # out of the residuals: measured ~1.8x faster fwd+bwd on CPU than selecting on s), and the
    # select is on the scale, not on the product, so reverse mode never forms 0 * inf.
    positive = y > 0
    safe = jnp.where(positive, y, jnp.ones((), y.dtype))
    if p == 2:
        scale = 0.5 / safe
    elif p == 1:
        scale = jnp.ones_like(y)
    else:
        scale = 1.0 / (jnp.asarray(p, y.dtype) * safe ** jnp.asarray(p - 1, y.dtype))
    return y, t * jnp.where(positive, scale, jnp.zeros((), y.dtype))


def _global_axes(x, num_spatial_dims, channels_last, fn):
    n = core.spatial_rank(None, num_spatial_dims, "num_spatial_dims") if num_spatial_dims else 0
    if not n:
        raise ValueError(
            f"num_spatial_dims={num_spatial_dims!r}: {fn} needs the number of spatial "
            f"dimensions, 1, 2 or 3 (e.g. {fn}(x, 2) for images)."
        )
    x = core.check_input(x, n, channels_last, fn)
    return x, spatial_axes(x.ndim, n, channels_last)


def global_avg_pool(x, num_spatial_dims: int, *, channels_last: bool = True, keepdims=False):
    """Mean over all spatial positions: ``(N, *spatial, C) -> (N, C)`` (or keep size-1 dims).

    Args:
      x: batched or unbatched input, either layout.
      num_spatial_dims: 1, 2 or 3.
      keepdims: keep the spatial axes with size 1.
    """
    x, axes = _global_axes(x, num_spatial_dims, channels_last, "global_avg_pool")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x has dtype {x.dtype}; global_avg_pool needs floats, cast x.")
    return jnp.mean(x, axis=axes, keepdims=keepdims)


def global_max_pool(x, num_spatial_dims: int, *, channels_last: bool = True, keepdims=False):
    """Max over all spatial positions: ``(N, *spatial, C) -> (N, C)``.

    The gradient goes to the first maximal position in row-major order, as in
    :func:`max_pool` (``jnp.max`` would split it among ties).
    """
    x, axes = _global_axes(x, num_spatial_dims, channels_last, "global_max_pool")
    window = tuple(int(x.shape[a]) for a in axes)
    y = max_pool(x, window, channels_last=channels_last)
    if keepdims:
        return y
    return jnp.squeeze(y, axis=axes)


def _adaptive_setup(x, output_size, channels_last, num_spatial_dims, fn):
    n = core.spatial_rank(output_size, num_spatial_dims, "output_size")
    x = core.check_input(x, n, channels_last, fn)
    axes = spatial_axes(x.ndim, n, channels_last)
    in_spatial = tuple(int(x.shape[a]) for a in axes)
    if isinstance(output_size, Sequence) and not isinstance(output_size, str):
        # None keeps that dimension's input size, as in PyTorch.
        output_size = tuple(w if o is None else o for o, w in zip(output_size, in_spatial))
    out = normalize_tuple(output_size, n, "output_size")
    for o, w in zip(out, in_spatial):
        if o > w:
            raise ValueError(
                f"output_size={output_size!r} is larger than the input's spatial size "
                f"{in_spatial}; adaptive pooling only shrinks, use an output size <= the input "
                f"(or upsample first)."
            )
    return x, axes, in_spatial, out


def _bins(w: int, o: int):
    """PyTorch's adaptive bins: ``[floor(i * W / O), ceil((i + 1) * W / O))``."""
    starts = [(i * w) // o for i in range(o)]
    ends = [-(-((i + 1) * w) // o) for i in range(o)]
    return starts, ends


def adaptive_avg_pool(
    x, output_size, *, channels_last: bool = True, num_spatial_dims: int | None = None
):
    """Average pooling to a fixed output size, PyTorch's bin rule.

    Output ``i`` of a dimension averages inputs ``floor(i * W / O)`` to
    ``ceil((i + 1) * W / O) - 1``; bins may overlap by one when ``O`` does not divide ``W``.

    Args:
      x: batched or unbatched input, either layout, float.
      output_size: int or one int (or None: keep the input size) per spatial dimension;
        each at most the input size.
      num_spatial_dims: needed when ``output_size`` is a single int.
    """
    x, axes, in_spatial, out = _adaptive_setup(
        x, output_size, channels_last, num_spatial_dims, "adaptive_avg_pool"
    )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x has dtype {x.dtype}; adaptive_avg_pool needs floats, cast x.")
    if all(w % o == 0 for w, o in zip(in_spatial, out)):
        window = tuple(w // o for w, o in zip(in_spatial, out))
        return avg_pool(x, window, channels_last=channels_last)
    return _adaptive_avg_impl(x, axes, in_spatial, out)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _adaptive_avg_impl(x, axes, in_spatial, out):
    # A box mean is separable: average one dimension at a time with a bin matrix.
    for a, w, o in zip(axes, in_spatial, out):
        if w == o:
            continue
        starts, ends = _bins(w, o)
        mat = np.zeros((w, o), np.float64)
        for i, (s, e) in enumerate(zip(starts, ends)):
            mat[s:e, i] = 1.0 / (e - s)
        y = jnp.tensordot(
            x, jnp.asarray(mat, x.dtype), axes=([a], [0]), precision=lax.Precision.HIGHEST
        )
        x = jnp.moveaxis(y, -1, a)
    return x


def adaptive_max_pool(
    x,
    output_size,
    *,
    return_indices: bool = False,
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Max pooling to a fixed output size, PyTorch's bin rule (see :func:`adaptive_avg_pool`).

    Ties go to the first maximal element in row-major order, as in :func:`max_pool`;
    ``return_indices`` gives PyTorch's flat per-channel indices. A NaN propagates to its
    bin's output (its index is the first NaN; PyTorch reports the last).
    """
    x, axes, in_spatial, out = _adaptive_setup(
        x, output_size, channels_last, num_spatial_dims, "adaptive_max_pool"
    )
    if all(w % o == 0 for w, o in zip(in_spatial, out)):
        window = tuple(w // o for w, o in zip(in_spatial, out))
        return max_pool(x, window, return_indices=return_indices, channels_last=channels_last)
    return _adaptive_max_impl(x, axes, in_spatial, out, bool(return_indices))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _adaptive_max_impl(x, axes, in_spatial, out, return_indices):
    # A box max is separable. Reducing the LAST spatial dimension first, with first-occurrence
    # argmax in each, picks the first maximum in row-major order: the smallest row among the
    # rows holding the maximum, then the first column in it.
    dt = core.index_dtype()
    flat = jnp.zeros((), dt)
    inner = 1
    for a, w in reversed(list(zip(axes, in_spatial))):
        shape = [1] * x.ndim
        shape[a] = w
        flat = flat + lax.broadcasted_iota(dt, shape, a) * inner
        inner *= w
    flat = jnp.broadcast_to(flat, x.shape)
    for a, w, o in reversed(list(zip(axes, in_spatial, out))):
        if w == o:
            continue
        bins = tuple(zip(*_bins(w, o)))
        if return_indices:
            pos = _bin_winner(lax.stop_gradient(x), a, bins)
            flat = _pick(flat, pos, a)
        x = _bin_max(x, a, bins)
    if return_indices:
        return x, flat
    return x


def _bin_mask(axis, bins, ndim, w):
    """Static membership mask, shape 1s except ``(O, W)`` at ``(axis, axis + 1)``."""
    m = np.zeros((len(bins), w), bool)
    for i, (s, e) in enumerate(bins):
        m[i, s:e] = True
    shape = [1] * (ndim + 1)
    shape[axis], shape[axis + 1] = m.shape
    return m.reshape(shape)


def _bin_winner(x, axis, bins):
    """Position along ``axis`` of the first maximum of each bin, shape with ``O`` at ``axis``."""
    w = x.shape[axis]
    xe = jnp.expand_dims(x, axis)  # (..., 1, W, ...): bins broadcast on the new axis
    masked = jnp.where(_bin_mask(axis, bins, x.ndim, w), xe, core.lowest_value(x.dtype))
    return jnp.argmax(masked, axis=axis + 1)  # first occurrence in each bin


def _pick(v, pos, axis):
    """``v`` at ``pos`` along ``axis``, as a masked sum: linear in ``v``, no gather/scatter."""
    w = v.shape[axis]
    shape = [1] * (v.ndim + 1)
    shape[axis + 1] = w
    hit = lax.broadcasted_iota(pos.dtype, shape, axis + 1) == jnp.expand_dims(pos, axis + 1)
    return jnp.sum(jnp.where(hit, jnp.expand_dims(v, axis), jnp.zeros((), v.dtype)), axis + 1)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _bin_max(x, axis, bins):
    xe = jnp.expand_dims(x, axis)
    masked = jnp.where(_bin_mask(axis, bins, x.ndim, x.shape[axis]), xe, core.lowest_value(x.dtype))
    return jnp.max(masked, axis=axis + 1)


@_bin_max.defjvp
def _bin_max_jvp(axis, bins, primals, tangents):
    # max_pool's rule: the tangent of the first maximal element of each bin. Written as a
    # masked sum, it transposes to a broadcast and a select instead of a scatter, which keeps
    # XLA's compile time and run time small.
    (x,), (t,) = primals, tangents
    return _bin_max(x, axis, bins), _pick(t, _bin_winner(x, axis, bins), axis)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def _scatter_rows(values, idx, size):
    """``out[m, idx[m, j]] = values[m, j]`` into zeros of shape ``(M, size)``."""
    rows = jnp.arange(values.shape[0])[:, None]
    out = jnp.zeros((values.shape[0], size), values.dtype)
    return out.at[rows, idx].set(values, mode="drop")


def _scatter_rows_fwd(values, idx, size):
    return _scatter_rows(values, idx, size), idx


def _scatter_rows_bwd(size, idx, g):
    # PyTorch's rule: every input reads the gradient at its index (a repeated index, which
    # overlapping windows can produce, gives its gradient to each input that wrote there).
    safe = jnp.clip(idx, 0, size - 1)
    return jnp.take_along_axis(g, safe, axis=1), None


_scatter_rows.defvjp(_scatter_rows_fwd, _scatter_rows_bwd)


def max_unpool(
    x,
    indices,
    window,
    stride=None,
    padding=0,
    *,
    output_size=None,
    channels_last: bool = True,
    num_spatial_dims: int | None = None,
):
    """Partial inverse of :func:`max_pool`: put each value back at its index, zeros elsewhere.

    Args:
      x: pooled values, ``(N, *out_spatial, C)`` or unbatched, either layout.
      indices: the ``indices`` that ``max_pool(..., return_indices=True)`` returned, same
        shape as ``x``: flat positions inside each channel's spatial block.
      window, stride, padding: the pool's arguments (integer padding forms only); they give
        the default output size ``(out - 1) * S - P_lo - P_hi + F`` per dimension.
      output_size: the spatial size to restore, overriding the default (e.g. when the pool
        floored an odd size).

    Returns:
      ``(N, *output_size, C)`` (or the matching layout), zeros except at ``indices``.
      The gradient for ``x`` reads the output gradient at ``indices`` (PyTorch's rule).
    """
    n = core.spatial_rank(window, num_spatial_dims, "window")
    x = core.check_input(x, n, channels_last, "max_unpool")
    window_t = normalize_tuple(window, n, "window")
    stride_t = window_t if stride is None else normalize_tuple(stride, n, "stride")
    axes = spatial_axes(x.ndim, n, channels_last)
    pooled = tuple(int(x.shape[a]) for a in axes)
    if isinstance(padding, str):
        raise ValueError(
            f"padding={padding!r}: max_unpool cannot resolve a padding name without the "
            f"original input size; pass integer padding or output_size=(...)."
        )
    pads = resolve_padding(padding, pooled, window_t, stride_t)
    if output_size is None:
        out = tuple(
            (o - 1) * s - lo - hi + f for o, s, (lo, hi), f in zip(pooled, stride_t, pads, window_t)
        )
        if any(v < 1 for v in out):
            raise ValueError(
                f"padding={padding!r} leaves an empty output {out}; use less padding or pass "
                f"output_size."
            )
    else:
        out = normalize_tuple(output_size, n, "output_size")
    indices = jnp.asarray(indices) if not isinstance(indices, jax.core.Tracer) else indices
    if tuple(indices.shape) != tuple(x.shape):
        raise ValueError(
            f"indices has shape {tuple(indices.shape)} but x has shape {tuple(x.shape)}; pass "
            f"the indices max_pool(..., return_indices=True) returned with x."
        )
    if not jnp.issubdtype(indices.dtype, jnp.integer):
        raise ValueError(
            f"indices has dtype {indices.dtype}; pass the integer indices from max_pool."
        )
    size = math.prod(out)
    if not isinstance(indices, jax.core.Tracer):
        bad = np.asarray(indices)
        bad = bad[(bad < 0) | (bad >= size)]
        if bad.size:
            raise ValueError(
                f"indices contains {bad.flat[0]}, outside [0, {size}) for output_size {out}; "
                f"the indices do not belong to this output size. Pass output_size equal to the "
                f"pooled input's spatial size."
            )
    ch = x.ndim - 1 if channels_last else x.ndim - n - 1
    return _unpool_impl(x, indices, ch, n, out)


@functools.partial(jax.jit, static_argnums=(2, 3, 4))
def _unpool_impl(x, indices, ch, n, out):
    # Move channels next to the spatial block, flatten to (rows, positions), scatter per row.
    size = math.prod(out)
    xs = jnp.moveaxis(x, ch, -n - 1)
    ids = jnp.moveaxis(indices, ch, -n - 1)
    lead = xs.shape[: xs.ndim - n]
    rows = math.prod(lead)
    y = _scatter_rows(xs.reshape(rows, -1), ids.reshape(rows, -1), size)
    y = y.reshape(lead + out)
    return jnp.moveaxis(y, -n - 1, ch)
