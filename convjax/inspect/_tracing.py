"""Run a model abstractly and list its layer calls with names; turn op errors into layer errors.

Every ``convjax.nn`` layer ends its ``__call__`` with ``_trace.record(self, x, y)``, so running
the model under :func:`convjax.nn._trace.recording` inside :func:`jax.eval_shape` lists every
layer call in call order (residual and branched models included) without computing anything.

The model is split with :func:`flax.nnx.split` and merged back *inside* the traced function:
the caller's model is never mutated (a BatchNorm in training mode would otherwise update its
running statistics), and an abstract model built with :func:`flax.nnx.eval_shape` (VGG-16
without allocating its 553 MB of weights) works the same way. Layer names are the module
paths of that merged copy (``nnx.iter_modules``), mapped by object identity.

Errors: a layer that cannot take its input (a filter larger than the padded input, a wrong
channel count) raises inside its functional op, before its ``record`` call, so the recording
cannot say which layer failed. We read it from the exception's traceback instead: the
innermost Python frame whose ``self`` is one of the model's modules is the failing layer, and
its first argument after ``self`` is the input it was given. This works for any call order
(residual blocks, shared modules) and needs nothing from the layers beyond being
``nnx.Module`` methods; see :func:`trace_model`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.nn import _trace

__all__ = ["NamedCall", "trace_model", "check_input_shape", "module_names", "intercept"]


@dataclasses.dataclass(frozen=True)
class NamedCall:
    """One recorded layer call with the module's path name.

    Attributes:
      name: the module's path in the model (``"features.layers.0"``; ``"(model)"`` for the
        root), with ``"#2"``, ``"#3"`` ... appended for a shared module's later calls.
      module: the module object (of the merged copy the trace ran on).
      input_shape, output_shape: full shapes, batch axis included.
      dtype: output dtype.
      first_call: False for the second and later calls of a shared module (its parameters
        are counted once).
    """

    name: str
    module: Any
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: Any
    first_call: bool = True


def path_name(path: Sequence[Any]) -> str:
    """``("features", "layers", 0)`` -> ``"features.layers.0"``; ``()`` -> ``"(model)"``."""
    return ".".join(str(p) for p in path) if path else "(model)"


def module_names(model) -> dict[int, str]:
    """Map ``id(module)`` to its path name for every module in ``model`` (root included)."""
    names: dict[int, str] = {}
    for path, module in nnx.iter_modules(model):
        # nnx lists a shared module once (graph nodes are visited once), under the first
        # path that reaches it; setdefault keeps that name in any case.
        names.setdefault(id(module), path_name(path))
    return names


def check_model(model) -> None:
    """``model`` must be a ``flax.nnx`` module (abstract ones from ``nnx.eval_shape`` too)."""
    if not isinstance(model, nnx.Module):
        raise ValueError(
            f"model={model!r} ({type(model).__name__}) is not a flax.nnx.Module; pass a model "
            f"built from convjax.nn layers, e.g. convjax.models.LeNet5(rngs=nnx.Rngs(0))."
        )


def _check_rank_against_model(model, input_shape: tuple) -> None:
    """A zoo model states its ``input_shape``; a shape of another rank is refused early."""
    expected = getattr(model, "input_shape", None)
    if isinstance(expected, tuple) and len(expected) != len(input_shape):
        hint = (
            f"; it has no channel axis: pass {(*input_shape, expected[-1])!r}"
            if len(input_shape) == len(expected) - 1
            else ""
        )
        raise ValueError(
            f"input_shape={input_shape!r} has {len(input_shape)} axes, but "
            f"{type(model).__name__} takes one example of shape {expected!r} (H, W, C){hint}."
        )


def _missing_channel_hint(module, input_shape) -> str:
    """When the model input has as many axes as the failing layer has spatial axes."""
    window = getattr(module, "kernel_size", None) or getattr(module, "window", None)
    if window is None or len(tuple(input_shape)) != len(window):
        return ""
    return (
        f" input_shape={tuple(input_shape)!r} has no channel axis: the layer has "
        f"{len(window)} spatial axes, so one example is {(*tuple(input_shape), 'C')}; pass "
        f"e.g. {(*tuple(input_shape), 1)!r}."
    )


def check_input_shape(input_shape, batch_size) -> tuple[int, ...]:
    """Validate ``input_shape`` (no batch axis) and ``batch_size``; return the batched shape.

    ``batch_size=None`` means the model takes ``input_shape`` as it is (unbatched models).
    """
    if isinstance(input_shape, int) or not isinstance(input_shape, Sequence):
        raise ValueError(
            f"input_shape={input_shape!r} must be a tuple of ints without the batch axis, "
            f"e.g. (28, 28, 1) for one channels-last image."
        )
    shape = tuple(input_shape)
    for v in shape:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"input_shape={shape!r} must contain positive ints only; got {v!r}. Pass the "
                f"shape of one example without the batch axis, e.g. (28, 28, 1)."
            )
    if not shape:
        raise ValueError(
            "input_shape=() is empty; pass the shape of one example, e.g. (28, 28, 1)."
        )
    if batch_size is None:
        return shape
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            f"batch_size={batch_size!r} must be a positive int (or None for a model that takes "
            f"unbatched input); use e.g. batch_size=1."
        )
    return (batch_size, *shape)


def _failing_frame(err: BaseException, names: dict[int, str]):
    """Innermost traceback frame whose ``self`` is one of the model's modules, or None."""
    found = None
    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in names:
            found = frame
        tb = tb.tb_next
    return found


