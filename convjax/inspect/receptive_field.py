"""Receptive fields two ways: analytic recurrences for chains, an empirical gradient probe.

Analytic (Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural
Networks", Distill 2019). Per spatial dimension a feature map carries three numbers:

* ``size`` r: how many input pixels one unit sees (its extent, holes of dilation included);
* ``jump`` j: the input distance between two neighbouring units (Distill's effective stride);
* ``start``: the input coordinate of the first pixel seen by unit 0; negative when it lies in
  the padding (``-start`` is Distill's effective padding).

A layer with window F, stride S, low padding P and dilation D (``F_eff = D (F - 1) + 1``)
maps ``(r, j, start)`` to ``(r + (F_eff - 1) j,  j S,  start - P j)``; the input is
``(1, 1, 0)``. Unit ``i`` then sees input pixels ``start + i j ... start + i j + r - 1``.
These recurrences unroll to Distill's closed forms ``r = 1 + sum_l (F_l - 1) prod_{i<l} S_i``
and ``P = sum_l P_l prod_{i<l} S_i`` (checked in the tests).

For a model, :func:`analytic_fields` walks the recorded layer calls. Layers do not say which
tensor they read, so a call's input field is looked up by the input's shape among the
tensors seen so far, and a field stored under a shape that appears again is merged (union
of the two input regions, same jump). This is exact for chains; for residual and branched
nets, where branches of one shape are added or concatenated, the union is what the merged
tensor sees (ResNet's shortcut lies inside its main path's field). A consumer that reads an
older, smaller tensor of a shape seen again would be over-estimated; the empirical probe
below is the check for such models.

Empirical (any network): the input pixels with a non-zero gradient of one output unit.
Cancellation could hide pixels, so the probe runs on a copy of the model in float64 with
every kernel set to the positive averaging constant ``1 / (prod F * C_in / groups)`` (dense:
``1 / in_features``), biases 0, batch-norm scales 1 and statistics mean 0, var 1, in
evaluation mode (batch statistics would spread every pixel over the whole image), on an
input of ones. Every pre-activation is then positive and near 1, so ReLU passes the
gradient everywhere and tanh/sigmoid do not saturate; the gradient of the farthest pixel
shrinks by about ``1 / prod F`` per layer (``9**-50`` after fifty 3x3 layers), far inside
float64's range. Max and min pooling send the gradient to ONE element of each window (the
first maximum), which would hide the rest of the window; the probe swaps them for the mean
over the same windows (same dependence pattern, gradient to every tap), adaptive max for
adaptive average and global max for global average pooling.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import convjax.functional as cf
from convjax.functional.shapes import effective_kernel_size, normalize_tuple, spatial_axes
from convjax.inspect import _tracing
from convjax.inspect.layers import layer_kind, spatial_geometry

__all__ = [
    "ReceptiveField",
    "GLOBAL",
    "FLAT",
    "receptive_field_chain",
    "analytic_fields",
    "EmpiricalReceptiveField",
    "empirical_receptive_field",
]

#: Field of a unit that depends on the whole input (after a dense layer on flattened
#: features, or a global pool).
GLOBAL = "global"
#: Field of a flattened tensor: no spatial axes left.
FLAT = "flat"


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """Analytic receptive field of a feature map, one entry per spatial dimension.

    Attributes:
      size: extent r of one unit's field in input pixels.
      jump: input distance j between neighbouring units (effective stride).
      start: input coordinate of the first pixel of unit 0's field (``-start`` is the
        effective padding).
    """

    size: tuple[int, ...]
    jump: tuple[int, ...]
    start: tuple[int, ...]

    @classmethod
    def identity(cls, n: int) -> ReceptiveField:
        """The input itself: every pixel sees itself."""
        return cls((1,) * n, (1,) * n, (0,) * n)

    @property
    def effective_padding(self) -> tuple[int, ...]:
        """Distill's effective padding ``-start``."""
        return tuple(-s for s in self.start)

    def step(self, kernel, stride, pad_lo, dilation=1) -> ReceptiveField:
        """The field after one more layer (window, stride, low padding, dilation)."""
        n = len(self.size)
        kernel = normalize_tuple(kernel, n, "kernel_size")
        stride = normalize_tuple(stride, n, "stride")
        pad_lo = normalize_tuple(pad_lo, n, "padding", minimum=0)
        dilation = normalize_tuple(dilation, n, "dilation")
        size, jump, start = [], [], []
        for r, j, s0, f, s, p, d in zip(
            self.size, self.jump, self.start, kernel, stride, pad_lo, dilation
        ):
            size.append(r + (effective_kernel_size(f, d) - 1) * j)
            jump.append(j * s)
            start.append(s0 - p * j)
        return ReceptiveField(tuple(size), tuple(jump), tuple(start))

    def region(self, unit: Sequence[int]) -> tuple[tuple[int, int], ...]:
        """Inclusive ``(first, last)`` input pixel seen by output unit ``unit`` per dimension."""
        return tuple(
            (s + i * j, s + i * j + r - 1)
            for s, i, j, r in zip(self.start, unit, self.jump, self.size)
        )

    def union(self, other: ReceptiveField) -> ReceptiveField | None:
        """Field of a tensor that merges two same-shape tensors; None if jumps differ."""
        if other.jump != self.jump:
            return None
        start = tuple(min(a, b) for a, b in zip(self.start, other.start))
        end = tuple(
            max(a + r - 1, b + q - 1)
            for a, r, b, q in zip(self.start, self.size, other.start, other.size)
        )
        return ReceptiveField(tuple(e - s + 1 for s, e in zip(start, end)), self.jump, start)


