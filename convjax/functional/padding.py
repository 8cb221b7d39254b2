"""Explicit spatial padding with PyTorch's four padding modes.

``pad(x, pads, mode, channels_last)`` pads the spatial dimensions of a batched or
unbatched array. ``conv`` uses it for every ``padding_mode`` other than ``"zeros"``
(zeros are left to the convolution itself, which pads for free).

Modes, for a 1-D input ``a b c d`` padded by 2 on each side:

==============  ======================  ==========================================
mode            result                  rule
==============  ======================  ==========================================
``zeros``       ``0 0 a b c d 0 0``     constant zero
``reflect``     ``c b a b c d c b``     mirror about the edge sample (not repeated);
                                        at most ``W - 1`` per side
``replicate``   ``a a a b c d d d``     repeat the edge sample
``circular``    ``c d a b c d a b``     periodic; wider than ``W`` wraps again
==============  ======================  ==========================================

The non-zero modes are a gather with indices computed in NumPy at trace time, so they
cost one ``take`` per dimension, work for any padding width (circular padding wraps as
many times as needed) and are differentiable (the gradient is a scatter-add).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from convjax.functional.shapes import spatial_axes

__all__ = [
    "PADDING_MODES",
    "pad",
    "pad_adjoint",
    "check_padding_mode",
    "check_pads_fit",
    "source_indices",
]

#: Padding modes understood by :func:`pad` and ``conv(padding_mode=...)`` (PyTorch's names).
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def check_padding_mode(mode, name: str = "padding_mode") -> str:
    """Return ``mode`` if it is one of :data:`PADDING_MODES`, else raise ``ValueError``."""
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        raise ValueError(
            f"{name}={mode!r} is not a known padding mode; use one of "
            f"{', '.join(repr(m) for m in PADDING_MODES)}."
        )
    return mode


def _normalize_pads(pads, name: str) -> tuple[tuple[int, int], ...]:
    if isinstance(pads, str) or not isinstance(pads, Sequence) or len(pads) == 0:
        raise ValueError(
            f"{name}={pads!r} must be a non-empty sequence of (lo, hi) pairs, one per spatial "
            f"dimension; resolve padding names with shapes.resolve_padding first."
        )
    pairs = []
    for entry in pads:
        if not (isinstance(entry, Sequence) and len(entry) == 2):
            raise ValueError(f"{name}={pads!r} contains {entry!r}; each entry must be (lo, hi).")
        lo, hi = entry
        ok = all(hasattr(v, "__index__") and not isinstance(v, bool) for v in (lo, hi))
        if not ok or int(lo) < 0 or int(hi) < 0:
            raise ValueError(
                f"{name}={pads!r} contains {entry!r}; amounts must be ints >= 0 "
                f"(crop the input instead of padding negatively)."
            )
        pairs.append((int(lo), int(hi)))
    return tuple(pairs)


def check_pads_fit(
    pads: Sequence[tuple[int, int]],
    in_spatial: Sequence[int],
    mode: str,
    name: str = "pads",
    value=None,
) -> None:
    """Raise ``ValueError`` if ``mode="reflect"`` asks for more than ``W - 1`` per side.

    Reflection mirrors about the edge sample without repeating it, so a dimension of
    size ``W`` has only ``W - 1`` samples to mirror on each side (PyTorch's rule).
    Circular padding may be wider than the input (it wraps again); replicate and zeros
    have no limit. ``name=value`` is what the message shows (default: ``pads``), so a
    caller can show the argument its user passed, e.g. ``padding='SAME'``.
    """
    if mode != "reflect":
        return
    for axis, ((lo, hi), w) in enumerate(zip(pads, in_spatial)):
        if lo > w - 1 or hi > w - 1:
            shown = tuple(pads) if value is None else value
            raise ValueError(
                f"{name}={shown!r} is too wide for padding_mode='reflect' in spatial "
                f"dimension {axis}: the input has size {w}, so reflection allows at most "
                f"{w - 1} per side, got ({lo}, {hi}); use less padding or "
                f"padding_mode='replicate' or 'circular'."
            )


def source_indices(size: int, lo: int, hi: int, mode: str) -> np.ndarray:
    """Index into the unpadded axis for every position of the padded axis."""
    idx = np.arange(-lo, size + hi)
    if mode == "replicate":
        return np.clip(idx, 0, size - 1)
    if mode == "circular":
        return np.mod(idx, size)  # any width: positions wrap as often as needed
    # reflect: mirror about 0 and size - 1 (check_pads_fit keeps |overhang| < size).
    if size == 1:
        return np.zeros_like(idx)
    idx = np.abs(idx)
    return np.where(idx > size - 1, 2 * (size - 1) - idx, idx)


def pad(x, pads, mode: str = "zeros", channels_last: bool = True):
    """Pad the spatial dimensions of ``x``.

    Args:
      x: array of shape ``(N, *spatial, C)`` or ``(*spatial, C)`` when ``channels_last``,
        else ``(N, C, *spatial)`` or ``(C, *spatial)``. The number of spatial
        dimensions is ``len(pads)``; leading batch axes are optional (any number).
      pads: one ``(lo, hi)`` pair of non-negative ints per spatial dimension (use
        ``shapes.resolve_padding`` to turn ``"SAME"`` etc. into pairs).
      mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"`` (see the module
        docstring).
      channels_last: whether the channel axis is last (default) or right after the batch.

    Returns:
      ``x`` with spatial sizes ``W + lo + hi``.

    Raises:
      ValueError: unknown mode, malformed ``pads``, ``x`` with too few dimensions, or
        reflect padding wider than ``W - 1``.

    >>> import jax.numpy as jnp
    >>> pad(jnp.arange(4.0)[:, None], [(2, 2)], "reflect")[:, 0]
    Array([2., 1., 0., 1., 2., 3., 2., 1.], dtype=float32)
    """
    mode = check_padding_mode(mode, "mode")
    pairs = _normalize_pads(pads, "pads")
    n = len(pairs)
    x = jnp.asarray(x)
    if x.ndim < n + 1:
        raise ValueError(
            f"x.shape={tuple(x.shape)} does not fit {n} spatial dimension(s) from pads={pads!r}; "
            f"x needs rank >= {n + 1}: one channel axis, {n} spatial axes and any number of "
            f"leading batch axes."
        )
    axes = spatial_axes(x.ndim, n, channels_last)
    in_spatial = [x.shape[a] for a in axes]
    check_pads_fit(pairs, in_spatial, mode, "pads", pads)
    if mode == "zeros":
        widths = [(0, 0)] * x.ndim
        for a, p in zip(axes, pairs):
            widths[a] = p
        return jnp.pad(x, widths)
    for a, (lo, hi), w in zip(axes, pairs, in_spatial):
        if lo or hi:
            x = jnp.take(x, source_indices(w, lo, hi, mode), axis=a)
    return x


def pad_adjoint(y, pads, mode: str = "zeros", channels_last: bool = True):
    """The adjoint (transpose) of :func:`pad`: fold a padded array back to the input size.

    ``pad`` is linear, ``x -> P x``; this computes ``P^T y``: each padded sample's value is
    added onto the input sample it copies (for ``"zeros"``, padding copies nothing and this
    is a crop). So ``<pad(x), y> == <x, pad_adjoint(y)>`` for every ``x`` and ``y``, and the
    gradient of a padded convolution w.r.t. its input is ``pad_adjoint`` of the gradient
    w.r.t. the padded input; :func:`convjax.functional.conv_transpose` uses it for its
    ``padding_mode``.

    Args:
      y: an array shaped like ``pad``'s result (spatial sizes ``W + lo + hi``), batched or
        unbatched, in either layout.
      pads: the ``(lo, hi)`` pairs given to ``pad``.
      mode, channels_last: as for :func:`pad`.

    Returns:
      ``y`` folded to spatial sizes ``W``.

    >>> import jax.numpy as jnp
    >>> pad_adjoint(jnp.ones((6, 1)), [(2, 0)], "circular")[:, 0]  # 2 copies of the tail
    Array([1., 1., 2., 2.], dtype=float32)
    """
    mode = check_padding_mode(mode, "mode")
    pairs = _normalize_pads(pads, "pads")
    n = len(pairs)
    y = jnp.asarray(y)
    if y.ndim < n + 1:
        raise ValueError(
            f"y.shape={tuple(y.shape)} does not fit {n} spatial dimension(s) from pads={pads!r}; "
            f"y needs rank >= {n + 1}: one channel axis, {n} spatial axes and any number of "
            f"leading batch axes."
        )
    axes = spatial_axes(y.ndim, n, channels_last)
    for a, (lo, hi) in zip(axes, pairs):
        size = y.shape[a] - lo - hi
        if size < 1:
            raise ValueError(
                f"y.shape={tuple(y.shape)} has size {y.shape[a]} on axis {a}, not more than the "
                f"padding ({lo}, {hi}) there; pass the padded array and the pads it was padded "
                f"with."
            )
    in_spatial = [y.shape[a] - lo - hi for a, (lo, hi) in zip(axes, pairs)]
    check_pads_fit(pairs, in_spatial, mode, "pads", pads)
    for a, (lo, hi), w in zip(axes, pairs, in_spatial):
        if not (lo or hi):
            continue
        if mode == "zeros":
            y = jax.lax.slice_in_dim(y, lo, lo + w, axis=a)
            continue
        # Scatter-add: every padded position adds onto its source (repeated sources add up).
        shape = list(y.shape)
        shape[a] = w
        index = (slice(None),) * a + (source_indices(w, lo, hi, mode),)
        y = jnp.zeros(shape, y.dtype).at[index].add(y)
    return y
