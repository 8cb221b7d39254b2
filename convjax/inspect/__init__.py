"""Layer 5: look inside a model without running it: shapes, parameters, FLOPs, memory and
receptive fields.

Typical use::

    import convjax.inspect as ci
    s = ci.summary(model, (28, 28, 1))                  # prints the table, returns data
    ci.memory_estimate(model, (28, 28, 1), 128, "adam").total
    ci.empirical_receptive_field(model, (64, 64, 3), layer="features.layers.4")

Modules: :mod:`~convjax.inspect.summary` (the table and XLA's FLOP count),
:mod:`~convjax.inspect.layers` (per-layer FLOP conventions),
:mod:`~convjax.inspect.receptive_field` (analytic and empirical fields),
:mod:`~convjax.inspect.memory` (training-step memory as the CS231n notes count it).
"""

from convjax.inspect._tracing import NamedCall, trace_model
from convjax.inspect.layers import KINDS, layer_kind
from convjax.inspect.memory import OPTIMIZER_SLOTS, MemoryEstimate, memory_estimate
from convjax.inspect.receptive_field import (
    FLAT,
    GLOBAL,
    EmpiricalReceptiveField,
    ReceptiveField,
    analytic_fields,
    empirical_receptive_field,
    receptive_field_chain,
)
from convjax.inspect.summary import LayerRow, Summary, param_count, summary, xla_flops

__all__ = [
    "KINDS",
    "layer_kind",
    "OPTIMIZER_SLOTS",
    "MemoryEstimate",
    "memory_estimate",
    "FLAT",
    "GLOBAL",
    "EmpiricalReceptiveField",
    "ReceptiveField",
    "analytic_fields",
    "empirical_receptive_field",
    "receptive_field_chain",
    "LayerRow",
    "Summary",
    "param_count",
    "summary",
    "xla_flops",
    "NamedCall",
    "trace_model",
]
