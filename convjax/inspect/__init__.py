"""Layer 5: look inside a model: shapes, parameters, FLOPs, memory and receptive fields
without running it; activations, effective receptive fields, saliency, Grad-CAM and loss
landscapes by running a copy of it.

Typical use::

    import convjax.inspect as ci
    s = ci.summary(model, (28, 28, 1))                  # prints the table, returns data
    ci.memory_estimate(model, (28, 28, 1), 128, "adam").total
    ci.empirical_receptive_field(model, (64, 64, 3), layer="features.layers.4")
    ci.activations(model, images, ["features.layers.2"])   # {name: (N, H, W, C)}
    ci.grad_cam(model, images, "features.layers.12").heatmap

Modules: :mod:`~convjax.inspect.summary` (the table and XLA's FLOP count),
:mod:`~convjax.inspect.layers` (per-layer FLOP conventions),
:mod:`~convjax.inspect.receptive_field` (analytic and empirical fields),
:mod:`~convjax.inspect.memory` (training-step memory as the CS231n notes count it),
:mod:`~convjax.inspect.capture` (named layer outputs and perturbations of any model),
:mod:`~convjax.inspect.effective_field` (Luo et al.'s effective receptive field),
:mod:`~convjax.inspect.explain` (saliency, SmoothGrad, Grad-CAM),
:mod:`~convjax.inspect.landscape` (Li et al.'s filter-normalised loss slices),
:mod:`~convjax.inspect.figures` (matplotlib figures of all of these).
"""

from convjax.inspect import figures
from convjax.inspect._tracing import NamedCall, trace_model
from convjax.inspect.capture import activations, forward, layer_names
from convjax.inspect.effective_field import EffectiveReceptiveField, effective_receptive_field
from convjax.inspect.explain import GradCAM, Saliency, grad_cam, saliency
from convjax.inspect.landscape import LossLandscape, filter_normalized_direction, loss_landscape
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
    "activations",
    "forward",
    "layer_names",
    "EffectiveReceptiveField",
    "effective_receptive_field",
    "GradCAM",
    "Saliency",
    "grad_cam",
    "saliency",
    "LossLandscape",
    "filter_normalized_direction",
    "loss_landscape",
    "figures",
]
