"""Activation layers: one module per :mod:`convjax.functional` activation.

They hold no parameters. They exist so that a model written as a list of layers
(``Sequential``, the ``CONV-RELU-POOL`` pattern) shows every activation as a row in
``convjax.inspect.summary``, as the CS231n notes' layer tables do.
"""

from __future__ import annotations

from flax import nnx

import convjax.functional as cf
from convjax.functional import _checks as fchecks
from convjax.nn import _trace

__all__ = ["ReLU", "LeakyReLU", "ELU", "GELU", "Sigmoid", "Tanh", "activation"]


class ReLU(nnx.Module):
    """``max(x, 0)`` (:func:`convjax.functional.relu`); any shape."""

    def __call__(self, x):
        return _trace.record(self, x, cf.relu(x))


class LeakyReLU(nnx.Module):
    """``x`` if ``x > 0`` else ``negative_slope * x``; any shape."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = fchecks.check_number(
            negative_slope,
            "negative_slope",
            "LeakyReLU",
            allow_traced=False,
            hint="PyTorch's default is 0.01.",
        )

    def __call__(self, x):
        return _trace.record(self, x, cf.leaky_relu(x, negative_slope=self.negative_slope))


class ELU(nnx.Module):
    """``x`` if ``x > 0`` else ``alpha * (exp(x) - 1)``; any shape."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = fchecks.check_number(
            alpha, "alpha", "ELU", allow_traced=False, hint="The usual value is 1.0."
        )

    def __call__(self, x):
        return _trace.record(self, x, cf.elu(x, alpha=self.alpha))


class GELU(nnx.Module):
    """Gaussian error linear unit (``approximate=True``: the tanh form); any shape."""

    def __init__(self, approximate: bool = False):
        if not isinstance(approximate, bool):
            raise ValueError(
                f"GELU: approximate={approximate!r} must be True (tanh form) or False (exact)."
            )
        self.approximate = approximate

    def __call__(self, x):
        return _trace.record(self, x, cf.gelu(x, approximate=self.approximate))


class Sigmoid(nnx.Module):
    """Logistic sigmoid; any shape."""

    def __call__(self, x):
        return _trace.record(self, x, cf.sigmoid(x))


class Tanh(nnx.Module):
    """Hyperbolic tangent; any shape."""

    def __call__(self, x):
        return _trace.record(self, x, cf.tanh(x))


_BY_NAME = {
    "relu": ReLU,
    "leaky_relu": LeakyReLU,
    "elu": ELU,
    "gelu": GELU,
    "sigmoid": Sigmoid,
    "tanh": Tanh,
}


def activation(name: str) -> nnx.Module:
    """A fresh activation layer from its functional name (``"relu"``, ``"tanh"``, ...).

    Models take an ``activation=`` knob as a string so a config can sweep it.
    """
    if not isinstance(name, str) or name not in _BY_NAME:
        raise ValueError(
            f"activation={name!r} is not known; use one of {', '.join(map(repr, _BY_NAME))}."
        )
    return _BY_NAME[name]()
