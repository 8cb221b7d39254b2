"""N-d convolution (1, 2 and 3 spatial dimensions) and transposed convolution.

Layouts: activations channels-last ``(N, *spatial, C)`` by default or
channels-first ``(N, C, *spatial)`` with ``channels_last=False``; the batch axis is
optional. Kernels are HWIO: ``(*spatial, C_in / groups, C_out)``; the number of spatial
dimensions is read from the kernel (``kernel.ndim - 2``).

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

from convjax.functional.conv_impls import ConvSpec, swap_io, zero_stuff
from convjax.functional.conv_table import get_conv_impl
from convjax.functional.padding import check_padding_mode, check_pads_fit, pad
from convjax.functional.shapes import (
    conv_output_size,
    conv_transpose_output_size,
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


def _check_x(x, n: int, kernel, op: str) -> bool:
    """Return whether ``x`` is batched; raise if its rank does not fit an ``n``-D kernel."""
    if x.ndim == n + 2:
        return True
    if x.ndim == n + 1:
        return False
    raise ValueError(
        f"x.shape={tuple(x.shape)} has rank {x.ndim}, but the {n}-D kernel of shape "
        f"{tuple(kernel.shape)} needs x of rank {n + 2} (batch, {n} spatial, channels) or "
        f"{n + 1} (unbatched) in {op}; add or remove axes, or use a kernel with {x.ndim - 2} "
        f"spatial dimension(s)."
    )


def _check_groups(groups, c_in: int, kernel) -> int:
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
        raise ValueError(
            f"kernel.shape={tuple(kernel.shape)} expects {kernel.shape[-2]} * groups = "
            f"{kernel.shape[-2] * groups} input channels (groups={groups}), but x has {c_in}; "
            f"the kernel's second-to-last axis must be in_channels / groups = "
            f"{c_in // groups}."
        )
    return groups


def _check_bias(bias, c_out: int):
    if bias is None:
        return None
    bias = jnp.asarray(bias)
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


# --------------------------------------------------------------------------- conv


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
        1 to 3 spatial dimensions.
      kernel: HWIO ``(*F, C_in / groups, C_out)``; its rank (3, 4, 5) sets the number of
        spatial dimensions.
      bias: ``(C_out,)`` or None.
      stride: S, an int or one per spatial dimension (>= 1).
      padding: ``"VALID"``, ``"SAME"`` (TensorFlow: output ``ceil(W / S)``, odd extra on
        the high side), ``"SAME_LOWER"`` (extra on the low side), ``"FULL"``, ``"CAUSAL"``
        (all ``F_eff - 1`` before the input, in every dimension), an int, one int per
        dimension, or one ``(lo, hi)`` pair per dimension. Names are case-insensitive.
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
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    n = _num_spatial(kernel, "conv")
    batched = _check_x(x, n, kernel, "conv")
    c_in = x.shape[_channel_axis(x.ndim, batched, channels_last)]
    groups = _check_groups(groups, c_in, kernel)
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    padding_mode = check_padding_mode(padding_mode)
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
    kernel = jnp.asarray(kernel)
    if kernel.ndim < 3:
        raise ValueError(
            f"kernel.shape={tuple(kernel.shape)} must be HWIO with at least one spatial axis."
        )
    groups = int(groups)
    i, o = kernel.shape[-2:]
    if groups < 1 or o % groups:
        raise ValueError(
            f"groups={groups} must be >= 1 and divide the kernel's output channels ({o})."
        )
    return swap_io(kernel, groups)


def conv_transpose(
    x,
    kernel,
    bias=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups=1,
    channels_last=True,
    impl="lax",
    precision=None,
    preferred_element_type=None,
):
    """Transposed convolution with PyTorch's ``ConvTranspose{1,2,3}d`` semantics.

    ``conv_transpose(dy, transpose_kernel(w, g), stride=S, padding=P, dilation=D, groups=g,
    output_padding=op)`` is the gradient of ``conv(x, w, stride=S, padding=P, dilation=D,
    groups=g)`` with respect to ``x``; ``op`` picks which of the ``S`` input sizes that map to
    the same output size is produced.

    Args:
      x: ``(N, *spatial, C_in)`` / ``(*spatial, C_in)``, or channels-first.
      kernel: ``(*F, C_in / groups, C_out)``, HWIO of this op (``C_in`` = channels of
        ``x``). From a PyTorch weight ``(C_in, C_out / groups, *F)`` use
        :func:`convjax.interop.conv_transpose_weight_from_torch`.
      bias: ``(C_out,)`` or None.
      stride: S (>= 1), int or per dimension: ``S - 1`` zeros go between input samples.
      padding: P, an int, one int per dimension, or ``(lo, hi)`` pairs: the amount removed
        from each side of the full transposed output (the padding of the forward conv).
        Padding names such as ``"SAME"`` are refused: PyTorch has none for this op.
      output_padding: extra size on the high side, >= 0 and < max(S, D) per dimension.
      dilation: D (>= 1), kernel dilation.
      groups: feature groups; ``C_in`` and ``C_out`` must be multiples.
      channels_last, impl, precision, preferred_element_type: as for :func:`conv`; every
        implementation runs on the explicitly zero-stuffed input.

    Returns:
      Spatial size ``(W - 1) * S - P_lo - P_hi + D * (F - 1) + output_padding + 1``
      (:func:`convjax.functional.shapes.conv_transpose_output_size`).
    """
    x = jnp.asarray(x)
    kernel = jnp.asarray(kernel)
    n = _num_spatial(kernel, "conv_transpose")
    batched = _check_x(x, n, kernel, "conv_transpose")
    c_in = x.shape[_channel_axis(x.ndim, batched, channels_last)]
    groups = _check_groups(groups, c_in, kernel)
    stride = normalize_tuple(stride, n, "stride")
    dilation = normalize_tuple(dilation, n, "dilation")
    output_padding = normalize_tuple(output_padding, n, "output_padding", minimum=0)
    if isinstance(padding, str):
        raise ValueError(
            f"padding={padding!r}: conv_transpose takes PyTorch-style amounts (an int, one int "
            f"per dimension, or one (lo, hi) pair per dimension), not padding names; pass the "
            f"padding of the forward convolution as numbers."
        )
    entry = get_conv_impl(impl)
    in_spatial = tuple(x.shape[a] for a in spatial_axes(x.ndim, n, channels_last))
    kernel_spatial = tuple(kernel.shape[:n])
    pads = resolve_padding(padding, in_spatial, kernel_spatial, stride, dilation)
    for w, f, s, p, d, op in zip(
        in_spatial, kernel_spatial, stride, pads, dilation, output_padding
    ):
        conv_transpose_output_size(w, f, s, p, d, op)  # validates output_padding and padding
    bias = _check_bias(bias, kernel.shape[-1])

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
    return _conv_transpose_core(
        x.astype(dtype),
        kernel.astype(dtype),
        bias,
        spec=spec,
        impl=impl,
        stride=stride,
        lax_pads=lax_pads,
        batched=batched,
    )


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
