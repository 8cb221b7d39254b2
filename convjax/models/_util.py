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


def positive_int(value, name: str, owner: str) -> int:
    """A model knob that counts something (a width, a window): an int >= 1."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(f"{owner}: {name}={value!r} must be an int >= 1.")
    return int(value)


def positive_ints(value, name: str, owner: str, count: int | None = None) -> tuple[int, ...]:
    """A tuple of ints >= 1 (``count`` of them if given), e.g. the widths of the stages."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        raise ValueError(
            f"{owner}: {name}={value!r} must be a sequence of ints >= 1"
            + (f", {count} of them." if count else ".")
        )
    values = tuple(value)
    if count is not None and len(values) != count:
        raise ValueError(
            f"{owner}: {name}={values!r} has {len(values)} entries but this model needs "
            f"{count}; give {count} ints >= 1."
        )
    for v in values:
        if isinstance(v, bool) or not hasattr(v, "__index__") or int(v) < 1:
            raise ValueError(
                f"{owner}: {name}={values!r} contains {v!r}; every entry must be an int >= 1."
            )
    return tuple(int(v) for v in values)


def rate(value, name: str, owner: str) -> float:
    """A dropout rate in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(
            f"{owner}: {name}={value!r} must be a number in [0, 1) (a dropout rate); 0 disables it."
        )
    return float(value)


def check_fits(module, input_shape, owner: str, what: str = "this model") -> tuple[int, ...]:
    """:func:`output_shape`, or a ``ValueError`` naming ``input_shape``, the model and the
    smallest input it takes when ``input_shape`` is too small for its downsampling.

    The smallest size is searched (square, same channels) by abstract evaluation, only on
    this error path; every zoo model's spatial dimensions follow the same rule.
    """
    try:
        return output_shape(module, input_shape)
    except ValueError as err:
        h, w, c = input_shape
        smallest = _smallest_square(module, max(h, w), c)
        if smallest is None:
            raise
        raise ValueError(
            f"{owner}: input_shape={tuple(input_shape)!r} is too small for {what}: it needs at "
            f"least ({smallest}, {smallest}, {c}) (its downsampling leaves nothing of a smaller "
            f"image). Pass a larger input_shape, or change the knobs that downsample. The "
            f"layer that failed said: {err}"
        ) from None


def _fits(module, size: int, c: int) -> bool:
    try:
        output_shape(module, (size, size, c))
        return True
    except ValueError:
        return False


def _smallest_square(module, start: int, c: int, limit: int = 4096) -> int | None:
    hi = max(start, 1)
    while not _fits(module, hi, c):
        hi *= 2
        if hi > limit:
            return None
    lo = 1  # the answer is in (lo - 1, hi]: binary search for the first size that fits
    while lo < hi:
        mid = (lo + hi) // 2
        if _fits(module, mid, c):
            hi = mid
        else:
            lo = mid + 1
    return hi


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
