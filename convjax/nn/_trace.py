"""A call recorder that lets ``convjax.inspect`` see every layer a model runs, in call order.

Each ``convjax.nn`` layer ends its ``__call__`` with ``return record(self, x, y)``. Outside
:func:`recording` this returns ``y`` untouched and costs one global lookup. Inside it, every
call appends a :class:`LayerCall` (the module and its input and output shapes), which works
for residual and branched models where definition order is not call order, and under
``jax.eval_shape`` so nothing is computed.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

__all__ = ["LayerCall", "record", "recording"]


@dataclasses.dataclass(frozen=True)
class LayerCall:
    """One layer call: the module object, its input shape and its output shape."""

    module: Any
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: Any


_active: list[list[LayerCall]] = []


def record(module, x, y):
    """Append ``module``'s call to the active recording (if any) and return ``y``."""
    if _active:
        _active[-1].append(LayerCall(module, tuple(x.shape), tuple(y.shape), y.dtype))
    return y


@contextlib.contextmanager
def recording():
    """Collect the :class:`LayerCall` of every layer called inside the block.

    >>> with recording() as calls:
    ...     jax.eval_shape(model, x)  # doctest: +SKIP
    """
    calls: list[LayerCall] = []
    _active.append(calls)
    try:
        yield calls
    finally:
        _active.pop()
