"""Winograd F(2x2, 3x3) convolution built from matrix multiplies: ``conv(..., impl="winograd")``.

Lavin & Gray (2016), "Fast Algorithms for Convolutional Neural Networks". A 2x2 block of
outputs of a 3x3 cross-correlation is computed from the 4x4 input tile ``d`` that covers it as

    Y = A^T [ (G g G^T) * (B^T d B) ] A,

where ``*`` is an element-wise product over the 4x4 transformed tile and, summed over input
channels, becomes 16 independent matrix multiplies ``(tiles, C_in) @ (C_in, C_out)``, one per
transformed-tile position. That is 16 products of 4 tiles' worth instead of 36 (2.25x fewer
multiply-adds than a direct 3x3 convolution), all of them XLA's fast ``dot_general``. The
transforms ``B``, ``G`` and ``A`` only hold 0, +-1 and 1/2, so they are written out as adds
and subtracts of strided slices (no multiplies in the input and output transforms).

Numbers: the result equals ``impl="lax"`` to float tolerance, not bit for bit (additions are
re-associated; in float32 the error is a few ulps of the output's magnitude times the sum
length). Gradients come from autodiff through these linear steps; they are again transforms
plus 16 matrix multiplies.

Scope (anything else raises a ``ValueError`` from ``check`` naming the option): 2-D, a 3x3
kernel, stride 1, dilation 1, ``groups=1``, floating-point dtypes, any zero padding, either
layout (channels-first is transposed to channels-last and back).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from convjax.functional.conv_impls import ConvImpl, ConvSpec

__all__ = ["winograd_conv2d_nhwc", "winograd_kernel_transform", "WINOGRAD_IMPL"]

# G of F(2, 3): rows give the 4 transformed taps from the 3 kernel taps.
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def winograd_kernel_transform(kernel):
    """``U = G g G^T`` for every (in, out) channel pair.

    Args:
      kernel: HWIO ``(3, 3, C_in, C_out)``.

    Returns:
      ``(16, C_in, C_out)``: the transformed 4x4 taps, row-major.
    """

    def rows(k, axis):
        # G applied along ``axis`` (size 3 -> 4): [k0, (k0+k1+k2)/2, (k0-k1+k2)/2, k2].
        k0, k1, k2 = (lax.index_in_dim(k, i, axis, keepdims=False) for i in range(3))
        half_sum = (k0 + k2) * 0.5
        return jnp.stack([k0, half_sum + k1 * 0.5, half_sum - k1 * 0.5, k2], axis=axis)

    u = rows(rows(kernel, 0), 1)  # (4, 4, C_in, C_out)
    return u.reshape(16, *kernel.shape[2:])


def _input_transform(parts):
    """``B^T`` along one axis: 4 slices d0..d3 -> 4 transformed slices."""
    d0, d1, d2, d3 = parts
    return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)


def _output_transform(parts):
    """``A^T`` along one axis: 4 slices m0..m3 -> the 2 outputs."""
    m0, m1, m2, m3 = parts
    return (m0 + m1 + m2, m1 - m2 - m3)


def winograd_conv2d_nhwc(x, kernel, padding, *, precision=None, preferred_element_type=None):
    """3x3, stride-1 cross-correlation of a batched NHWC ``x`` by Winograd F(2x2, 3x3).

    Args:
      x: ``(N, H, W, C_in)``.
      kernel: ``(3, 3, C_in, C_out)``.
      padding: ``((top, bottom), (left, right))`` zero padding (non-negative).
      precision, preferred_element_type: passed to the 16 matrix multiplies.

    Returns:
      ``(N, H + top + bottom - 2, W + left + right - 2, C_out)``.
    """
    n, h, w, c_in = x.shape
    c_out = kernel.shape[-1]
    (pt, pb), (pl, pr) = padding
    out_h, out_w = h + pt + pb - 2, w + pl + pr - 2
    th, tw = -(-out_h // 2), -(-out_w // 2)  # tiles per axis (ceil)
    # Pad so that the tiles (4 wide, stride 2) cover 2 * tiles + 2 rows/columns exactly;
    # the extra zeros only feed output positions that are cropped at the end.
    extra_h = 2 * th + 2 - (h + pt + pb)
    extra_w = 2 * tw + 2 - (w + pl + pr)
    xp = lax.pad(
        x,
        jnp.zeros((), x.dtype),
        ((0, 0, 0), (pt, pb + extra_h, 0), (pl, pr + extra_w, 0), (0, 0, 0)),
    )
    wp = xp.shape[2]
    # Row i of every tile: rows i, i + 2, ..., i + 2 * (th - 1) of the padded input.
    row_parts = [
        lax.slice(xp, (0, i, 0, 0), (n, i + 2 * th - 1, wp, c_in), (1, 2, 1, 1)) for i in range(4)
    ]
    transformed = []
    for rows in _input_transform(row_parts):  # (N, th, Wp, C) each
        col_parts = [
            lax.slice(rows, (0, 0, j, 0), (n, th, j + 2 * tw - 1, c_in), (1, 1, 2, 1))
            for j in range(4)
        ]
        transformed.extend(_input_transform(col_parts))  # (N, th, tw, C) each
    v = jnp.stack(transformed).reshape(16, n * th * tw, c_in)
    u = winograd_kernel_transform(kernel)
    m = lax.dot_general(
        v,
        u,
        (((2,), (1,)), ((0,), (0,))),  # contract C_in, batch over the 16 tile positions
        precision=precision,
        preferred_element_type=preferred_element_type,
    ).reshape(4, 4, n, th, tw, c_out)
    rows_out = _output_transform([m[a] for a in range(4)])  # 2 x (4, N, th, tw, K)
    y = jnp.stack([jnp.stack(_output_transform([r[b] for b in range(4)])) for r in rows_out])
    # y[p, q, n, i, j, k] is output (2i + p, 2j + q): interleave and crop the padding tiles.
    y = jnp.transpose(y, (2, 3, 0, 4, 1, 5)).reshape(n, 2 * th, 2 * tw, c_out)
    return y[:, :out_h, :out_w, :]


def _winograd_check(x, kernel, spec: ConvSpec) -> None:
    if spec.num_spatial != 2:
        raise ValueError(
            f"impl='winograd' supports 2-D convolutions only, but the kernel has "
            f"{spec.num_spatial} spatial dimension(s) (kernel.shape={tuple(kernel.shape)}); "
            f"use impl='lax' for 1-D and 3-D."
        )
    if tuple(kernel.shape[:2]) != (3, 3):
        raise ValueError(
            f"impl='winograd' is F(2x2, 3x3) and needs a 3x3 kernel, but "
            f"kernel.shape={tuple(kernel.shape)}; use impl='lax' for other kernel sizes."
        )
    if spec.stride != (1, 1):
        raise ValueError(
            f"impl='winograd' needs stride=1, but stride={spec.stride}; use impl='lax' for "
            f"strided convolutions."
        )
    if spec.dilation != (1, 1):
        raise ValueError(
            f"impl='winograd' needs dilation=1, but dilation={spec.dilation}; use impl='lax' "
            f"for dilated convolutions."
        )
    if spec.groups != 1:
        raise ValueError(
            f"impl='winograd' needs groups=1, but groups={spec.groups}; use impl='lax' for "
            f"grouped or depthwise convolutions."
        )
    for name, arr in (("x", x), ("kernel", kernel)):
        if not jnp.issubdtype(arr.dtype, jnp.floating):
            raise ValueError(
                f"impl='winograd' needs floating-point inputs (its kernel transform halves "
                f"values), but {name} has dtype {arr.dtype}; cast to a float dtype or use "
                f"impl='lax'."
            )


def _winograd_apply(x, kernel, spec: ConvSpec):
    if not spec.channels_last:
        x = jnp.moveaxis(x, 1, -1)
    y = winograd_conv2d_nhwc(
        x,
        kernel,
        spec.padding,
        precision=spec.precision,
        preferred_element_type=spec.preferred_element_type,
    )
    return y if spec.channels_last else jnp.moveaxis(y, -1, 1)


#: The table entry (``conv(..., impl="winograd")``). Measured: slower than XLA's convolution
#: on the CPUs tried and on an H100 in float32; on the H100 in bfloat16 it won the 16x16x32
#: ResNet-20 shape (``benchmarks/results/gpu.md``).
WINOGRAD_IMPL = ConvImpl(
    "winograd",
    _winograd_apply,
    _winograd_check,
    "Winograd F(2x2,3x3): transforms + 16 matmuls (2-D, 3x3, stride 1, groups 1)",
)
