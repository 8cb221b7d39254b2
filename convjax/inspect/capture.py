"""Intermediate activations of any ``convjax.nn`` model, and perturbations of named layers.

Every ``convjax.nn`` layer ends its ``__call__`` with ``_trace.record(self, x, y)``.
:func:`forward` routes those calls through a hook (:func:`convjax.inspect._tracing.intercept`)
for the duration of one call of a *copy* of the model, so that

* the output of every chosen layer is returned by name (the module path, as
  :func:`convjax.inspect.summary` names rows: ``"features.layers.0"``; ``"#2"`` is appended
  for a shared module's second call), and
* an array can be *added* to a named layer's output. Differentiating with respect to that
  array at zero gives ``d(model output) / d(layer output)`` without editing the model; Grad-CAM
  (:mod:`convjax.inspect.explain`) is built on it.

Purity: the model is split with :func:`flax.nnx.split` and merged back inside the call; the
merged copy is thrown away, so a BatchNorm in training mode normalises with the batch's
statistics but the caller's running statistics are not updated, and a Dropout layer in
training mode draws its mask from the copy's stream (the caller's stream does not advance:
two calls give the same mask). Captured arrays are collected in a dictionary local to the
call and returned as outputs, so :func:`forward` works under ``jax.jit``, ``jax.grad`` and
``jax.vmap`` and no tracer outlives its trace. Outside :func:`forward` the layers' hook is
untouched: ``_trace.record`` returns ``y`` after one list check.

Only layers that record themselves are seen: ``convjax.nn`` layers, not containers
(``Sequential``), not a residual block's ``__call__`` and not plain functions. A block's
output is the output of its last recorded layer (``"stages.layers.2.relu2"`` in a ResNet).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.inspect import _tracing

__all__ = ["forward", "activations", "layer_names"]

# The "every layer call" value of a capture list (callers pass None).
ALL = "all"


def _check_names(arg: str, names, allow_all: bool) -> tuple[str, ...] | str:
    if allow_all and names is None:
        return ALL
    if isinstance(names, str):
        return (names,)
    if not isinstance(names, Sequence) or any(not isinstance(n, str) for n in names):
        hint = " or None for every layer" if allow_all else ""
        raise ValueError(
            f"{arg}={names!r} must be a layer name or a sequence of layer names (strings, as "
            f"convjax.inspect.summary(...).rows name them, e.g. 'features.layers.0'){hint}."
        )
    return tuple(names)


class _Tap:
    """The hook of one traced call: names each layer call, adds perturbations, keeps outputs."""

    def __init__(self, names: dict[int, str], capture, perturb: Mapping[str, Any]):
        self.names = names
        self.capture = capture
        self.perturb = perturb
        self.counts: dict[int, int] = {}
        self.seen: list[str] = []
        self.out: dict[str, Any] = {}

    def __call__(self, module, x, y):
        key = id(module)
        count = self.counts.get(key, 0) + 1
        self.counts[key] = count
        base = self.names.get(key, type(module).__name__)
        name = base if count == 1 else f"{base}#{count}"
        self.seen.append(name)
        delta = self.perturb.get(name)
        if delta is not None:
            if tuple(jnp.shape(delta)) != tuple(y.shape):
                raise ValueError(
                    f"perturb[{name!r}] has shape {tuple(jnp.shape(delta))} but layer {name!r} "
                    f"({type(module).__name__}) outputs shape {tuple(y.shape)}; pass an array "
                    f"of the output's shape (zeros to take a gradient at the unperturbed point)."
                )
            y = y + jnp.asarray(delta).astype(y.dtype)
        if self.capture == ALL or name in self.capture:
            self.out[name] = y
        return y

    def check(self):
        """After the call: every requested name must have been a layer call."""
        wanted = [n for n in self.perturb if n not in self.seen]
        arg = "perturb"
        if self.capture != ALL:
            missing = [n for n in self.capture if n not in self.seen]
            if missing:
                wanted, arg = missing, "layers"
        if wanted:
            known = ", ".join(repr(n) for n in self.seen[:16])
            more = f" ... ({len(self.seen)} in all)" if len(self.seen) > 16 else ""
            raise ValueError(
                f"{arg} names {wanted} that are no layer call of this model; the layer calls "
                f"are {known}{more} (containers and blocks record nothing: name a layer inside)."
            )


def _run(graphdef, state, x, capture, perturb, eval_mode: bool):
    # copy=True: merge would otherwise reuse the caller's Variable objects, and a BatchNorm in
    # training mode would write its running statistics into the caller's model.
    model = nnx.merge(graphdef, state, copy=True)
    if eval_mode:
        model.eval()  # the copy only: the caller's model keeps its mode
    tap = _Tap(_tracing.module_names(model), capture, perturb)
    with _tracing.intercept(tap):
        out = model(x)
    tap.check()
    return out, tap.out


def forward(model, x, *, capture=(), perturb=None, eval_mode: bool = False):
    """Call ``model(x)`` on a copy, returning named layer outputs; optionally perturb layers.

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers (zoo or user-written).
        Not modified: it runs as a copy (see the module docstring).
      x: its input, e.g. ``(N, H, W, C)``.
      capture: layer names whose outputs to return, a single name, or None for every layer
        call.
      perturb: ``{name: array}`` added to those layers' outputs (same shape as the output)
        before the next layer sees them; captured outputs include the perturbation.
      eval_mode: run the copy in evaluation mode (``.eval()``: BatchNorm on running
        statistics, Dropout off). False leaves the model's own mode.

    Returns:
      ``(output, {name: layer output})``; the dictionary follows call order (a ``jax.jit``
      around :func:`forward` sorts it by name, as jit does with every dict it returns).

    Raises:
      ValueError: ``capture`` or ``perturb`` names something that is no layer call of the
        model, or a perturbation's shape differs from its layer's output.

    Works under ``jax.jit`` / ``jax.grad`` / ``jax.vmap``. ``d output / d layer output``::

        def score(delta):
            out, _ = forward(model, x, perturb={"features.layers.5": delta})
            return out[:, 3].sum()
        g = jax.grad(score)(jnp.zeros(shape_of_layer_5_output))
    """
    capture = _check_names("capture", capture, allow_all=True)
    perturb = {} if perturb is None else perturb
    if not isinstance(perturb, Mapping):
        raise ValueError(
            f"perturb={type(perturb).__name__} must be a dict {{layer name: array}} or None."
        )
    _check_names("perturb", list(perturb), allow_all=False)
    graphdef, state = nnx.split(model)
    return _run(graphdef, state, x, capture, perturb, eval_mode)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _activations_jit(graphdef, state, x, capture, eval_mode):
    acts = _run(graphdef, state, x, capture, {}, eval_mode)[1]
    # jit returns a dict with its keys sorted; a zero-padded call index keeps call order.
    return {f"{i:06d}:{name}": a for i, (name, a) in enumerate(acts.items())}


def activations(model, x, layers=None, *, eval_mode: bool = False) -> dict[str, jax.Array]:
    """Outputs of the named layers of ``model`` on ``x`` (one compiled call).

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers; left unmodified (its
        BatchNorm/Dropout layers keep the mode they are in and their statistics).
      x: the model's input, e.g. ``(N, H, W, C)``.
      layers: a layer name, a sequence of names, or None for every layer call (names as in
        :func:`layer_names` and :func:`convjax.inspect.summary`).
      eval_mode: run a copy in evaluation mode instead of the model's own mode.

    Returns:
      ``{name: array}`` in call order, each of the layer's output shape (batch included).

    Raises:
      ValueError: a name that is no layer call of the model (the message lists them).

    >>> acts = activations(model, images, ["features.layers.0", "features.layers.2"])
    ... # doctest: +SKIP
    """
    capture = _check_names("layers", layers, allow_all=True)
    graphdef, state = nnx.split(model)
    out = _activations_jit(graphdef, state, jnp.asarray(x), capture, bool(eval_mode))
    return {key.split(":", 1)[1]: a for key, a in sorted(out.items())}


def layer_names(model, input_shape, *, batch_size: int | None = 1) -> list[str]:
    """Names of every layer call of ``model`` on one example of ``input_shape``, in call order.

    Nothing is computed (the model runs under ``jax.eval_shape``). ``input_shape`` has no
    batch axis, e.g. ``(28, 28, 1)``.
    """
    return [c.name for c in _tracing.trace_model(model, input_shape, batch_size=batch_size)]
