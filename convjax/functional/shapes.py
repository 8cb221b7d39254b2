"""Shape rules shared by every spatial op: argument normalisation, padding, output sizes.

The CS231n notes' rule for one spatial dimension of a convolution or pooling window is

    out = (W - F_eff + P_lo + P_hi) // S + 1,    F_eff = dilation * (F - 1) + 1

where W is the input size, F the window (filter) size, S the stride and P the padding.
With ``strict=True`` a window that does not tile the padded input exactly is an error
instead of a silent floor (a 3x3 filter does not fit a 7x7 input at stride 3).

Everything here is plain Python on static shapes, so it runs before XLA sees anything
and every bad argument gets a ``ValueError`` that names it, shows its value and says the fix.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "PADDING_STRINGS",
    "normalize_tuple",
    "effective_kernel_size",
    "resolve_padding",
    "conv_output_size",
    "conv_output_shape",
    "conv_transpose_output_size",
    "spatial_axes",
]

#: Padding names understood by every spatial op (case-insensitive).
PADDING_STRINGS = ("VALID", "SAME", "SAME_LOWER", "FULL", "CAUSAL")


def normalize_tuple(value, n: int, name: str, *, minimum: int = 1) -> tuple[int, ...]:
    """Turn an int or a length-``n`` sequence of ints into a tuple of ``n`` ints.

    Args:
      value: an int (used for every dimension) or a sequence of ``n`` ints.
      n: number of spatial dimensions.
      name: argument name used in error messages (``"stride"``, ``"dilation"``, ...).
      minimum: smallest allowed value (1 for strides, 0 for output padding).

    Raises:
      ValueError: naming ``name`` when the value has the wrong length, is not an
        integer, or is below ``minimum``.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints, not a bool.")
    if isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, str)):
        try:
            values = (int(value.__index__()),) * n
        except TypeError as err:  # pragma: no cover - numpy 0-d arrays of floats etc.
            raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints.") from err
    elif isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(
                f"{name}={tuple(value)!r} has {len(value)} entries but the op has {n} spatial "
                f"dimension(s); pass one int or exactly {n} ints."
            )
        values = []
        for v in value:
            if isinstance(v, bool) or not hasattr(v, "__index__"):
                raise ValueError(f"{name}={tuple(value)!r} must contain ints only; got {v!r}.")
            values.append(int(v.__index__()))
        values = tuple(values)
    else:
        raise ValueError(f"{name}={value!r} must be an int or a sequence of {n} ints.")
    for v in values:
        if v < minimum:
            raise ValueError(
                f"{name}={value!r} must be >= {minimum} in every dimension; "
                f"use a value of at least {minimum}."
            )
    return values


def _int_arg(value, name: str, minimum: int, fix: str) -> int:
    """One int >= ``minimum`` (NumPy ints too); floats, bools and strings are refused."""
    if isinstance(value, bool) or not hasattr(value, "__index__") or isinstance(value, str):
        raise ValueError(f"{name}={value!r} must be an int ({type(value).__name__} given); {fix}.")
    value = int(value.__index__())
    if value < minimum:
        raise ValueError(f"{name}={value!r} must be >= {minimum}; {fix}.")
    return value