def receptive_field_chain(layers, num_spatial_dims: int = 2) -> list[ReceptiveField]:
    """Fields after each layer of a chain, from the layers' hyperparameters alone.

    Args:
      layers: sequence of ``(kernel_size, stride, padding_lo)`` or
        ``(kernel_size, stride, padding_lo, dilation)``; each entry an int or one int per
        spatial dimension. ``padding_lo`` is the padding before the input (the one that
        shifts ``start``); for symmetric padding it is just ``P``.
      num_spatial_dims: spatial dimensions (2 for images).

    Returns:
      one :class:`ReceptiveField` per layer.

    >>> alexnet = [(11, 4, 0), (3, 2, 0), (5, 1, 2), (3, 2, 0), (3, 1, 1), (3, 1, 1),
    ...            (3, 1, 1), (3, 2, 0)]
    >>> receptive_field_chain(alexnet)[-1].size   # pool5, Distill 2019: 195
    (195, 195)
    """
    field = ReceptiveField.identity(num_spatial_dims)
    out = []
    for i, spec in enumerate(layers):
        if not isinstance(spec, Sequence) or len(spec) not in (3, 4):
            raise ValueError(
                f"layers[{i}]={spec!r} must be (kernel_size, stride, padding_lo) or "
                f"(kernel_size, stride, padding_lo, dilation)."
            )
        field = field.step(*spec)
        out.append(field)
    return out


def _geometry_step(field, module, in_shape):
    g = spatial_geometry(module, in_shape)
    if len(field.size) != g["n"]:
        return None
    return field.step(g["kernel"], g["stride"], tuple(p[0] for p in g["pads"]), g["dilation"])


