"""Element-wise activations and the (log-)softmax, written to be numerically stable.

Every function keeps the input's shape and dtype and works on batched or unbatched input.
Derivatives at kinks follow the usual convention: ``relu'(0) = 0``, ``leaky_relu'(0) =
negative_slope``, ``elu'(0) = alpha`` (the left-hand derivative at every kink).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from convjax.functional import _checks

__all__ = [
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
]


def _check_axis(axis, ndim: int, fn: str) -> int:
    if isinstance(axis, bool) or not isinstance(axis, int):
        raise ValueError(f"axis={axis!r} must be an int for {fn}; use e.g. axis=-1.")
    if ndim == 0:
        raise ValueError(f"{fn} needs an input with at least one axis; got a 0-D array.")
    if not -ndim <= axis < ndim:
        raise ValueError(
            f"axis={axis} is out of range for {fn} of an input with {ndim} axes; "
            f"use a value in [{-ndim}, {ndim - 1}] (usually -1, the class axis)."
        )
    return axis % ndim


def relu(x):
    """``max(x, 0)``; the derivative at 0 is taken as 0 (as in PyTorch and ``jax.nn``)."""
    x = _checks.as_array(x, "x", "relu")
    # jnp.where rather than jnp.maximum: maximum splits the gradient 0.5/0.5 at a tie.
    return jnp.where(x > 0, x, jnp.zeros_like(x))


def leaky_relu(x, negative_slope: float = 0.01):
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise (PyTorch's default slope 0.01)."""
    x = _checks.as_array(x, "x", "leaky_relu")
    negative_slope = _checks.check_number(
        negative_slope, "negative_slope", "leaky_relu", hint="PyTorch's default is 0.01."
    )
    return jnp.where(x > 0, x, negative_slope * x)


def elu(x, alpha: float = 1.0):
    """``x`` for ``x > 0``, ``alpha * (exp(x) - 1)`` otherwise.

    ``expm1`` keeps precision for small ``|x|``; the ``exp`` branch is evaluated on
    ``x`` clipped to ``<= 0`` so large positive inputs never overflow and give NaN gradients through
    the unused branch of ``where``.
    """
    x = _checks.as_array(x, "x", "elu")
    alpha = _checks.check_number(alpha, "alpha", "elu", hint="The usual value is 1.0.")
    # where, not minimum: minimum splits the gradient 0.5/0.5 at x == 0.
    negative = alpha * jnp.expm1(jnp.where(x > 0, jnp.zeros_like(x), x))
    return jnp.where(x > 0, x, negative)


def gelu(x, approximate: bool = False):
    """Gaussian error linear unit ``x * Phi(x)``.

    Args:
      x: input array.
      approximate: ``False`` (default, as PyTorch's ``approximate="none"``) uses the exact
        ``0.5 x (1 + erf(x / sqrt 2))``; ``True`` uses the tanh approximation
        ``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`` (PyTorch's ``"tanh"``).
        Note that ``jax.nn.gelu`` defaults to the approximation.
    """
    if not isinstance(approximate, bool):
        raise ValueError(
            f"approximate={approximate!r} must be a bool: False for the exact erf form, "
            f"True for the tanh approximation."
        )
    x = _checks.as_array(x, "x", "gelu")
    if approximate:
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + jnp.tanh(c * (x + 0.044715 * x**3)))
    return 0.5 * x * (1.0 + lax.erf(x / math.sqrt(2.0)))


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))`` (``lax.logistic``: no overflow for large |x|)."""
    return jax.nn.sigmoid(_checks.as_array(x, "x", "sigmoid"))


def tanh(x):
    """Hyperbolic tangent."""
    return jnp.tanh(_checks.as_array(x, "x", "tanh"))


def softmax(x, axis: int = -1):
    """``exp(x_i) / sum_j exp(x_j)`` along ``axis``.

    The maximum along ``axis`` is subtracted first so ``exp`` never overflows (inputs of
    1e4 are fine); the shift does not change the result, so it is treated as a constant
    (``stop_gradient``), which keeps the gradient exact.

    Args:
      x: input array, e.g. logits of shape ``(..., classes)``.
      axis: the axis that sums to one.
    """
    x = _checks.as_array(x, "x", "softmax")
    axis = _check_axis(axis, x.ndim, "softmax")
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    e = jnp.exp(shifted)
    return e / jnp.sum(e, axis=axis, keepdims=True)


def log_softmax(x, axis: int = -1):
    """``x_i - log sum_j exp(x_j)`` along ``axis``, computed without overflow or underflow.

    Written as ``shifted - log(sum(exp(shifted)))`` with ``shifted = x - max(x)``: the sum
    is at least 1, so its log is finite and a very negative logit gives a large negative
    log-probability instead of ``log(0) = -inf``.
    """
    x = _checks.as_array(x, "x", "log_softmax")
    axis = _check_axis(axis, x.ndim, "log_softmax")
    shifted = x - lax.stop_gradient(jnp.max(x, axis=axis, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=axis, keepdims=True))