def _frame_input(frame):
    """The first argument after ``self`` of a method frame (the layer's input), or None."""
    code = frame.f_code
    if code.co_argcount < 2:
        return None
    return frame.f_locals.get(code.co_varnames[1])


def _channel_hint(module, x) -> str:
    """Say which channel count a layer expects when its input has another one."""
    if getattr(module, "kernel_size", None) is None and not hasattr(module, "num_features"):
        return ""  # a dense layer's own message already names in_features
    expected = getattr(module, "in_features", None)
    if expected is None:
        expected = getattr(module, "num_features", None)
    shape = getattr(x, "shape", None)
    if expected is None or shape is None or not shape:
        return ""
    kernel_size = getattr(module, "kernel_size", None)
    if kernel_size is not None:
        channels_last = getattr(module, "channels_last", True)
        spatial = len(kernel_size)
        if len(shape) < spatial + 1:
            return (
                f" The layer has {spatial} spatial dimension(s) and needs at least "
                f"{spatial + 1} input axes (spatial + channels), got {len(shape)}."
            )
        axis = len(shape) - 1 if channels_last else len(shape) - spatial - 1
    elif hasattr(module, "num_features"):
        axis = len(shape) - 1 if getattr(module, "channels_last", True) else 1
    else:
        axis = len(shape) - 1
    got = shape[axis]
    if got != expected:
        name = "in_features" if hasattr(module, "in_features") else "num_features"
        return (
            f" Channel mismatch: the layer expects {name}={expected} channels on axis {axis} "
            f"but the input has {got}; fix input_shape or build the layer with {name}={got}."
        )
    return ""


def trace_model(model, input_shape, *, batch_size=1, dtype=jnp.float32) -> list[NamedCall]:
    """Every layer call of ``model`` on an input of ``(batch_size, *input_shape)``, in order.

    Runs under :func:`jax.eval_shape` (nothing is computed; abstract models work).

    Raises:
      ValueError: for a bad ``input_shape``/``batch_size``, and when a layer cannot take
        its input: the message names the layer's path, its class, the input shape it got
        and the op's own explanation of what does not fit.
    """
    check_model(model)
    full_shape = check_input_shape(input_shape, batch_size)
    _check_rank_against_model(model, tuple(input_shape))
    graphdef, state = nnx.split(model)
    names: dict[int, str] = {}

    def run(state, x):
        merged = nnx.merge(graphdef, state)
        names.update(module_names(merged))
        return merged(x)

    x_struct = jax.ShapeDtypeStruct(full_shape, jnp.dtype(dtype))
    with _trace.recording() as calls:
        try:
            jax.eval_shape(run, state, x_struct)
        except (ValueError, TypeError) as err:
            frame = _failing_frame(err, names)
            if frame is None:
                raise
            module = frame.f_locals["self"]
            x = _frame_input(frame)
            got = tuple(x.shape) if hasattr(x, "shape") else x
            name = names[id(module)]
            raise ValueError(
                f"layer {name!r} ({type(module).__name__}) cannot take its input of shape "
                f"{got} (model input_shape={tuple(input_shape)!r}, batch_size={batch_size}): "
                f"{err}{_channel_hint(module, x)}{_missing_channel_hint(module, input_shape)}"
            ) from err
    out: list[NamedCall] = []
    seen: dict[int, int] = {}
    for call in calls:
        key = id(call.module)
        count = seen.get(key, 0) + 1
        seen[key] = count
        name = names.get(key, type(call.module).__name__)
        out.append(
            NamedCall(
                name=name if count == 1 else f"{name}#{count}",
                module=call.module,
                input_shape=call.input_shape,
                output_shape=call.output_shape,
                dtype=call.dtype,
                first_call=count == 1,
            )
        )
    return out


@contextlib.contextmanager
def intercept(hook):
    """Route every layer's ``_trace.record(module, x, y)`` through ``hook`` inside the block.

    ``hook(module, x, y)`` returns the array the layer hands on (``y`` to observe, another
    array of the same shape to replace the layer's output). This relies on the contract
    every ``convjax.nn`` layer follows: ``return _trace.record(self, x, y)``, looked up on the
    ``_trace`` module at call time. Used by the empirical receptive field to capture an
    intermediate output and to swap max pooling for sum pooling (see ``receptive_field``).
    """
    original = _trace.record

    def record(module, x, y):
        return original(module, x, hook(module, x, y))

    _trace.record = record
    try:
        yield
    finally:
        _trace.record = original
