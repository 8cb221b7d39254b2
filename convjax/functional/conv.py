"""N-d convolution (1, 2 and 3 spatial dimensions) and transposed convolution.

Layouts: activations channels-last ``(N, *spatial, C)`` by default or
channels-first ``(N, C, *spatial)`` with ``channels_last=False``; the batch axis is
optional, and several leading batch axes are folded into one and restored (as in Flax).
Kernels are HWIO: ``(*spatial, C_in / groups, C_out)``; the number of spatial dimensions is
read from the kernel (``kernel.ndim - 2``).

``conv`` computes the cross-correlation that deep-learning libraries call convolution,

    y[n, o, k] = b[k] + sum_{tau, c} x_pad[n, o * S + tau * D, c] * w[tau, c, k],

and with ``flip=True`` the textbook convolution ``(x * w)[t] = sum x[t - tau] w[tau]``
(the kernel reversed along every spatial axis). Output size per dimension:
``(W - F_eff + P_lo + P_hi) // S + 1`` with ``F_eff = D * (F - 1) + 1``
(:func:`convjax.functional.shapes.conv_output_size`).

``conv_transpose`` has PyTorch's ``ConvTranspose`` semantics: it is the gradient of
``conv`` with respect to its input. Its kernel is HWIO *of the transposed op itself*:
``(*spatial, C_in / groups, C_out)`` where ``C_in`` are the channels of ``conv_transpose``'s
input and ``C_out`` those of its output, so a transposed layer's kernel reads like a
convolution's (same initialisers, same parameter count). The kernel of the forward
convolution it transposes is :func:`transpose_kernel` of it; PyTorch's ConvTranspose weight
``(C_in, C_out / groups, *spatial)`` converts with
:func:`convjax.interop.conv_transpose_weight_from_torch`.

All argument checking happens here in Python on static shapes, before XLA sees anything.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from convjax.functional import _checks
from convjax.functional.conv_impls import ConvSpec, swap_io, zero_stuff
from convjax.functional.conv_table import get_conv_impl
from convjax.functional.padding import check_padding_mode, check_pads_fit, pad, pad_adjoint
from convjax.functional.shapes import (
    conv_output_size,
    conv_transpose_output_size,
    effective_kernel_size,
    normalize_tuple,
    resolve_padding,
    spatial_axes,
)

__all__ = ["conv", "conv1d", "conv2d", "conv3d", "conv_transpose", "transpose_kernel"]


# --------------------------------------------------------------------------- checks


def _num_spatial(kernel, op: str) -> int:
    if kernel.ndim not in (3, 4, 5):
        raise ValueError(
            f"kernel.shape={tuple(kernel.shape)} has rank {kernel.ndim}, but {op} needs an HWIO "
            f"kernel (*spatial, in_channels/groups, out_channels) of rank 3, 4 or 5 for 1, 2 or "
            f"3 spatial dimensions; reshape the kernel (PyTorch weights: convjax.interop)."
        )
    return kernel.ndim - 2


_SPATIAL_NAMES = {1: "W", 2: "H, W", 3: "D, H, W"}


def _layout(n: int, channels_last: bool) -> str:
    names = _SPATIAL_NAMES[n]
    return f"(..., {names}, C)" if channels_last else f"(..., C, {names})"


def _check_x(x, n: int, kernel, op: str, channels_last: bool = True) -> bool:
    """Return whether ``x`` is batched; raise if its rank does not fit an ``n``-D kernel.

    Several leading batch axes are folded into one before this check (see
    :func:`_fold_batch_axes`), so here ``x`` has rank ``n + 1`` or ``n + 2`` or is too small.
    """
    if x.ndim not in (n + 1, n + 2):
        if x.ndim == n:
            fix = (
                "x has no channel axis: add one, e.g. x[..., None] for a single channel"
                if channels_last
                else "x has no channel axis: add one, e.g. x[None] for a single channel"
            )
        else:
            fix = "add the missing axes, or use a kernel with fewer spatial dimensions"
        raise ValueError(
            f"x.shape={tuple(x.shape)} has rank {x.ndim}, but {op} with the {n}-D kernel of "
            f"shape {tuple(kernel.shape)} needs x of rank >= {n + 1}, laid out "
            f"{_layout(n, channels_last)} (channels_last={bool(channels_last)}) with any "
            f"number of leading batch axes; {fix}."
        )
    batched = x.ndim == n + 2
    axes = spatial_axes(x.ndim, n, channels_last)
    empty = [a for a in axes if x.shape[a] == 0]
    if empty:
        raise ValueError(
            f"x.shape={tuple(x.shape)} has a zero-size spatial axis (axis {empty[0]}, read as "
            f"{_layout(n, channels_last)} with channels_last={bool(channels_last)}); {op} needs "
            f"at least one sample along every spatial axis."
        )
    return batched


def _fold_batch_axes(op):
    """Let ``op(x, kernel, ...)`` take several leading batch axes, as Flax's layers do.

    ``x`` of shape ``(*lead, *spatial, C)`` (or ``(*lead, C, *spatial)``) with two or more
    leading axes is reshaped to ``(prod(lead), ...)``, ``op`` runs on that batch, and the
    result gets ``lead`` back. Unbatched and singly batched inputs go to ``op`` unchanged.
    """

    @functools.wraps(op)
    def wrapper(x, kernel, bias=None, **kwargs):
        name = op.__name__
        x = _checks.as_array(x, "x", name)
        kernel = _checks.as_array(kernel, "kernel", name)
        n = _num_spatial(kernel, name)
        x, lead = _checks.fold_leading_axes(x, n + 1)
        y = op(x, kernel, bias, **kwargs)
        return _checks.unfold_leading_axes(y, lead)

    return wrapper


def _check_groups(groups, c_in: int, kernel, layout: str = "", channels_last=True) -> int:
    """``groups`` as an int; raise if it or the channel counts do not fit.

    ``layout`` (e.g. ``"x.shape=(2, 3, 8, 8) read as (..., H, W, C)"``) is shown with a
    channel mismatch, so a channels-first array passed as channels-last is recognisable.
    """
    if isinstance(groups, bool) or not hasattr(groups, "__index__") or int(groups) < 1:
        raise ValueError(f"groups={groups!r} must be an int >= 1; use 1 for a dense convolution.")
    groups = int(groups)
    c_out = kernel.shape[-1]
    if c_in % groups or c_out % groups:
        raise ValueError(
            f"groups={groups} must divide both the input channels ({c_in}) and the output "
            f"channels (kernel.shape[-1]={c_out}); choose a common divisor of {c_in} and "
            f"{c_out}."
        )
    if kernel.shape[-2] * groups != c_in:
        shown = f"{layout} has {c_in} input channels" if layout else f"x has {c_in} channels"
        other = (
            f" If x is laid out the other way, pass channels_last={not channels_last}."
            if layout
            else ""
        )
        raise ValueError(
            f"kernel.shape={tuple(kernel.shape)} expects {kernel.shape[-2]} * groups = "
            f"{kernel.shape[-2] * groups} input channels (groups={groups}), but {shown}; "
            f"the kernel's second-to-last axis must be in_channels / groups = "
            f"{c_in // groups}.{other}"
        )
    return groups


def _check_bias(bias, c_out: int, op: str = "conv"):
    if bias is None:
        return None
    bias = _checks.as_array(bias, "bias", op)
    if bias.shape != (c_out,):
        raise ValueError(
            f"bias.shape={tuple(bias.shape)} must be ({c_out},), one value per output channel "
            f"(kernel.shape[-1]={c_out})."
        )
    return bias


def _add_bias(y, bias, n: int, channels_last: bool):
    if bias is None:
        return y
    return y + (bias if channels_last else bias.reshape((-1,) + (1,) * n))


def _flip_spatial(kernel, n: int):
    return kernel[(slice(None, None, -1),) * n]


def _channel_axis(ndim: int, batched: bool, channels_last: bool) -> int:
    return ndim - 1 if channels_last else (1 if batched else 0)


def _channel_info(x, n: int, batched: bool, channels_last: bool) -> tuple[int, str]:
    """Input channel count and the phrase describing the layout it was read with."""
    c_in = x.shape[_channel_axis(x.ndim, batched, channels_last)]
    return c_in, f"x.shape={tuple(x.shape)} read as {_layout(n, channels_last)}"


# --------------------------------------------------------------------------- conv


@_fold_batch_axes
def conv(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding="VALID",
    dilation=1,
    groups=1,
    padding_mode="zeros",
    channels_last=True,
    flip=False,
    impl="lax",
    precision=None,
    preferred_element_type=None,
    strict=False,
):
    """N-d convolution (cross-correlation; true convolution with ``flip=True``).

    Args:
      x: ``(N, *spatial, C_in)`` or ``(*spatial, C_in)`` (channels-last), or
        ``(N, C_in, *spatial)`` / ``(C_in, *spatial)`` with ``channels_last=False``;
        1 to 3 spatial dimensions. Several leading batch axes ``(..., *spatial, C_in)`` are
        folded into one and restored, as in Flax.
      kernel: HWIO ``(*F, C_in / groups, C_out)``; its rank (3, 4, 5) sets the number of
        spatial dimensions.
      bias: ``(C_out,)`` or None.
      stride: S, an int or one per spatial dimension (>= 1).
      padding: ``"VALID"``, ``"SAME"`` (TensorFlow: output ``ceil(W / S)``, odd extra on
        the high side), ``"SAME_LOWER"`` (extra on the low side), ``"FULL"``, ``"CAUSAL"``
        (all ``F_eff - 1`` before the input, in every dimension), an int, one int per
        dimension, or one ``(lo, hi)`` pair per dimension. Names are case-insensitive.
        The default is ``"VALID"``, as PyTorch's ``padding=0``; ``flax.nnx.Conv``
        defaults to ``"SAME"``.
      dilation: D, spacing between kernel taps (>= 1), an int or one per dimension. Any
        stride and dilation may be combined.
      groups: feature groups; ``C_in`` and ``C_out`` must be multiples. ``groups == C_in``
        is depthwise, with a channel multiplier of ``C_out / C_in``.
      padding_mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``
        (PyTorch's names), applied to whatever ``padding`` resolves to; circular padding
        wider than the input wraps more than once, reflect allows at most ``W - 1``.
      channels_last: layout of ``x`` and the result.
      flip: if True, reverse the kernel along its spatial axes first (true convolution).
      impl: ``"lax"`` (default: XLA's convolution and JAX's derivatives),
        ``"matmul_grad"`` (the same, but the kernel gradient on XLA's CPU backend as
        per-tap matrix multiplies; ``convjax.functional.conv_grad``), ``"im2col"``,
        ``"direct"`` or ``"winograd"`` (``convjax.functional.conv_table``); all give the
        same numbers to float round-off, and all support ``jax.grad``, ``jax.jvp`` and
        second derivatives. ``convjax.tuning`` measures which is fastest here.
      precision: ``lax.Precision`` for the underlying products, or None.
      preferred_element_type: accumulation and result dtype, or None.
      strict: if True, a window that does not tile the padded input exactly (so the
        floor in the output size drops input) is an error.

    Returns:
      ``(N, *out, C_out)`` (or channels-first / unbatched, like ``x``) with
      ``out = (W - F_eff + P_lo + P_hi) // S + 1`` per dimension.

    Raises:
      ValueError: bad stride/dilation/groups/padding/padding_mode/impl, rank or channel
        mismatch, a kernel larger than the padded input, reflect padding too wide, an
        option the chosen ``impl`` does not support, or (``strict``) a non-tiling stride.

    >>> import jax.numpy as jnp
    >>> conv(jnp.ones((7, 7, 3)), jnp.ones((3, 3, 3, 10)), stride=2).shape
    (3, 3, 10)
    """
    n = _num_spatial(kernel, "conv")
    batched = _check_x(x, n, kernel, "conv", channels_last)
    c_in, layout = _channel_info(x, n, batched, channels_last)
    groups = _check_groups(groups, c_in, kernel, layout, channels_last)
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    padding_mode = check_padding_mode(padding_mode)
    precision = _checks.check_precision(precision, "conv")
    preferred_element_type = _checks.check_element_type(preferred_element_type, "conv")
    entry = get_conv_impl(impl)
    in_spatial = tuple(x.shape[a] for a in spatial_axes(x.ndim, n, channels_last))
    kernel_spatial = tuple(kernel.shape[:n])
    pads = resolve_padding(padding, in_spatial, kernel_spatial, stride, dilation)
    for w, f, s, p, d in zip(in_spatial, kernel_spatial, stride, pads, dilation):
        conv_output_size(w, f, s, p, d, strict=strict)  # raises if the filter does not fit
    check_pads_fit(pads, in_spatial, padding_mode, "padding", padding)
    bias = _check_bias(bias, kernel.shape[-1])

    dtype = jnp.result_type(x, kernel)
    explicit = padding_mode != "zeros"
    spec = ConvSpec(
        stride=stride,
        padding=((0, 0),) * n if explicit else pads,  # explicit modes pad before the impl
        dilation=dilation,
        groups=groups,
        channels_last=bool(channels_last),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    entry.check(_abstract(x, dtype), _abstract(kernel, dtype), spec)
    return _conv_core(
        x.astype(dtype),
        kernel.astype(dtype),
        bias,
        spec=spec,
        impl=impl,
        mode_pads=(padding_mode, pads) if explicit else None,
        flip=bool(flip),
        batched=batched,
    )


def _abstract(a, dtype):
    return jax.ShapeDtypeStruct(a.shape, dtype)


# Everything after validation is one jitted function of static options: called eagerly,
# a configuration compiles once instead of dispatching each slice, pad and matmul of
# im2col/direct as its own XLA computation (27 per 3x3x3 kernel); inside a user's jit it
# is inlined.
@functools.partial(jax.jit, static_argnames=("spec", "impl", "mode_pads", "flip", "batched"))
def _conv_core(x, kernel, bias, *, spec, impl, mode_pads, flip, batched):
    n = spec.num_spatial
    if not batched:
        x = x[None]
    if mode_pads is not None:
        mode, pads = mode_pads
        x = pad(x, pads, mode, spec.channels_last)
    if flip:
        kernel = _flip_spatial(kernel, n)
    y = _add_bias(get_conv_impl(impl).apply(x, kernel, spec), bias, n, spec.channels_last)
    return y if batched else y[0]


def _ranked(num_spatial: int):
    name = f"conv{num_spatial}d"

    def variant(x, kernel, bias=None, **kwargs):
        kernel = jnp.asarray(kernel)
        if kernel.ndim != num_spatial + 2:
            raise ValueError(
                f"kernel.shape={tuple(kernel.shape)} has rank {kernel.ndim}, but {name} needs a "
                f"rank-{num_spatial + 2} HWIO kernel (*{num_spatial} spatial, in/groups, out); "
                f"use conv{kernel.ndim - 2}d or conv for other ranks."
                if kernel.ndim in (3, 4, 5)
                else f"kernel.shape={tuple(kernel.shape)} has rank {kernel.ndim}, but {name} "
                f"needs a rank-{num_spatial + 2} HWIO kernel (*{num_spatial} spatial, "
                f"in/groups, out)."
            )
        return conv(x, kernel, bias, **kwargs)

    variant.__name__ = variant.__qualname__ = name
    variant.__doc__ = (
        f"{num_spatial}-D :func:`conv`: ``kernel`` must have rank {num_spatial + 2} "
        f"(``{'DHW'[3 - num_spatial :]}IO``), ``x`` rank {num_spatial + 2} (batched) or "
        f"{num_spatial + 1}. Keyword arguments as for :func:`conv`."
    )
    return variant


conv1d = _ranked(1)
conv2d = _ranked(2)
conv3d = _ranked(3)


# --------------------------------------------------------------------------- transpose


def transpose_kernel(kernel, groups: int = 1):
    """Swap the in/out roles of an HWIO kernel, group by group.

    A kernel ``(*F, A / groups, B)`` of a convolution from ``A`` to ``B`` channels becomes
    ``(*F, B / groups, A)``, the kernel of the transposed map from ``B`` back to ``A``
    channels (no spatial flip: :func:`conv_transpose` flips internally). So, for
    ``y = conv(x, w, groups=g, ...)``, the input gradient is
    ``conv_transpose(dy, transpose_kernel(w, g), groups=g, ...)``. Applying it twice
    gives the kernel back.
    """
    kernel = _checks.as_array(kernel, "kernel", "transpose_kernel")
    if kernel.ndim < 3:
        raise ValueError(
            f"kernel.shape={tuple(kernel.shape)} must be HWIO with at least one spatial axis."
        )
    if isinstance(groups, bool) or not hasattr(groups, "__index__"):
        raise ValueError(
            f"groups={groups!r} must be an int >= 1 (the groups of the convolution the kernel "
            f"belongs to); use groups=1 for a dense convolution."
        )
    groups = int(groups)
    i, o = kernel.shape[-2:]
    if groups < 1 or o % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide the kernel's output channels ({o})."
        )
    return swap_io(kernel, groups)


def _transpose_sizes(value, n: int, in_spatial) -> tuple[int, ...]:
    """``output_size`` of :func:`conv_transpose`: one int >= 1 per spatial dimension."""
    if isinstance(value, (str, bytes, bool)) or value is None:
        ok = False
    elif hasattr(value, "__index__"):
        ok = True
    else:
        try:
            ok = len(value) == n
        except TypeError:
            ok = False
    if not ok:
        raise ValueError(
            f"output_size={value!r} must be one int or {n} ints, the spatial size of the "
            f"result (like PyTorch's ConvTranspose forward(x, output_size)); e.g. "
            f"output_size={tuple(2 * w for w in in_spatial)!r}. Pass the spatial sizes only, "
            f"not the batch or channel axes."
        )
    return normalize_tuple(value, n, "output_size")


def _transpose_padding(
    padding, output_padding, output_size, in_spatial, kernel_spatial, stride, dilation
):
    """Resolve ``conv_transpose``'s padding forms to ``(lo, hi)`` crops and output padding.

    * amounts (PyTorch): ``pads`` as given; ``output_size`` (if any) picks the output
      padding as PyTorch's ``ConvTranspose.forward(x, output_size)`` does.
    * ``"SAME"`` / ``"VALID"`` (TensorFlow, Flax): the result is the input gradient of a
      forward ``conv`` with that padding on an input of size ``output_size``, by default
      ``W * S`` for SAME and ``W * S + max(F_eff - S, 0)`` for VALID (``lax.conv_transpose``).
    """
    n = len(in_spatial)
    explicit_op = any(output_padding)
    f_eff = [effective_kernel_size(f, d) for f, d in zip(kernel_spatial, dilation)]
    if isinstance(padding, str):
        key = padding.upper()
        if key not in ("SAME", "VALID"):
            raise ValueError(
                f"padding={padding!r} is not a padding name conv_transpose knows; use 'SAME' "
                f"(output W * S, as TensorFlow and Flax), 'VALID', an int, one int per "
                f"dimension, or one (lo, hi) pair per dimension (PyTorch's amounts)."
            )
        if explicit_op:
            raise ValueError(
                f"output_padding={output_padding!r} with padding={padding!r}: a padding name "
                f"fixes the output size itself; pass output_size=(...) to choose another size, "
                f"or numeric padding with output_padding."
            )
        if output_size is None:
            target = tuple(
                w * s + (max(fe - s, 0) if key == "VALID" else 0)
                for w, s, fe in zip(in_spatial, stride, f_eff)
            )
        else:
            target = _transpose_sizes(output_size, n, in_spatial)
        pads = resolve_padding(key, target, kernel_spatial, stride, dilation)
    else:
        pads = resolve_padding(padding, in_spatial, kernel_spatial, stride, dilation)
        if output_size is None:
            return pads, output_padding
        if explicit_op:
            raise ValueError(
                f"output_padding={output_padding!r} and output_size={output_size!r} both set "
                f"the output size; pass only one of them."
            )
        target = _transpose_sizes(output_size, n, in_spatial)
    smallest = tuple(
        (w - 1) * s - lo - hi + fe for w, s, (lo, hi), fe in zip(in_spatial, stride, pads, f_eff)
    )
    largest = tuple(m + max(s, d) - 1 for m, s, d in zip(smallest, stride, dilation))
    if any(not lo <= t <= hi for t, lo, hi in zip(target, smallest, largest)):
        raise ValueError(
            f"output_size={tuple(target)!r} cannot be reached from an input of spatial size "
            f"{tuple(in_spatial)} with padding={padding!r}, stride={tuple(stride)}, "
            f"dilation={tuple(dilation)}: valid sizes range from {smallest} to {largest}; "
            f"pick a size in that range (or change the stride or padding)."
        )
    return pads, tuple(t - m for t, m in zip(target, smallest))


@_fold_batch_axes
def conv_transpose(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    output_size=None,
    dilation=1,
    groups=1,
    padding_mode="zeros",
    channels_last=True,
    impl="lax",
    precision=None,
    preferred_element_type=None,
):
    """Transposed convolution with PyTorch's ``ConvTranspose{1,2,3}d`` semantics.

    ``conv_transpose(dy, transpose_kernel(w, g), stride=S, padding=P, dilation=D, groups=g,
    output_padding=op, padding_mode=m)`` is the gradient of ``conv(x, w, stride=S,
    padding=P, dilation=D, groups=g, padding_mode=m)`` with respect to ``x``; ``op`` picks
    which of the ``S`` input sizes that map to the same output size is produced.

    Args:
      x: ``(N, *spatial, C_in)`` / ``(*spatial, C_in)``, or channels-first; several
        leading batch axes are folded into one and restored, as in Flax.
      kernel: ``(*F, C_in / groups, C_out)``, HWIO of this op (``C_in`` = channels of
        ``x``), used as the *gradient* of a convolution uses it: spatially flipped. From a
        PyTorch weight ``(C_in, C_out / groups, *F)`` use
        :func:`convjax.interop.conv_transpose_weight_from_torch`.
      bias: ``(C_out,)`` or None.
      stride: S (>= 1), int or per dimension: ``S - 1`` zeros go between input samples.
      padding: P, an int, one int per dimension, or ``(lo, hi)`` pairs: the amount removed
        from each side of the full transposed output (the padding of the forward conv,
        PyTorch's meaning; default 0). Or ``"SAME"`` / ``"VALID"`` with TensorFlow's and
        Flax's meaning: ``"SAME"`` gives spatial size ``W * S``, ``"VALID"`` gives
        ``W * S + max(F_eff - S, 0)``; the result is the gradient of a ``conv`` with that
        padding name on an input of that size.
      output_padding: extra size on the high side, >= 0 and < max(S, D) per dimension
        (numeric padding only).
      output_size: the spatial size of the result, one int per dimension (or one for
        all), instead of ``output_padding``: as PyTorch's ``ConvTranspose.forward(x,
        output_size)``, it picks the output padding; with ``"SAME"``/``"VALID"`` it is the
        size of the forward convolution's input (TensorFlow's ``output_shape``).
      dilation: D (>= 1), kernel dilation.
      groups: feature groups; ``C_in`` and ``C_out`` must be multiples.
      padding_mode: ``"zeros"`` (default: the padding is cropped, PyTorch's only mode),
        ``"circular"``, ``"reflect"`` or ``"replicate"``: the gradient of ``conv`` with
        that mode, so the samples the forward padding copied are folded back (added) onto
        the samples they copy; circular is Flax's ``padding="CIRCULAR"`` (see below).
      channels_last, impl, precision, preferred_element_type: as for :func:`conv`; every
        implementation runs on the explicitly zero-stuffed input.

    Returns:
      Spatial size ``(W - 1) * S - P_lo - P_hi + D * (F - 1) + output_padding + 1``
      (:func:`convjax.functional.shapes.conv_transpose_output_size`), or ``output_size``.

    Porting a Flax or Equinox transposed kernel: both slide the kernel *unflipped* over the
    zero-stuffed input (Flax's default ``transpose_kernel=False``), while this op, like
    PyTorch and TensorFlow, uses it as a convolution's gradient does, flipped. Flax's kernel
    is already ``(*F, C_in, C_out)``; Equinox's weight is ``(C_out, C_in, *F)``::

        kernel = flax_kernel[::-1, ::-1]                                  # 2-D, Flax
        kernel = jnp.transpose(eqx_weight, (2, 3, 1, 0))[::-1, ::-1]      # 2-D, Equinox

    Flax's ``ConvTranspose(..., padding="SAME")`` is then ``conv_transpose(x, kernel,
    stride=S, padding="SAME")``; Equinox's padding and output padding have PyTorch's
    meaning and port unchanged.
    """
    n = _num_spatial(kernel, "conv_transpose")
    batched = _check_x(x, n, kernel, "conv_transpose", channels_last)
    c_in, layout = _channel_info(x, n, batched, channels_last)
    groups = _check_groups(groups, c_in, kernel, layout, channels_last)
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    output_padding = normalize_tuple(output_padding, n, "output_padding", minimum=0)
    padding_mode = check_padding_mode(padding_mode)
    precision = _checks.check_precision(precision, "conv_transpose")
    preferred_element_type = _checks.check_element_type(preferred_element_type, "conv_transpose")
    entry = get_conv_impl(impl)
    in_spatial = tuple(x.shape[a] for a in spatial_axes(x.ndim, n, channels_last))
    kernel_spatial = tuple(kernel.shape[:n])
    pads, output_padding = _transpose_padding(
        padding, output_padding, output_size, in_spatial, kernel_spatial, stride, dilation
    )
    out_spatial = tuple(
        conv_transpose_output_size(w, f, s, p, d, op)  # validates output_padding and padding
        for w, f, s, p, d, op in zip(
            in_spatial, kernel_spatial, stride, pads, dilation, output_padding
        )
    )
    check_pads_fit(pads, out_spatial, padding_mode, "padding", padding)
    bias = _check_bias(bias, kernel.shape[-1], "conv_transpose")
    # A non-zero mode: the transposed convolution without cropping, then the padding's
    # adjoint folds the border back (pad_adjoint; for zeros that is the crop itself).
    mode_pads = None
    if padding_mode != "zeros":
        mode_pads, pads = pads, ((0, 0),) * n

    dtype = jnp.result_type(x, kernel)
    spec = ConvSpec(
        stride=(1,) * n,
        padding=((0, 0),) * n,
        dilation=dilation,
        groups=groups,
        channels_last=bool(channels_last),
        precision=precision,
        preferred_element_type=preferred_element_type,
    )
    entry.check(_abstract(x, dtype), _abstract(kernel, dtype), spec)
    # As a convolution: stuff S - 1 zeros between input samples, pad D * (F - 1) on each
    # side minus the forward padding (negative = crop), plus output_padding on the high
    # side, and slide the spatially flipped kernel at stride 1.
    lax_pads = tuple(
        (d * (f - 1) - lo, d * (f - 1) - hi + op)
        for f, d, (lo, hi), op in zip(kernel_spatial, dilation, pads, output_padding)
    )
    y = _conv_transpose_core(
        x.astype(dtype),
        kernel.astype(dtype),
        bias if mode_pads is None else None,
        spec=spec,
        impl=impl,
        stride=stride,
        lax_pads=lax_pads,
        batched=batched,
    )
    if mode_pads is None:
        return y
    # The bias is added after folding: the border copies carry no bias of their own.
    y = pad_adjoint(y, mode_pads, padding_mode, channels_last)
    return _add_bias(y, bias, n, bool(channels_last))


@functools.partial(jax.jit, static_argnames=("spec", "impl", "stride", "lax_pads", "batched"))
def _conv_transpose_core(x, kernel, bias, *, spec, impl, stride, lax_pads, batched):
    n = spec.num_spatial
    if not batched:
        x = x[None]
    flipped = _flip_spatial(kernel, n)
    # Zero-stuffing is explicit for every impl, "lax" included: lax.conv_general_dilated's
    # own lhs_dilation crashed XLA's CPU compiler (a check failure in its algebraic
    # simplifier that aborts the process) for a 3-D case with stride (3, 3, 2) and padding
    # ((1, 0), (1, 2), (1, 1)) on a 6x7x6 input; the stuffed input plus a stride-1
    # convolution compiled and gave the same numbers.
    stuffed, flipped = jax.lax.optimization_barrier(
        (zero_stuff(x, lax_pads, stride, spec.channels_last), flipped)
    )
    y = get_conv_impl(impl).apply(stuffed, flipped, spec)
    y = _add_bias(y, bias, n, spec.channels_last)
    return y if batched else y[0]
