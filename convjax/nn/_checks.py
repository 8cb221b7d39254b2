"""Argument checks shared by the ``convjax.nn`` constructors (plain Python, before any XLA)."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
from flax import nnx

import convjax.functional as cf
from convjax.functional import _checks as fchecks
from convjax.functional.shapes import normalize_tuple


def positive_int(value, name: str, owner: str) -> int:
    """Return ``value`` as an int >= 1 or raise a ValueError naming ``name``."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
        raise ValueError(
            f"{owner}: {name}={value!r} must be a positive int (a number of features "
            f"or channels); pass e.g. {name}=32."
        )
    return int(value)


def spatial_tuple(value, name: str, owner: str, num_spatial: int | None) -> tuple[int, ...]:
    """Normalise a window/kernel size to a tuple of ints, inferring the rank from its length.

    ``num_spatial=None`` means the rank must come from ``value`` itself, so an int is
    ambiguous and refused; the thin 1/2/3-D variants pass their rank explicitly.
    """
    if num_spatial is None:
        if isinstance(value, Sequence) and not isinstance(value, str):
            if not 1 <= len(value) <= 3:
                raise ValueError(
                    f"{owner}: {name}={tuple(value)!r} has {len(value)} entries; give 1, 2 or 3 "
                    f"(one per spatial dimension), e.g. {name}=(3, 3) for images."
                )
            return normalize_tuple(tuple(value), len(value), name)
        raise ValueError(
            f"{owner}: {name}={value!r} must be a tuple with one entry per spatial dimension "
            f"(its length sets 1-, 2- or 3-D), e.g. {name}=({value!r}, {value!r}); or use the "
            f"2-D variant, which accepts an int."
        )
    return normalize_tuple(value, num_spatial, name)


def check_choice(value, name: str, owner: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else a ValueError listing them."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(
            f"{owner}: {name}={value!r} is not supported; use one of "
            f"{', '.join(repr(c) for c in choices)}."
        )
    return value


def freeze(value):
    """Nested lists -> nested tuples, so an option is hashable static data in the graphdef."""
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


def set_params(module, params: dict, use_bias: bool) -> None:
    """Hold an initialiser's ``{"kernel", "bias"}`` as ``module.kernel`` / ``module.bias`` Params.

    ``bias`` is ``None`` when ``use_bias`` is False, so the parameter tree matches the
    functional op's ``bias=None``.
    """
    module.kernel = nnx.Param(params["kernel"])
    module.bias = nnx.Param(params["bias"]) if use_bias else None


def check_bool(value, name: str, owner: str) -> bool:
    """A real ``bool`` (a string such as ``"False"`` is truthy, so it is refused)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: {name}={value!r} must be True or False.")
    return value


def check_param_dtype(value, owner: str, name: str = "param_dtype"):
    """A floating-point dtype for trainable parameters (integers cannot be trained)."""
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(
            f"{owner}: {name}={value!r} is not a dtype; use a float dtype such as jnp.float32."
        ) from err
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{owner}: {name}={value!r} (dtype {dtype}) must be a floating-point dtype, since "
            f"parameters are trained by gradients; use jnp.float32 (or bfloat16, float64)."
        )
    return value


def check_scheme(value, owner: str) -> str:
    if not isinstance(value, str) or value not in cf.INIT_SCHEMES:
        raise ValueError(
            f"{owner}: scheme={value!r} is not a known initialisation scheme; use one of "
            f"{', '.join(repr(c) for c in cf.INIT_SCHEMES)}."
        )
    return value


def check_impl(value, owner: str) -> str:
    """One of the convolution implementations :mod:`convjax.functional` registers."""
    return check_choice(value, "impl", owner, tuple(cf.CONV_IMPLS))


def check_padding_mode(value, owner: str) -> str:
    return check_choice(value, "padding_mode", owner, cf.PADDING_MODES)


def check_precision(value, owner: str):
    try:
        return fchecks.check_precision(value, owner)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None


def check_element_type(value, owner: str):
    try:
        fchecks.check_element_type(value, owner)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None
    return value


def check_geometry(owner: str, window, *, stride=1, padding=0, dilation=1, pool=False):
    """Validate stride, dilation and padding forms for a window of ``len(window)`` dims.

    The input size is unknown at construction, so sizes are not checked here (the
    functional op does that on the first call); forms and signs are. ``pool=True`` allows
    ``stride=None`` (the window).
    """
    n = len(window)
    try:
        stride_t = window if (pool and stride is None) else normalize_tuple(stride, n, "stride")
        dilation_t = normalize_tuple(dilation, n, "dilation")
        # A nominal input as large as any window: resolve_padding checks the form only.
        big = tuple(d * (f - 1) + 1 for f, d in zip(window, dilation_t))
        cf.resolve_padding(padding, big, window, stride_t, dilation_t)
    except ValueError as err:
        raise ValueError(f"{owner}: {err}") from None
