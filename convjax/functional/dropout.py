"""Dropout as a pure function of an explicit key: :func:`dropout`.

Inverted dropout (Srivastava et al. 2014, as the CS231n notes and every framework implement
it): in training each unit is kept with probability ``1 - rate`` and scaled by
``1 / (1 - rate)``, so the expected activation is unchanged and evaluation is the identity.
:class:`convjax.nn.Dropout` draws a key per call from its stream and calls :func:`dropout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from convjax.functional import _checks

__all__ = ["dropout", "check_rate"]


def check_rate(rate, fn: str = "dropout"):
    """A drop rate: a Python number in ``[0, 1)`` (checked), or a scalar array, which may be
    traced (a population's per-member rate; not range-checked, the caller owns it)."""
    if isinstance(rate, jax.core.Tracer) or (
        hasattr(rate, "shape") and hasattr(rate, "dtype") and not isinstance(rate, bool)
    ):
        if jnp.ndim(rate) != 0:
            raise ValueError(
                f"{fn}: rate has shape {jnp.shape(rate)}; pass one scalar rate (vmap a "
                "population over its members instead)."
            )
        if isinstance(rate, jax.core.Tracer):
            return rate
        rate = float(rate)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
        raise ValueError(
            f"{fn}: rate={rate!r} must be a float in [0, 1); use 0 to disable dropout."
        )
    return float(rate)


def dropout(x, rate, key, *, broadcast_dims: Sequence[int] = ()):
    """Zero each element of ``x`` with probability ``rate``; scale the rest by ``1/(1-rate)``.

    Args:
      x: array of any shape.
      rate: drop probability in ``[0, 1)``: a Python number (checked), or a scalar array, which
        may be traced (a population's per-member rate; not range-checked, the caller owns it).
      key: a ``jax.random`` key; the same key gives the same mask.
      broadcast_dims: axes along which the mask is shared (e.g. the spatial axes
        ``(1, 2)`` of an NHWC input drop whole feature maps: "spatial dropout").

    Returns:
      array of ``x``'s shape and dtype.

    >>> import jax, jax.numpy as jnp
    >>> y = dropout(jnp.ones(4), 0.5, jax.random.key(0))
    >>> sorted(set(y.tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """
    x = _checks.as_array(x, "x", "dropout")
    rate = check_rate(rate, "dropout")
    if not isinstance(rate, jax.core.Tracer) and rate == 0.0:
        return x
    if not hasattr(key, "dtype"):
        raise ValueError(f"dropout: key={key!r} must be a jax.random key, e.g. jax.random.key(0).")
    mask_shape = list(x.shape)
    for d in broadcast_dims:
        if isinstance(d, bool) or not isinstance(d, int) or not -x.ndim <= d < x.ndim:
            raise ValueError(
                f"dropout: broadcast_dims={tuple(broadcast_dims)!r} contains {d!r}, outside the "
                f"{x.ndim} axes of x (shape {tuple(x.shape)}); use axes in [{-x.ndim}, "
                f"{x.ndim - 1}]."
            )
        mask_shape[d] = 1
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, tuple(mask_shape))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))
