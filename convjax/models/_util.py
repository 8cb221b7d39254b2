"""Helpers shared by the model files: shape inference and argument checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.nn import _trace


def check_input_shape(input_shape, owner: str, *, channels: int | None = None):
    """``input_shape`` must be ``(H, W, C)`` of positive ints (unbatched, channels-last)."""
    ok = (
        isinstance(input_shape, (tuple, list))
        and len(input_shape) == 3
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in input_shape)
    )
    if not ok:
        raise ValueError(
            f"{owner}: input_shape={input_shape!r} must be (H, W, C), three positive ints for one "
            f"unbatched channels-last image, e.g. (28, 28, 1); the model is called on (N, H, W, C)."
        )
    if channels is not None and input_shape[2] != channels:
        raise ValueError(
            f"{owner}: input_shape={tuple(input_shape)!r} has {input_shape[2]} channels but this "
            f"model needs {channels}."
        )
    return tuple(input_shape)


def check_classes(num_classes, owner: str) -> int:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"{owner}: num_classes={num_classes!r} must be a positive int, e.g. 10 for "
            f"Fashion-MNIST or 1000 for ImageNet."
        )
    return num_classes


def output_shape(module, input_shape, dtype=jnp.float32) -> tuple[int, ...]:
    """Unbatched output shape of ``module`` on one input of ``input_shape``, computed by
    ``jax.eval_shape`` (no FLOPs, no allocation), so flatten sizes are never guessed.

    The module is split and merged inside the trace, so its state (batch statistics, RNG
    counters) is untouched; an active ``convjax.inspect`` recording is paused meanwhile so
    this construction-time probe does not show up as layer calls.
    """
    graphdef, state = nnx.split(module)

    def run(state, x):
        return nnx.merge(graphdef, state)(x)

    saved = list(_trace._active)
    _trace._active.clear()
    try:
        out = jax.eval_shape(run, state, jax.ShapeDtypeStruct((1, *input_shape), dtype))
    finally:
        _trace._active[:] = saved
    return tuple(out.shape[1:])
