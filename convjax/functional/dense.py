"""Fully-connected (dense) layer and flatten.

A dense layer is the matrix multiply of the lectures' "backprop with matrices" slide,
``y = x w + b`` with ``x: [N x D]``, ``w: [D x M]``; here ``x`` may have any number of
leading batch dimensions (or none) and the contraction is one ``lax.dot_general`` over the
last axis of ``x`` and the first axis of ``kernel``.
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from convjax.functional import _checks

__all__ = ["dense", "flatten"]


def _shape(a) -> tuple[int, ...]:
    return tuple(getattr(a, "shape", jnp.shape(a)))


def dense(x, kernel, bias=None, *, precision=None, preferred_element_type=None):
    """Affine map ``x @ kernel + bias`` over the last axis of ``x``.

    Args:
      x: input of shape ``(..., in_features)``; any leading batch dimensions, or none
        (a single vector of shape ``(in_features,)``).
      kernel: weights of shape ``(in_features, out_features)``.
      bias: optional vector of shape ``(out_features,)``.
      precision: passed to ``lax.dot_general`` (e.g. ``lax.Precision.HIGHEST``).
      preferred_element_type: accumulation/output dtype passed to ``lax.dot_general``.

    Returns:
      array of shape ``(..., out_features)``.

    Raises:
      ValueError: when ``kernel`` is not 2-D, ``x`` is 0-D, the feature sizes disagree
        or ``bias`` does not have shape ``(out_features,)``.

    >>> import jax.numpy as jnp
    >>> dense(jnp.ones((2, 3)), jnp.ones((3, 4))).shape
    (2, 4)
    """
    x = _checks.as_array(x, "x", "dense")
    kernel = _checks.as_array(kernel, "kernel", "dense")
    if bias is not None:
        bias = _checks.as_array(bias, "bias", "dense")
    precision = _checks.check_precision(precision, "dense")
    preferred_element_type = _checks.check_element_type(preferred_element_type, "dense")
    x_shape, k_shape = _shape(x), _shape(kernel)
    if len(k_shape) != 2:
        raise ValueError(
            f"kernel.shape={k_shape} must be 2-D (in_features, out_features); "
            f"reshape the kernel or use cf.conv for spatial kernels."
        )
    if len(x_shape) < 1:
        raise ValueError(
            f"x.shape={x_shape} must have at least one axis (..., in_features); "
            f"pass x[None] for a scalar feature."
        )
    if x_shape[-1] != k_shape[0]:
        raise ValueError(
            f"x.shape={x_shape} has {x_shape[-1]} features on its last axis but "
            f"kernel.shape={k_shape} expects {k_shape[0]}; flatten the input "
            f"(cf.flatten) or build the kernel with in_features={x_shape[-1]}."
        )
    if bias is not None and _shape(bias) != (k_shape[1],):
        raise ValueError(
            f"bias.shape={_shape(bias)} must be ({k_shape[1]},) to match "
            f"kernel.shape={k_shape}; give one bias per output feature."
        )
    # Contract x's last axis with kernel's first; no batch dimensions in the dot_general
    # sense, so every leading axis of x is carried through as a free dimension.
    y = lax.dot_general(
        x,
        kernel,
        (((len(x_shape) - 1,), (0,)), ((), ())),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    if bias is not None:
        y = y + jnp.asarray(bias, dtype=y.dtype)
    return y


def flatten(x, start_axis: int = 1):
    """Merge every axis from ``start_axis`` on into one (``torch.flatten`` semantics).

    The default ``start_axis=1`` keeps a leading batch axis: ``(N, H, W, C) -> (N, H*W*C)``.
    For an unbatched input pass ``start_axis=0``: ``(H, W, C) -> (H*W*C,)``. Negative
    values count from the end.

    Args:
      x: array of any rank >= 1.
      start_axis: first axis to merge.

    Returns:
      array of shape ``x.shape[:start_axis] + (prod(x.shape[start_axis:]),)``.

    Raises:
      ValueError: when ``start_axis`` is outside ``[-ndim, ndim)``.
    """
    shape = _shape(x)
    ndim = len(shape)
    if isinstance(start_axis, bool) or not isinstance(start_axis, int):
        raise ValueError(f"start_axis={start_axis!r} must be an int; use e.g. start_axis=1.")
    if ndim == 0:
        raise ValueError(f"x.shape={shape} is 0-D; flatten needs an array with at least one axis.")
    if not -ndim <= start_axis < ndim:
        raise ValueError(
            f"start_axis={start_axis} is out of range for x with {ndim} axes (shape {shape}); "
            f"use a value in [{-ndim}, {ndim - 1}] (1 for batched input, 0 for unbatched)."
        )
    start = start_axis % ndim
    rest = 1
    for s in shape[start:]:
        rest *= s
    return jnp.reshape(x, shape[:start] + (rest,))
