"""Argument checks shared by the layer-1 ops: arrays, numbers, options, leading batch axes.

Plain Python on static information, so a bad argument gets a ``ValueError`` that names it,
shows its value and says the fix before XLA sees anything (JAX's own errors for the same
mistakes are a ``TypeError`` about "dtype <U3" or a message about ``lhs feature dimension``).
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "as_array",
    "check_number",
    "check_precision",
    "check_element_type",
    "fold_leading_axes",
    "unfold_leading_axes",
]


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_array(value, name: str, fn: str, *, allow_bool: bool = False, floating: bool = False):
    """``value`` as a JAX array (tracers pass through), or a ``ValueError`` naming ``name``.

    Refused: None, strings, objects that are not arrays of numbers, boolean arrays (unless
    ``allow_bool``: a bool taken as 0/1 silently is almost always a mistake), and with
    ``floating=True`` anything but a floating-point array.
    """
    if isinstance(value, (jax.core.Tracer, jax.Array)):
        arr = value
    else:
        if value is None or isinstance(value, (str, bytes)):
            raise ValueError(
                f"{name}={_shown(value)} must be an array of numbers for {fn}; pass a jax or "
                f"numpy array."
            )
        try:
            host = value if hasattr(value, "__jax_array__") else np.asarray(value)
            if getattr(host, "dtype", None) is not None and np.dtype(host.dtype).kind in "USO":
                raise TypeError(f"dtype {host.dtype}")
            arr = jnp.asarray(host)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name}={_shown(value)} is not an array of numbers ({type(value).__name__}), "
                f"which {fn} needs; pass a jax or numpy array of floats."
            ) from err
    dtype = arr.dtype
    if dtype == jnp.bool_ and not allow_bool:
        raise ValueError(
            f"{name} has dtype bool (shape {tuple(arr.shape)}), but {fn} needs numbers; cast "
            f"it, e.g. {name}.astype(jnp.float32)."
        )
    if floating and not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{name} has dtype {dtype}, but {fn} needs floating-point values; cast it, e.g. "
            f"{name}.astype(jnp.float32)."
        )
    if not (jnp.issubdtype(dtype, jnp.number) or dtype == jnp.bool_):
        raise ValueError(f"{name} has dtype {dtype}, which {fn} cannot compute with; cast it.")
    return arr


def check_number(
    value,
    name: str,
    fn: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    allow_traced: bool = True,
    hint: str = "",
):
    """A real number (Python, NumPy or a 0-d array; a tracer passes through unchecked).

    Refused: bools (``True`` is not a slope), strings, None, arrays with more than one value
    and non-finite values; with ``minimum``/``maximum`` also values outside that range.
    Returns a Python float, or the tracer.
    """
    if isinstance(value, jax.core.Tracer):
        if not allow_traced:
            raise ValueError(f"{name} must be a concrete number for {fn}, not a traced value.")
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} has shape {jnp.shape(value)}; {fn} needs one number.")
        return value
    fix = f" {hint}" if hint else ""
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{name}={_shown(value)} must be a real number for {fn}.{fix}")
    if isinstance(value, numbers.Real):
        number = float(value)
    elif hasattr(value, "shape") and hasattr(value, "dtype"):
        if np.ndim(value) != 0 or not np.issubdtype(np.dtype(value.dtype), np.number):
            raise ValueError(
                f"{name}={_shown(value)} must be one real number for {fn}, not an array of "
                f"shape {tuple(np.shape(value))}.{fix}"
            )
        if np.issubdtype(np.dtype(value.dtype), np.complexfloating):
            raise ValueError(f"{name}={_shown(value)} must be a real number for {fn}.{fix}")
        number = float(value)
    else:
        raise ValueError(
            f"{name}={_shown(value)} ({type(value).__name__}) must be a real number for {fn}.{fix}"
        )
    if not math.isfinite(number):
        raise ValueError(f"{name}={_shown(value)} must be finite for {fn}.{fix}")
    low = minimum is not None and number < minimum
    high = maximum is not None and number > maximum
    if low or high:
        if minimum is not None and maximum is not None:
            rule = f"a number in [{minimum:g}, {maximum:g}]"
        elif minimum is not None:
            rule = f"a number >= {minimum:g}"
        else:
            rule = f"a number <= {maximum:g}"
        raise ValueError(f"{name}={_shown(value)} must be {rule} for {fn}.{fix}")
    return number


_PRECISION_HELP = (
    "use None, a jax.lax.Precision (DEFAULT, HIGH, HIGHEST), one of the strings 'default', "
    "'high', 'highest' (or 'bfloat16', 'tensorfloat32', 'float32'), a pair of these, or a "
    "jax.lax.DotAlgorithmPreset"
)


def _one_precision(value) -> bool:
    if isinstance(value, (lax.Precision, lax.DotAlgorithm, lax.DotAlgorithmPreset)):
        return True
    if isinstance(value, str):
        try:
            lax.Precision(value)
            return True
        except ValueError:
            return value.upper() in lax.DotAlgorithmPreset.__members__
    return False


def check_precision(value, fn: str):
    """``precision`` as JAX's matrix products take it, checked before XLA sees it."""
    if value is None or _one_precision(value):
        return value
    if (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (str, lax.Precision)) and _one_precision(v) for v in value)
    ):
        return tuple(value)
    raise ValueError(
        f"precision={_shown(value)} is not a precision {fn} understands; {_PRECISION_HELP}."
    )


def check_element_type(value, fn: str):
    """``preferred_element_type``: None or a numeric dtype (returned as ``jnp.dtype``)."""
    if value is None:
        return None
    try:
        dtype = jnp.dtype(value)
    except TypeError as err:
        raise ValueError(
            f"preferred_element_type={_shown(value)} is not a dtype; {fn} needs None or a "
            f"numeric dtype such as jnp.float32."
        ) from err
    if not jnp.issubdtype(dtype, jnp.number):
        raise ValueError(
            f"preferred_element_type={_shown(value)} (dtype {dtype}) is not a numeric dtype; "
            f"{fn} needs None or e.g. jnp.float32."
        )
    return dtype


def fold_leading_axes(x, core_ndim: int):
    """Merge the leading (batch) axes of ``x`` into one, as Flax does for ``(..., H, W, C)``.

    ``x`` has rank ``k + core_ndim``: ``k`` leading axes, then the op's own ``core_ndim``
    axes (spatial and channel). For ``k >= 2``, ``(*lead, *core) -> (prod(lead), *core)``;
    for ``k <= 1`` nothing changes. Returns the array and ``lead`` (None if nothing was
    folded), which :func:`unfold_leading_axes` uses to restore the result.
    """
    lead_count = x.ndim - core_ndim
    if lead_count <= 1:
        return x, None
    lead = tuple(x.shape[:lead_count])
    return x.reshape((math.prod(lead),) + tuple(x.shape[lead_count:])), lead


def unfold_leading_axes(y, lead):
    """Inverse of :func:`fold_leading_axes` on an op's result (leading axis = the batch)."""
    if lead is None:
        return y
    return y.reshape(tuple(lead) + tuple(y.shape[1:]))