def _pad_pair(padding, name: str = "padding") -> tuple[int, int]:
    """``P`` or ``(P_lo, P_hi)`` of one dimension as two ints >= 0."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(
                f"{name}={padding!r} must be one int P or a pair (P_lo, P_hi) for one dimension."
            )
        lo, hi = padding
    else:
        lo = hi = padding
    fix = "padding is an amount of samples, 0 or more (crop the input instead of padding < 0)"
    lo = _int_arg(lo, name, 0, fix)
    hi = _int_arg(hi, name, 0, fix)
    return lo, hi


def effective_kernel_size(kernel_size: int, dilation: int = 1) -> int:
    """Extent of a dilated window: ``dilation * (kernel_size - 1) + 1``."""
    return dilation * (kernel_size - 1) + 1


def _same_total(in_size: int, f_eff: int, stride: int) -> int:
    # TensorFlow's SAME: the output has ceil(W / S) positions; pad just enough for them.
    out = -(-in_size // stride)
    return max((out - 1) * stride + f_eff - in_size, 0)


def resolve_padding(
    padding,
    in_spatial: Sequence[int],
    kernel_spatial: Sequence[int],
    stride: Sequence[int] | int = 1,
    dilation: Sequence[int] | int = 1,
) -> tuple[tuple[int, int], ...]:
    """Resolve any padding form to one ``(lo, hi)`` pair per spatial dimension.

    Forms:
      * ``"VALID"``: no padding.
      * ``"SAME"``: output size ``ceil(W / S)``; TensorFlow's convention, the odd extra
        pixel goes on the high side.
      * ``"SAME_LOWER"``: like ``"SAME"`` but the extra pixel goes on the low side (ONNX).
      * ``"FULL"``: ``F_eff - 1`` on both sides; every partial overlap is an output.
      * ``"CAUSAL"``: ``F_eff - 1`` before the input and none after, in every dimension,
        so output ``t`` sees only inputs ``<= t``.
      * an int ``P``: ``(P, P)`` everywhere; a sequence of ints: one symmetric amount per
        dimension; a sequence of ``(lo, hi)`` pairs: explicit.

    Args:
      padding: one of the forms above.
      in_spatial: input spatial sizes, e.g. ``(H, W)``.
      kernel_spatial: window sizes ``(F_h, F_w)`` before dilation.
      stride, dilation: int or one per dimension.

    Returns:
      tuple of ``(lo, hi)`` pairs, one per spatial dimension.
    """
    n = len(in_spatial)
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    f_eff = [effective_kernel_size(f, d) for f, d in zip(kernel_spatial, dilation)]
    if isinstance(padding, str):
        key = padding.upper()
        if key == "VALID":
            return ((0, 0),) * n
        if key in ("SAME", "SAME_LOWER"):
            pairs = []
            for w, f, s in zip(in_spatial, f_eff, stride):
                total = _same_total(w, f, s)
                small, big = total // 2, total - total // 2
                pairs.append((small, big) if key == "SAME" else (big, small))
            return tuple(pairs)
        if key == "FULL":
            return tuple((f - 1, f - 1) for f in f_eff)
        if key == "CAUSAL":
            return tuple((f - 1, 0) for f in f_eff)
        raise ValueError(
            f"padding={padding!r} is not a known padding name; use one of "
            f"{', '.join(repr(p) for p in PADDING_STRINGS)}, an int, one int per dimension, "
            f"or one (lo, hi) pair per dimension."
        )
    if isinstance(padding, bool):
        raise ValueError(
            f"padding={padding!r} must be a padding name, an int or pairs, not a bool."
        )
    if isinstance(padding, int) or hasattr(padding, "__index__"):
        p = int(padding.__index__())
        if p < 0:
            raise ValueError(f"padding={padding!r} must be >= 0; use 0 for no padding.")
        return ((p, p),) * n
    if isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(
                f"padding={padding!r} has {len(padding)} entries but the op has {n} spatial "
                f"dimension(s); give one int or one (lo, hi) pair per dimension."
            )
        pairs = []
        for entry in padding:
            if isinstance(entry, Sequence) and not isinstance(entry, str):
                if len(entry) != 2:
                    raise ValueError(
                        f"padding={padding!r} contains {entry!r}; each pair must be (lo, hi)."
                    )
                lo, hi = entry
            else:
                lo = hi = entry
            if isinstance(lo, bool) or isinstance(hi, bool):
                raise ValueError(f"padding={padding!r} must contain ints, not bools.")
            if not (hasattr(lo, "__index__") and hasattr(hi, "__index__")):
                raise ValueError(f"padding={padding!r} must contain ints; got {entry!r}.")
            lo, hi = int(lo), int(hi)
            if lo < 0 or hi < 0:
                raise ValueError(
                    f"padding={padding!r} contains a negative amount {entry!r}; padding must be "
                    f">= 0 (crop the input instead)."
                )
            pairs.append((lo, hi))
        return tuple(pairs)
    raise ValueError(
        f"padding={padding!r} is not understood; use a padding name, an int, one int per "
        f"dimension, or one (lo, hi) pair per dimension."
    )


def conv_output_size(
    in_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
    *,
    strict: bool = False,
    ceil_mode: bool = False,
) -> int:
    """Output size of one spatial dimension: ``(W - F_eff + P_lo + P_hi) // S + 1``.

    Args:
      in_size: input size W.
      kernel_size: window size F (before dilation).
      stride: S.
      padding: P (symmetric) or ``(P_lo, P_hi)``.
      dilation: spacing between window taps; ``F_eff = dilation * (F - 1) + 1``.
      strict: if True, raise when ``(W - F_eff + P_lo + P_hi)`` is not a multiple of S
        (the window would not tile the padded input) instead of flooring.
      ceil_mode: round up instead of down (pooling), with PyTorch's rule that the last
        window must start inside the input or the low padding.

    Raises:
      ValueError: when the window is larger than the padded input, or ``strict`` and
        the window does not fit exactly.

    >>> conv_output_size(7, 3, stride=2)
    3
    >>> conv_output_size(227, 11, stride=4)
    55
    """
    in_size = _int_arg(in_size, "in_size", 1, "the input has at least one sample")
    kernel_size = _int_arg(kernel_size, "kernel_size", 1, "a window has at least one tap")
    stride = _int_arg(stride, "stride", 1, "use 1 for a dense sliding window")
    dilation = _int_arg(dilation, "dilation", 1, "use 1 for an undilated window")
    lo, hi = _pad_pair(padding)
    f_eff = effective_kernel_size(kernel_size, dilation)
    span = in_size + lo + hi - f_eff
    if span < 0:
        raise ValueError(
            f"kernel_size={kernel_size} (effective size {f_eff} with dilation={dilation}) is "
            f"larger than the padded input ({in_size} + {lo} + {hi} = {in_size + lo + hi}); "
            f"use a smaller kernel or dilation, or more padding."
        )
    if strict and span % stride != 0:
        raise ValueError(
            f"stride={stride} does not fit: (W - F_eff + P_lo + P_hi) / S = "
            f"({in_size} - {f_eff} + {lo} + {hi}) / {stride} = {span / stride:g} is not an "
            f"integer, so a {kernel_size}-wide window at stride {stride} does not tile the "
            f"input of size {in_size}; change the stride or the padding, or pass strict=False "
            f"to floor."
        )
    if ceil_mode:
        out = -(-span // stride) + 1
        # PyTorch: drop the last window if it starts in the high padding.
        if (out - 1) * stride >= in_size + lo:
            out -= 1
        return out
    return span // stride + 1


def conv_output_shape(
    in_spatial: Sequence[int],
    kernel_spatial: Sequence[int],
    stride=1,
    padding="VALID",
    dilation=1,
    *,
    strict: bool = False,
    ceil_mode: bool = False,
) -> tuple[int, ...]:
    """Output spatial shape for any padding form (see :func:`resolve_padding`).

    >>> conv_output_shape((32, 32), (5, 5), 1, 2)
    (32, 32)
    """
    for name, value in (("in_spatial", in_spatial), ("kernel_spatial", kernel_spatial)):
        if isinstance(value, str) or not isinstance(value, Sequence) or not value:
            raise ValueError(
                f"{name}={value!r} must be a non-empty sequence of ints, one per spatial "
                f"dimension, e.g. (28, 28)."
            )
    n = len(in_spatial)
    if len(kernel_spatial) != n:
        raise ValueError(
            f"kernel_spatial={tuple(kernel_spatial)!r} has {len(kernel_spatial)} entries but "
            f"in_spatial={tuple(in_spatial)!r} has {n}; give one window size per spatial "
            f"dimension of the input."
        )
    stride_t = normalize_tuple(stride, n, "stride")
    dilation_t = normalize_tuple(dilation, n, "dilation")
    pads = resolve_padding(padding, in_spatial, kernel_spatial, stride_t, dilation_t)
    return tuple(
        conv_output_size(w, f, s, p, d, strict=strict, ceil_mode=ceil_mode)
        for w, f, s, p, d in zip(in_spatial, kernel_spatial, stride_t, pads, dilation_t)
    )


def conv_transpose_output_size(
    in_size: int,
    kernel_size: int,
    stride: int = 1,
    padding: int | tuple[int, int] = 0,
    dilation: int = 1,
    output_padding: int = 0,
) -> int:
    """Output size of a transposed convolution, PyTorch's rule.

    ``(W - 1) * S - P_lo - P_hi + dilation * (F - 1) + output_padding + 1``; it inverts
    :func:`conv_output_size` up to the floor that ``output_padding`` resolves.
    """
    in_size = _int_arg(in_size, "in_size", 1, "the input has at least one sample")
    kernel_size = _int_arg(kernel_size, "kernel_size", 1, "a window has at least one tap")
    stride = _int_arg(stride, "stride", 1, "use 1 for no zeros between input samples")
    dilation = _int_arg(dilation, "dilation", 1, "use 1 for an undilated kernel")
    output_padding = _int_arg(
        output_padding, "output_padding", 0, "use 0 for PyTorch's default output size"
    )
    lo, hi = _pad_pair(padding)
    if output_padding < 0 or output_padding >= max(stride, dilation):
        raise ValueError(
            f"output_padding={output_padding} must be >= 0 and smaller than the stride "
            f"({stride}) or the dilation ({dilation}); reduce it."
        )
    out = (in_size - 1) * stride - lo - hi + effective_kernel_size(kernel_size, dilation)
    out += output_padding
    if out < 1:
        raise ValueError(
            f"padding={padding!r} removes the whole output of the transposed convolution "
            f"(size {out}); use less padding."
        )
    return out


def spatial_axes(ndim: int, num_spatial: int, channels_last: bool) -> tuple[int, ...]:
    """Axes of the spatial dimensions of an array with ``ndim`` dims (batched or not)."""
    if channels_last:
        return tuple(range(ndim - 1 - num_spatial, ndim - 1))
    return tuple(range(ndim - num_spatial, ndim))
