"""``summary(model, input_shape)``: one row per layer call with shapes, parameters, FLOPs,
activation bytes and receptive field, plus totals; and XLA's own FLOP count to check it.

>>> from flax import nnx
>>> import convjax.nn as cnn
>>> net = cnn.Sequential(cnn.Conv(3, 10, (5, 5), padding=2, rngs=nnx.Rngs(0)), cnn.ReLU())
>>> s = summary(net, (32, 32, 3), print_fn=None)
>>> s.rows[0].params, s.rows[0].flops   # 10 * (5*5*3 + 1); 2 * 32*32*10 * 75 + 32*32*10
(760, 1546240)
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.inspect import _tracing
from convjax.inspect.layers import (
    in_bounds_macs,
    layer_flops,
    layer_kind,
    layer_macs,
    own_param_count,
)
from convjax.inspect.receptive_field import FLAT, GLOBAL, ReceptiveField, analytic_fields

__all__ = ["LayerRow", "Summary", "summary", "xla_flops", "param_count"]


@dataclasses.dataclass(frozen=True)
class LayerRow:
    """One layer call.

    Attributes:
      name: module path in the model (``"#2"`` suffix for a shared module's later calls).
      kind: one of :data:`convjax.inspect.layers.KINDS`.
      type: the module's class name.
      input_shape, output_shape: full shapes, batch axis included.
      params: parameter values the module holds (0 on a shared module's later calls).
      macs: multiply-adds (conv, transposed conv, dense; 0 for other known kinds), every
        window tap counted, padding included (the convention of published figures).
      macs_in_bounds: multiply-adds whose tap lies inside the input (what XLA counts).
      flops: FLOPs by the conventions of :mod:`convjax.inspect.layers` (None: unknown kind).
      activation_bytes: bytes of the output (whole batch).
      receptive_field: :class:`ReceptiveField`, ``"global"``, ``"flat"`` or None (unknown).
    """

    name: str
    kind: str
    type: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    macs: int | None
    macs_in_bounds: int | None
    flops: int | None
    activation_bytes: int
    receptive_field: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; the receptive field as ``{"size", "jump", "start"}`` lists."""
        rf = self.receptive_field
        if isinstance(rf, ReceptiveField):
            rf = {"size": list(rf.size), "jump": list(rf.jump), "start": list(rf.start)}
        return {
            "name": self.name,
            "kind": self.kind,
            "type": self.type,
            "input_shape": list(self.input_shape),
            "output_shape": list(self.output_shape),
            "params": self.params,
            "macs": self.macs,
            "macs_in_bounds": self.macs_in_bounds,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "receptive_field": rf,
        }


def _human(n: float | None, unit: str = "") -> str:
    if n is None:
        return "?"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{int(n)}{unit}"


def _human_bytes(n: int) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n} B"


def _rf_text(rf) -> str:
    if isinstance(rf, ReceptiveField):
        fmt = lambda t: "x".join(str(v) for v in t)  # noqa: E731
        return f"{fmt(rf.size)} j{fmt(rf.jump)} s{fmt(rf.start)}"
    if rf == GLOBAL:
        return "whole input"
    if rf == FLAT:
        return "-"
    return "?"


@dataclasses.dataclass(frozen=True)
class Summary:
    """Result of :func:`summary`: rows in call order and totals.

    Attributes:
      rows: one :class:`LayerRow` per layer call.
      input_shape: full input shape (batch included); dtype: its dtype name.
      total_params: parameter values of the whole model (shared modules once).
      param_bytes: their bytes.
      total_macs, total_flops: sums over rows (unknown kinds count 0 and are listed in
        ``unknown``).
      total_macs_in_bounds: multiply-adds whose tap lies inside the input.
      activation_bytes: sum of every row's output bytes (whole batch).
      unknown: names of rows whose FLOPs are unknown.
    """

    rows: tuple[LayerRow, ...]
    input_shape: tuple[int, ...]
    dtype: str
    total_params: int
    param_bytes: int
    total_macs: int
    total_flops: int
    total_macs_in_bounds: int
    activation_bytes: int
    unknown: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of everything (``json.dumps(s.to_dict())`` works)."""
        return {
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "rows": [r.to_dict() for r in self.rows],
            "total_params": self.total_params,
            "param_bytes": self.param_bytes,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "total_macs_in_bounds": self.total_macs_in_bounds,
            "activation_bytes": self.activation_bytes,
            "unknown": list(self.unknown),
        }

    @property
    def total_flops_in_bounds(self) -> int:
        """:attr:`total_flops` with padding taps of convolutions left out (XLA's count)."""
        return self.total_flops - 2 * (self.total_macs - self.total_macs_in_bounds)

    def to_json(self, **kwargs) -> str:
        """``json.dumps`` of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), **kwargs)

    def to_text(self) -> str:
        """The table as text: one line per layer, then totals and the conventions used."""
        header = (
            "Layer",
            "Type",
            "Output shape",
            "Params",
            "FLOPs",
            "Act. bytes",
            "RF size jump start",
        )
        lines = [header]
        for r in self.rows:
            lines.append(
                (
                    r.name,
                    r.type,
                    str(r.output_shape),
                    f"{r.params:,}",
                    _human(r.flops),
                    _human_bytes(r.activation_bytes),
                    _rf_text(r.receptive_field),
                )
            )
        widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
        right = {3, 4, 5}

        def fmt(row):
            cells = [
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths))
            ]
            return "  ".join(cells).rstrip()

        rule = "-" * len(fmt(header))
        out = [f"Input {self.input_shape} {self.dtype}", rule, fmt(header), rule]
        out += [fmt(row) for row in lines[1:]]
        out += [
            rule,
            f"Total params: {self.total_params:,} ({_human_bytes(self.param_bytes)})",
            f"Total FLOPs: {_human(self.total_flops)} ({self.total_flops:,}; "
            f"multiply-adds {_human(self.total_macs)})",
            f"Activations (sum of layer outputs): {_human_bytes(self.activation_bytes)}",
        ]
        if self.unknown:
            out.append(f"FLOPs unknown for: {', '.join(self.unknown)}")
        out.append(
            "FLOPs: 2 per multiply-add, bias adds, pooling compares/adds "
            "(convjax.inspect.layers). RF: size, jump, start per spatial dim "
            "(Araujo et al., Distill 2019)."
        )
        return "\n".join(out)


def param_count(model) -> tuple[int, int]:
    """``(values, bytes)`` of every :class:`flax.nnx.Param` in ``model`` (abstract ok)."""
    _tracing.check_model(model)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    values = sum(math.prod(leaf.shape) for leaf in leaves)
    nbytes = sum(math.prod(leaf.shape) * jnp.dtype(leaf.dtype).itemsize for leaf in leaves)
    return values, nbytes


def summary(
    model,
    input_shape,
    *,
    batch_size: int | None = 1,
    dtype=jnp.float32,
    print_fn=print,
) -> Summary:
    """Summarise every layer call of ``model`` on one batch of ``input_shape``.

    Nothing is computed: the model runs under :func:`jax.eval_shape` (an abstract model from
    :func:`flax.nnx.eval_shape` works too, so VGG-16 needs no 553 MB of weights), and the
    caller's model is not modified.

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers.
      input_shape: one example's shape without the batch axis, e.g. ``(28, 28, 1)``.
      batch_size: batch size of the traced input (FLOPs and activation bytes scale with it);
        None feeds ``input_shape`` as is.
      dtype: input dtype.
      print_fn: called with :meth:`Summary.to_text`; None prints nothing.

    Returns:
      :class:`Summary`.

    Raises:
      ValueError: for a bad ``input_shape`` or ``batch_size``, and when a layer cannot take
        its input (the message names the layer path, its input shape and what does not
        fit: a window larger than the padded input, a wrong channel count, ...).
    """
    calls = _tracing.trace_model(model, input_shape, batch_size=batch_size, dtype=dtype)
    full = _tracing.check_input_shape(input_shape, batch_size)
    fields = analytic_fields(calls, full)
    rows = []
    for call, field in zip(calls, fields):
        kind = layer_kind(call.module)
        rows.append(
            LayerRow(
                name=call.name,
                kind=kind,
                type=type(call.module).__name__,
                input_shape=call.input_shape,
                output_shape=call.output_shape,
                params=own_param_count(call.module) if call.first_call else 0,
                macs=layer_macs(kind, call.module, call.input_shape, call.output_shape),
                macs_in_bounds=in_bounds_macs(
                    kind, call.module, call.input_shape, call.output_shape
                ),
                flops=layer_flops(kind, call.module, call.input_shape, call.output_shape),
                activation_bytes=math.prod(call.output_shape) * jnp.dtype(call.dtype).itemsize,
                receptive_field=field,
            )
        )
    total_params, param_bytes = param_count(model)
    result = Summary(
        rows=tuple(rows),
        input_shape=full,
        dtype=jnp.dtype(dtype).name,
        total_params=total_params,
        param_bytes=param_bytes,
        total_macs=sum(r.macs or 0 for r in rows),
        total_flops=sum(r.flops or 0 for r in rows),
        total_macs_in_bounds=sum(r.macs_in_bounds or 0 for r in rows),
        activation_bytes=sum(r.activation_bytes for r in rows),
        unknown=tuple(r.name for r in rows if r.flops is None),
    )
    if print_fn is not None:
        print_fn(result.to_text())
    return result


def xla_flops(model, input_shape, *, batch_size: int | None = 1, dtype=jnp.float32) -> float:
    """FLOPs XLA's cost analysis counts for the compiled forward pass of ``model``.

    Compiles ``model(x)`` for the shapes only (abstract models work; nothing runs) and
    returns ``compiled.cost_analysis()["flops"]``. XLA counts 2 per multiply-add and 1 per
    elementwise op, like :func:`summary`, but unfused batch norm and transcendentals differ
    (see :mod:`convjax.inspect.layers`); compare within a tolerance.
    """
    _tracing.check_model(model)
    full = _tracing.check_input_shape(input_shape, batch_size)
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    state_struct = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), state)
    x_struct = jax.ShapeDtypeStruct(full, jnp.dtype(dtype))
    compiled = jax.jit(forward).lower(state_struct, x_struct).compile()
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax returned one dict per device
        cost = cost[0]
    return float(cost["flops"])