def _adaptive_step(field, module, in_shape, out_shape):
    channels_last = getattr(module, "channels_last", True)
    n = len(field.size)
    axes = spatial_axes(len(in_shape), n, channels_last)
    ins = [in_shape[a] for a in axes]
    outs = [out_shape[a] for a in axes]
    if all(o == 1 for o in outs):
        return GLOBAL
    if any(i % o for i, o in zip(ins, outs)):
        return None  # uneven bins: windows of two sizes, no single (r, j, start)
    k = tuple(i // o for i, o in zip(ins, outs))
    return field.step(k, k, 0, 1)


def _call_field(call, field):
    """Field of a call's output given its input's field (or None/GLOBAL/FLAT)."""
    kind = layer_kind(call.module)
    if field == GLOBAL:
        return GLOBAL
    if kind in ("batch_norm", "activation", "dropout"):
        return field
    if kind == "flatten":
        return FLAT if field is not None else None
    if kind == "dense":
        if len(call.input_shape) > 2 and isinstance(field, ReceptiveField):
            return field  # applied per position over the channel axis, like a 1x1 conv
        return GLOBAL if field == FLAT else None
    if kind in ("global_avg_pool", "global_max_pool"):
        return GLOBAL if isinstance(field, ReceptiveField) else None
    if not isinstance(field, ReceptiveField):
        return None
    if kind in ("conv", "max_pool", "min_pool", "sum_pool", "avg_pool", "lp_pool"):
        return _geometry_step(field, call.module, call.input_shape)
    if kind in ("adaptive_avg_pool", "adaptive_max_pool"):
        return _adaptive_step(field, call.module, call.input_shape, call.output_shape)
    return None  # transposed conv (fractional jump) and unknown layers


def analytic_fields(calls, input_shape, num_spatial_dims: int | None = None) -> list[Any]:
    """Analytic field of each recorded call's output (see the module docstring).

    Args:
      calls: :class:`convjax.inspect._tracing.NamedCall` list in call order.
      input_shape: the model input's full shape (batch included).
      num_spatial_dims: defaults to ``len(input_shape) - 2`` (batch and channel axes).

    Returns:
      per call a :class:`ReceptiveField`, :data:`GLOBAL`, :data:`FLAT`, or None (unknown:
      a transposed conv, uneven adaptive bins, a layer of unknown kind, or an input that
      is no tensor seen before).
    """
    n = num_spatial_dims if num_spatial_dims is not None else max(len(input_shape) - 2, 1)
    by_shape: dict[tuple[int, ...], Any] = {tuple(input_shape): ReceptiveField.identity(n)}
    out = []
    for call in calls:
        field = _call_field(call, by_shape.get(tuple(call.input_shape)))
        out.append(field)
        old = by_shape.get(tuple(call.output_shape))
        if isinstance(old, ReceptiveField) and isinstance(field, ReceptiveField):
            merged = old.union(field)
            by_shape[tuple(call.output_shape)] = merged if merged is not None else field
        elif old == GLOBAL and field is not None:
            by_shape[tuple(call.output_shape)] = GLOBAL
        else:
            by_shape[tuple(call.output_shape)] = field
    return out


# ----------------------------------------------------------------------------- empirical


@dataclasses.dataclass(frozen=True)
class EmpiricalReceptiveField:
    """Input region with a non-zero gradient from one output unit.

    Attributes:
      layer: name of the probed layer (``"(output)"`` for the model output).
      unit: spatial index of the probed unit (``()`` for a non-spatial output).
      region: inclusive ``(first, last)`` input pixel per spatial dimension (bounding box).
      size: ``last - first + 1`` per dimension.
      mask: boolean array of the input's spatial shape, True where the gradient is non-zero
        (a dilated field has holes; ``region`` is its bounding box).
      clipped: per dimension, True when the region touches the input's border, so the
        true field may extend past the image.
    """

    layer: str
    unit: tuple[int, ...]
    region: tuple[tuple[int, int], ...]
    size: tuple[int, ...]
    mask: np.ndarray
    clipped: tuple[bool, ...]


def _leaf_name(path) -> str:
    last = path[-1]
    return str(getattr(last, "key", getattr(last, "name", last)))


def _probe_dtype(dtype):
    return np.float64 if jnp.issubdtype(dtype, jnp.floating) else dtype


def _positive_params(path, leaf):
    # Reasons in the module docstring: positive averaging kernels, zero biases, unit scales.
    # Filled with NumPy: a jnp fill per new shape would compile one XLA program each.
    shape, dtype = leaf.shape, _probe_dtype(leaf.dtype)
    if _leaf_name(path) == "bias":
        return np.zeros(shape, dtype)
    if len(shape) >= 2:
        return np.full(shape, 1.0 / math.prod(shape[:-1]), dtype)
    return np.ones(shape, dtype)


def _neutral_stats(path, leaf):
    fill = np.ones if _leaf_name(path) == "var" else np.zeros
    return fill(leaf.shape, _probe_dtype(leaf.dtype))


def _concrete(leaf):
    # Other state of an abstract model (nnx.eval_shape): RNG keys and counters of dropout
    # layers, unused in evaluation mode; give them values so the probe can run.
    if not isinstance(leaf, jax.ShapeDtypeStruct):
        return leaf
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        keys = jax.random.split(jax.random.key(0), max(math.prod(leaf.shape), 1))
        return keys[0] if leaf.shape == () else keys.reshape(leaf.shape)
    return np.zeros(leaf.shape, leaf.dtype)


def _probe_copy(model):
    """A copy of ``model`` with positive constant weights, neutral statistics, eval mode.

    Works for abstract models too (``nnx.eval_shape``): every value is set from shapes.
    """
    graphdef, params, stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    params = jax.tree_util.tree_map_with_path(_positive_params, params)
    stats = jax.tree_util.tree_map_with_path(_neutral_stats, stats)
    rest = jax.tree.map(_concrete, rest)
    probe = nnx.merge(graphdef, params, stats, rest)
    probe.eval()
    return probe


def _sum_pool_like(module, x, y):
    """Average (sum / window size) over exactly the windows of a max/min pooling call."""
    g = spatial_geometry(module, tuple(x.shape))
    out = cf.sum_pool(
        x,
        g["kernel"],
        g["stride"],
        g["pads"],
        dilation=g["dilation"],
        ceil_mode=getattr(module, "ceil_mode", False),
        padding_mode=getattr(module, "padding_mode", "zeros"),  # reflected samples are pixels
        channels_last=g["channels_last"],
    )
    if out.shape != y.shape:  # pragma: no cover - a pooling layer outside the contract
        raise RuntimeError(
            f"cannot mirror {type(module).__name__} with sum pooling: shape {out.shape} "
            f"!= {y.shape}."
        )
    return out / math.prod(g["kernel"])  # a window mean keeps activations near 1


def _dependence_preserving(module, x, y):
    """Replace argmax-style pooling by a pooling with the same windows and dense gradient."""
    kind = layer_kind(module)
    if kind in ("max_pool", "min_pool"):
        return _sum_pool_like(module, x, y)
    if kind == "adaptive_max_pool":
        n = len(module.output_size) if isinstance(module.output_size, (tuple, list)) else None
        out = cf.adaptive_avg_pool(
            x,
            module.output_size,
            channels_last=getattr(module, "channels_last", True),
            num_spatial_dims=n or getattr(module, "num_spatial_dims", None),
        )
        return out.reshape(y.shape)
    if kind == "global_max_pool":
        n = x.ndim - y.ndim if x.ndim > y.ndim else getattr(module, "num_spatial_dims", 2)
        channels_last = getattr(module, "channels_last", True)
        axes = spatial_axes(x.ndim, n, channels_last)
        return jnp.mean(x, axis=axes, keepdims=x.ndim == y.ndim).reshape(y.shape)
    return y


def _resolve_layer(layer, calls) -> int | None:
    if layer is None:
        return None
    if isinstance(layer, bool) or not isinstance(layer, (int, str)):
        raise ValueError(
            f"layer={layer!r} must be a layer name from summary(...).rows, a call index, or "
            f"None for the model output."
        )
    if isinstance(layer, int):
        if not -len(calls) <= layer < len(calls):
            raise ValueError(
                f"layer={layer} is out of range: the model makes {len(calls)} layer calls; "
                f"use an index in [{-len(calls)}, {len(calls) - 1}]."
            )
        return layer % len(calls)
    for i, call in enumerate(calls):
        if call.name == layer:
            return i
    known = ", ".join(repr(c.name) for c in calls[:12])
    more = " ..." if len(calls) > 12 else ""
    raise ValueError(f"layer={layer!r} is not a layer of this model; names: {known}{more}.")


def empirical_receptive_field(
    model,
    input_shape,
    *,
    layer: str | int | None = None,
    unit: Sequence[int] | None = None,
    channels_last: bool = True,
) -> EmpiricalReceptiveField:
    """Receptive field of one unit, measured by the gradient (any network, residual included).

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers, concrete or abstract
        (``nnx.eval_shape``, no weights allocated); it is not modified: a probe copy with
        positive constant weights runs (see the module docstring).
      input_shape: one example's shape without the batch axis, e.g. ``(32, 32, 3)``.
      layer: which output to probe: a layer name as in :func:`convjax.inspect.summary`'s
        rows, an index into its layer calls, or None for the model's output.
      unit: spatial index of the probed unit; defaults to the centre ``size // 2`` of every
        spatial dimension. Channel 0 is probed.
      channels_last: layout of the input (and of the probed tensor).

    Returns:
      :class:`EmpiricalReceptiveField`.

    Raises:
      ValueError: for a bad ``layer``, ``unit`` or ``input_shape``.
    """
    calls = _tracing.trace_model(model, input_shape, batch_size=1)
    target = _resolve_layer(layer, calls)
    # float64 inside this block only (the global jax_enable_x64 flag is left alone).
    with jax.enable_x64(True):
        return _probe(model, calls, target, tuple(input_shape), unit, channels_last)


def _probe(model, calls, target, input_shape, unit, channels_last):
    probe = _probe_copy(model)
    full = (1, *tuple(input_shape))
    n_in = len(full) - 2
    in_axes = spatial_axes(len(full), n_in, channels_last)
    captured: list[Any] = []

    def hook(module, x, y):
        y = _dependence_preserving(module, x, y)
        if target is not None and len(captured) == target:
            captured.append(y)
        elif target is not None and len(captured) < target:
            captured.append(None)
        return y

    def probed_value(x):
        captured.clear()
        with _tracing.intercept(hook):
            out = probe(x)
        return out if target is None else captured[target]

    out_struct = jax.eval_shape(probed_value, jax.ShapeDtypeStruct(full, jnp.float64))
    out_shape = tuple(out_struct.shape)
    spatial = len(out_shape) == len(full)
    out_axes = spatial_axes(len(out_shape), n_in, channels_last) if spatial else ()
    out_spatial = tuple(out_shape[a] for a in out_axes)
    if unit is None:
        unit = tuple(s // 2 for s in out_spatial)
    else:
        unit = tuple(unit)
        if len(unit) != len(out_spatial) or any(not 0 <= u < s for u, s in zip(unit, out_spatial)):
            raise ValueError(
                f"unit={unit!r} is not a spatial index of the probed output with spatial "
                f"shape {out_spatial}; pass one index per spatial dimension inside it."
            )
    index = [0] * len(out_shape)
    for a, u in zip(out_axes, unit):
        index[a] = u
    index = tuple(index)

    # One compiled program (eager dispatch compiles every primitive of every new shape
    # separately), compiled at XLA's backend optimisation level 0: it runs once, and
    # compiling dominates (LeNet-5: 1.0 s instead of 2.0 s on a 2-core CPU).
    x = np.ones(full, np.float64)
    lowered = jax.jit(jax.grad(lambda x: probed_value(x)[index])).lower(x)
    grad = lowered.compile(compiler_options={"xla_backend_optimization_level": 0})(x)
    channel_axis = len(full) - 1 if channels_last else 1
    mask = (np.asarray(grad[0]) != 0).any(axis=channel_axis - 1)
    region, size, clipped = [], [], []
    for d in range(n_in):
        others = tuple(a for a in range(n_in) if a != d)
        hit = np.nonzero(mask.any(axis=others) if others else mask)[0]
        if hit.size == 0:  # pragma: no cover - positive weights always reach the input
            raise RuntimeError("no input pixel reaches the probed unit")
        lo, hi = int(hit[0]), int(hit[-1])
        region.append((lo, hi))
        size.append(hi - lo + 1)
        clipped.append(lo == 0 or hi == full[in_axes[d]] - 1)
    name = "(output)" if target is None else calls[target].name
    return EmpiricalReceptiveField(
        layer=name,
        unit=unit,
        region=tuple(region),
        size=tuple(size),
        mask=mask,
        clipped=tuple(clipped),
    )
