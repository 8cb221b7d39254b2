"""XLA's convolution with chosen derivative rules: ``impl="lax"`` and ``impl="matmul_grad"``.

Both run the forward pass as one ``lax.conv_general_dilated``. They differ in how the
derivative is formed:

  * ``"lax"``: JAX's own rules (the input gradient and the kernel gradient are the
    convolutions JAX's transpose rules emit), except for 3-D convolutions with a stride > 1,
    whose input gradient is written out below (``_input_tangent``) because JAX's own form
    aborted XLA's CPU compiler.
  * ``"matmul_grad"``: the same forward and input gradient; the kernel gradient on XLA's CPU
    backend is one matrix multiply per kernel tap, ``dk[tap] = x_tap^T @ dy`` (the contraction
    over ``N * prod(out)`` positions), and on every other platform (GPU, TPU: cuDNN and XLA
    serve the convolution well) XLA's own. The platform is chosen when the program is lowered
    (``lax.platform_dependent``), so one traced function serves every backend and nothing is
    stored anywhere.

Why a kernel gradient of matrix multiplies: the kernel gradient JAX emits is a convolution
with the batch as the contracted axis and the output size as the window. On an AVX2-only AMD
EPYC (jax 0.10.2) it took 531 ms for x (128, 28, 28, 32) -> 32, 3x3 SAME, 19x the forward
pass, while nine per-tap matrix multiplies written in ``jnp`` took 109 ms. On an AVX-512 AMD
EPYC with the same jaxlib, XLA hands that convolution to its YNNPACK library (a
``__ynn_fusion`` in the compiled program) and it took 39 ms, 1.4x the forward, against 170 ms
for the per-tap matrix multiplies. There the products are not the cost but the shifted
inputs are: in one run (load 5.5), the patch-matrix product with its operands already in
memory took 25 ms (the forward 26 ms), while writing the nine shifted copies of ``x`` took
159 ms. Which
one wins depends on the CPU, so ``"lax"`` stays the default and :mod:`convjax.tuning`
measures both on the machine at hand (figures: ``benchmarks/results/conv_grad.md``).

How: a ``jax.custom_jvp`` whose tangent is ``conv(dx, k) + L(x, dk)``, with ``L`` linear in
``dk``. Reverse mode transposes the tangent, so ``L``'s automatic transpose is the kernel
gradient: for ``L = "direct"`` (the sum over taps of ``x_tap @ dk[tap]``) that is the per-tap
``x_tap^T @ dy``. Because the rule is a JVP, forward mode (``jax.jvp``), ``jax.hessian`` and
``gradcheck(order=2)`` keep working; a ``custom_vjp`` would lose forward mode.

Numbers: the per-tap matrix multiplies sum the same products as XLA's kernel-gradient
convolution in another order, so the two kernel gradients agree to float round-off (a few
ulps times the sum length), and exactly in structure: the same zero padding, strides,
dilation, groups and layouts, for 1, 2 and 3 spatial dimensions.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from convjax.functional.conv_impls import ConvImpl, ConvSpec, direct_apply, lax_forward, no_check

__all__ = ["LAX_IMPL", "MATMUL_GRAD_IMPL", "KERNEL_GRADS", "conv_with_grad"]

#: How the kernel gradient is formed: ``"xla"`` (JAX's rule on every platform) or
#: ``"matmul"`` (per-tap matrix multiplies on the CPU, JAX's rule elsewhere).
KERNEL_GRADS = ("xla", "matmul")


def _stuffed_input_grad(spec: ConvSpec) -> bool:
    # JAX differentiates conv_general_dilated w.r.t. its input with a convolution that uses
    # lhs_dilation = stride. For 3-D strided convolutions whose output is small next to the
    # kernel, XLA's CPU compiler aborted the whole process compiling that gradient
    # (algebraic_simplifier.cc "Window dimensions do not match RHS shape"; jax 0.10.2: input
    # 6x7x6, kernel 3x3x2, stride (3, 3, 2), padding ((1, 0), (1, 2), (1, 1))).
    return spec.num_spatial == 3 and any(s > 1 for s in spec.stride)


def _input_tangent(dx, kernel, spec: ConvSpec):
    """``conv(dx, kernel)``, written so that its transpose never has ``lhs_dilation``.

    For the 3-D strided case: a stride-1 convolution, then every ``S``-th output. Its
    transpose (the input gradient) is then a zero-stuffed cotangent (the slice's transpose)
    convolved at stride 1, the form that compiles; the optimisation barrier, which transposes
    to itself, keeps XLA from folding the stuffing back into the convolution as base
    dilation. Forward mode pays the stride-1 convolution (``prod(S)`` times the work).
    """
    if not _stuffed_input_grad(spec):
        return lax_forward(dx, kernel, spec)
    n = spec.num_spatial
    full = lax.optimization_barrier(
        lax_forward(dx, kernel, dataclasses.replace(spec, stride=(1,) * n))
    )
    axes = range(1, n + 1) if spec.channels_last else range(2, n + 2)
    strides = [1] * full.ndim
    for a, s in zip(axes, spec.stride):
        strides[a] = s
    return lax.slice(full, (0,) * full.ndim, full.shape, strides)


def _kernel_tangent(x, dkernel, spec: ConvSpec, kernel_grad: str):
    """``conv(x, dkernel)`` in the form whose transpose is the kernel gradient wanted."""
    xla = functools.partial(lax_forward, spec=spec)
    if kernel_grad == "xla":
        return xla(x, dkernel)
    # Per-tap matrix multiplies on XLA's CPU backend, XLA's convolution elsewhere; the
    # branch is picked at lowering (the compiled CPU program holds no conditional).
    return lax.platform_dependent(
        x, dkernel, cpu=functools.partial(direct_apply, spec=spec), default=xla
    )


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(x, kernel, spec, kernel_grad):
    return lax_forward(x, kernel, spec)


def _conv_jvp(spec, kernel_grad, primals, tangents):
    x, kernel = primals
    dx, dkernel = tangents
    y = _conv(x, kernel, spec, kernel_grad)
    terms = []
    # Symbolic zeros: a gradient w.r.t. the kernel alone never computes conv(0, kernel).
    if not isinstance(dx, SymbolicZero):
        terms.append(_input_tangent(dx, kernel, spec))
    if not isinstance(dkernel, SymbolicZero):
        terms.append(_kernel_tangent(x, dkernel, spec, kernel_grad))
    if not terms:
        return y, jnp.zeros_like(y)
    return y, terms[0] if len(terms) == 1 else terms[0] + terms[1]


_conv.defjvp(_conv_jvp, symbolic_zeros=True)


def conv_with_grad(x, kernel, spec: ConvSpec, kernel_grad: str = "xla"):
    """``lax.conv_general_dilated`` for ``spec`` with the derivative rules described above.

    Args:
      x: batched input in ``spec``'s layout, ``(N, *spatial, C)`` or ``(N, C, *spatial)``.
      kernel: HWIO ``(*F, C / groups, O)``, the dtype of ``x``.
      spec: the :class:`ConvSpec` (zero padding only).
      kernel_grad: one of :data:`KERNEL_GRADS`.

    Returns:
      ``(N, *out, O)`` (or channels-first), as ``lax.conv_general_dilated``.
    """
    if kernel_grad not in KERNEL_GRADS:
        raise ValueError(
            f"kernel_grad={kernel_grad!r} is not one of {', '.join(map(repr, KERNEL_GRADS))}."
        )
    if kernel_grad == "xla" and not _stuffed_input_grad(spec):
        return lax_forward(x, kernel, spec)  # JAX's own rules, nothing wrapped
    return _conv(x, kernel, spec, kernel_grad)


LAX_IMPL = ConvImpl(
    "lax",
    functools.partial(conv_with_grad, kernel_grad="xla"),
    no_check,
    "XLA's lax.conv_general_dilated with JAX's derivatives (default)",
)
MATMUL_GRAD_IMPL = ConvImpl(
    "matmul_grad",
    functools.partial(conv_with_grad, kernel_grad="matmul"),
    no_check,
    "XLA's convolution forward and input gradient; kernel gradient as per-tap matmuls on CPU",
)
