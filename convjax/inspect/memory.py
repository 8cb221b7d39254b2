"""``memory_estimate``: bytes a training step needs, counted the way the CS231n notes count them.

The CS231n notes' "Computational Considerations" list three sources of memory:

* activations: every intermediate volume is kept for backpropagation, and its gradient is
  of equal size;
* parameters, their gradients, and the optimizer's step cache (momentum, Adagrad and
  RMSProp keep one value per parameter, Adam two), so parameters cost "at least 3 or so"
  times their own size;
* miscellaneous memory such as the input batch.

Values times bytes per value (4 for float32) gives bytes. Activations counted here are the
input batch plus the output of every layer call, except the layers frameworks apply in
place or as a view (activations, dropout, flatten): the per-layer count of the classic
VGG-16 walk-through (input, every CONV, POOL and FC output; ReLU in place). For VGG-16 at
224x224x3 that is 15,237,608 values, about 58 MiB per image for the forward pass (the
walk-through's own list sums to this too, although its total line says "24M ~ 93MB").
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp

from convjax.inspect import _tracing
from convjax.inspect.layers import layer_kind
from convjax.inspect.summary import param_count

__all__ = ["MemoryEstimate", "memory_estimate", "OPTIMIZER_SLOTS"]

#: Values per parameter each optimizer keeps besides the parameter and its gradient.
OPTIMIZER_SLOTS = {
    "sgd": 0,
    "momentum": 1,
    "nesterov": 1,
    "adagrad": 1,
    "rmsprop": 1,
    "adam": 2,
    "adamw": 2,
}

#: Layer kinds whose output a framework may write in place (or is a view): not counted.
IN_PLACE_KINDS = ("activation", "dropout", "flatten")


@dataclasses.dataclass(frozen=True)
class MemoryEstimate:
    """Bytes of one training step (see the module docstring for what is counted).

    Attributes:
      batch_size: examples per step.
      param_count: parameter values.
      activation_count: activation values kept for backprop (whole batch, input included).
      optimizer_slots: values per parameter the optimizer keeps.
      parameters, gradients, optimizer_state, activations, activation_gradients: bytes.
      total: sum of the five.
    """

    batch_size: int
    param_count: int
    activation_count: int
    optimizer_slots: int
    parameters: int
    gradients: int
    optimizer_state: int
    activations: int
    activation_gradients: int
    total: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return dataclasses.asdict(self)

    def to_text(self) -> str:
        """A few lines in MiB."""
        mib = lambda b: f"{b / 2**20:,.2f} MiB"  # noqa: E731
        return "\n".join(
            [
                f"batch size {self.batch_size}, optimizer slots {self.optimizer_slots}",
                f"parameters          {mib(self.parameters)} ({self.param_count:,} values)",
                f"gradients           {mib(self.gradients)}",
                f"optimizer state     {mib(self.optimizer_state)}",
                f"activations         {mib(self.activations)} ({self.activation_count:,} values)",
                f"activation grads    {mib(self.activation_gradients)}",
                f"total               {mib(self.total)}",
            ]
        )


def _slots(optimizer) -> int:
    if isinstance(optimizer, bool):
        raise ValueError(f"optimizer={optimizer!r} must be a name or an int, not a bool.")
    if isinstance(optimizer, int):
        if optimizer < 0:
            raise ValueError(
                f"optimizer={optimizer} slots must be >= 0 (values kept per parameter)."
            )
        return optimizer
    if isinstance(optimizer, str) and optimizer.lower() in OPTIMIZER_SLOTS:
        return OPTIMIZER_SLOTS[optimizer.lower()]
    raise ValueError(
        f"optimizer={optimizer!r} is not known; use one of "
        f"{', '.join(map(repr, OPTIMIZER_SLOTS))} or an int number of slots per parameter."
    )


def memory_estimate(
    model,
    input_shape,
    batch_size: int = 1,
    optimizer: str | int = "sgd",
    *,
    dtype=jnp.float32,
) -> MemoryEstimate:
    """Memory of a training step of ``model`` on batches of ``input_shape``.

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers (abstract ok).
      input_shape: one example's shape without the batch axis.
      batch_size: examples per step.
      optimizer: ``"sgd"`` (0 slots), ``"momentum"``/``"nesterov"``/``"adagrad"``/
        ``"rmsprop"`` (1), ``"adam"``/``"adamw"`` (2), or an int number of slots.
      dtype: activation dtype (bytes per activation value); parameters use their own.

    Returns:
      :class:`MemoryEstimate` in bytes.
    """
    slots = _slots(optimizer)
    calls = _tracing.trace_model(model, input_shape, batch_size=batch_size, dtype=dtype)
    full = _tracing.check_input_shape(input_shape, batch_size)
    n_params, param_bytes = param_count(model)
    act_values = math.prod(full)
    act_bytes = act_values * jnp.dtype(dtype).itemsize
    for call in calls:
        if layer_kind(call.module) in IN_PLACE_KINDS:
            continue
        size = math.prod(call.output_shape)
        act_values += size
        act_bytes += size * jnp.dtype(call.dtype).itemsize
    total = param_bytes * (2 + slots) + 2 * act_bytes
    return MemoryEstimate(
        batch_size=batch_size,
        param_count=n_params,
        activation_count=act_values,
        optimizer_slots=slots,
        parameters=param_bytes,
        gradients=param_bytes,
        optimizer_state=param_bytes * slots,
        activations=act_bytes,
        activation_gradients=act_bytes,
        total=total,
    )
