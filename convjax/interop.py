"""Port PyTorch convolution layers to convjax: weights, padding arguments, whole layers.

PyTorch stores ``Conv{1,2,3}d.weight`` as ``(C_out, C_in / groups, *F)`` and
``ConvTranspose{1,2,3}d.weight`` as ``(C_in, C_out / groups, *F)``; convjax kernels are
HWIO ``(*F, C_in / groups, C_out)`` for both (for a transposed op ``C_in`` are the channels
of its own input). PyTorch tensors are accepted wherever an array is (they are read with
``np.asarray`` after ``detach().cpu()``); torch is never imported here.

PyTorch layouts are channels-first: call the ported op with ``channels_last=False`` or
move the channel axis of the input to the end (``x.permute(0, 2, 3, 1)``) and keep the
default.

Padding pitfall ("same" with stride > 1)
----------------------------------------
PyTorch refuses ``padding="same"`` when any stride is > 1; at stride 1 its "same" puts
``D * (F - 1) // 2`` before the input and the rest after, which equals convjax's (and
TensorFlow's) ``"SAME"``. With stride > 1, TensorFlow's ``"SAME"`` (convjax's too) pads
only what ``ceil(W / S)`` outputs need, with the odd pixel on the *high* side, e.g. a 3x3
filter at stride 2 on a 224-wide input gets ``(0, 1)``. Ports of TensorFlow models to
PyTorch usually write ``padding=1`` instead, i.e. ``(1, 1)``: the output has the same
size, so nothing fails, but every window is shifted by one pixel and the numbers differ.
So: a PyTorch layer with ``padding=k`` ports as the int ``k`` (never as ``"SAME"``), and a
TensorFlow ``"SAME"`` layer ported *to* PyTorch needs an explicit asymmetric ``F.pad``
with the pairs from :func:`convjax.functional.shapes.resolve_padding`.
:func:`conv_padding_from_torch` raises for ``"same"`` with stride > 1 rather than guess.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from convjax.functional.padding import PADDING_MODES

__all__ = [
    "to_numpy",
    "conv_weight_from_torch",
    "conv_weight_to_torch",
    "conv_transpose_weight_from_torch",
    "conv_transpose_weight_to_torch",
    "conv_padding_from_torch",
    "conv_kwargs_from_torch",
]


def to_numpy(array) -> np.ndarray:
    """A NumPy copy of a NumPy array, JAX array or PyTorch tensor (CPU or not, with grad)."""
    for method in ("detach", "cpu"):  # duck-typed torch.Tensor handling, no torch import
        if hasattr(array, method) and callable(getattr(array, method)):
            array = getattr(array, method)()
    return np.asarray(array)


def _check_weight(weight, name: str) -> np.ndarray:
    w = to_numpy(weight)
    if w.ndim not in (3, 4, 5):
        raise ValueError(
            f"{name}.shape={w.shape} must have rank 3, 4 or 5 (PyTorch Conv1d/2d/3d weight "
            f"layout: two channel axes then 1-3 spatial axes)."
        )
    return w


def conv_weight_from_torch(weight) -> np.ndarray:
    """PyTorch ``Conv*d.weight`` ``(C_out, C_in / G, *F)`` -> HWIO ``(*F, C_in / G, C_out)``.

    The layout change is the same for any ``groups``: PyTorch's output channels are
    grouped contiguously, as convjax's are.
    """
    w = _check_weight(weight, "weight")
    n = w.ndim - 2
    return np.transpose(w, (*range(2, n + 2), 1, 0))


def conv_weight_to_torch(kernel) -> np.ndarray:
    """Inverse of :func:`conv_weight_from_torch`: HWIO -> ``(C_out, C_in / groups, *F)``."""
    k = _check_weight(kernel, "kernel")
    n = k.ndim - 2
    return np.transpose(k, (n + 1, n, *range(n)))


def _check_groups(groups, channels: int, what: str) -> int:
    if isinstance(groups, bool) or not hasattr(groups, "__index__") or int(groups) < 1:
        raise ValueError(f"groups={groups!r} must be an int >= 1.")
    groups = int(groups)
    if channels % groups:
        raise ValueError(
            f"groups={groups} does not divide the {channels} {what}; pass the groups of the "
            f"PyTorch layer the weight came from."
        )
    return groups


def conv_transpose_weight_from_torch(weight, groups: int = 1) -> np.ndarray:
    """PyTorch ``ConvTranspose*d.weight`` ``(C_in, C_out / G, *F)`` -> ``(*F, C_in / G, C_out)``.

    PyTorch groups the *first* axis (input channels ``g * C_in/G + i``) and stores only
    ``C_out / G`` outputs per group; convjax's HWIO keeps ``C_in / G`` inputs and all
    ``C_out`` outputs ordered ``g * C_out/G + o``. So the groups must be known
    (``module.groups``).
    """
    w = _check_weight(weight, "weight")
    n = w.ndim - 2
    c_in, og = w.shape[:2]
    groups = _check_groups(groups, c_in, "input channels (weight.shape[0])")
    spatial = w.shape[2:]
    w = w.reshape(groups, c_in // groups, og, *spatial)
    w = np.transpose(w, (*range(3, n + 3), 1, 0, 2))  # (*F, C_in/G, G, C_out/G)
    return w.reshape(*spatial, c_in // groups, groups * og)


def conv_transpose_weight_to_torch(kernel, groups: int = 1) -> np.ndarray:
    """Inverse of :func:`conv_transpose_weight_from_torch`."""
    k = _check_weight(kernel, "kernel")
    n = k.ndim - 2
    ig, c_out = k.shape[-2:]
    groups = _check_groups(groups, c_out, "output channels (kernel.shape[-1])")
    spatial = k.shape[:n]
    k = k.reshape(*spatial, ig, groups, c_out // groups)
    k = np.transpose(k, (n + 1, n, n + 2, *range(n)))  # (G, C_in/G, C_out/G, *F)
    return k.reshape(groups * ig, c_out // groups, *spatial)


def conv_padding_from_torch(padding, padding_mode: str = "zeros", stride=1) -> dict:
    """PyTorch ``Conv*d`` padding arguments -> ``conv`` keyword arguments.

    Args:
      padding: PyTorch's ``padding``: an int, a tuple of ints (one per spatial
        dimension, applied to both sides), ``"valid"`` or ``"same"``.
      padding_mode: PyTorch's ``padding_mode`` (``"zeros"``, ``"reflect"``,
        ``"replicate"``, ``"circular"``: the same names in convjax).
      stride: the layer's stride; PyTorch only allows ``"same"`` at stride 1.

    Returns:
      ``{"padding": ..., "padding_mode": ...}`` for :func:`convjax.functional.conv`.

    Raises:
      ValueError: unknown padding string or mode, negative amounts, or ``"same"`` with a
        stride > 1 (see the module docstring: TensorFlow's SAME and a symmetric PyTorch
        padding differ there).
    """
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode={padding_mode!r} is not a PyTorch padding mode; use one of "
            f"{', '.join(repr(m) for m in PADDING_MODES)}."
        )
    if isinstance(padding, str):
        key = padding.lower()
        if key == "valid":
            return {"padding": "VALID", "padding_mode": padding_mode}
        if key == "same":
            strides = (stride,) if isinstance(stride, int) else tuple(stride)
            if any(s != 1 for s in strides):
                raise ValueError(
                    f"padding={padding!r} with stride={stride!r}: PyTorch forbids "
                    f"padding='same' when a stride is > 1, and TensorFlow's SAME pads the high "
                    f"side there; pass explicit (lo, hi) pairs to conv instead."
                )
            # PyTorch: D*(F-1)//2 before, the rest after = TensorFlow's SAME at stride 1.
            return {"padding": "SAME", "padding_mode": padding_mode}
        raise ValueError(
            f"padding={padding!r} is not a PyTorch padding string; use 'same', 'valid', an "
            f"int or a tuple of ints."
        )
    if isinstance(padding, bool):
        raise ValueError(f"padding={padding!r} must be an int, a tuple of ints or a string.")
    if hasattr(padding, "__index__"):
        amounts = (int(padding),)
        result = int(padding)
    elif isinstance(padding, Sequence):
        amounts = tuple(padding)
        if not all(hasattr(a, "__index__") and not isinstance(a, bool) for a in amounts):
            raise ValueError(f"padding={padding!r} must contain ints only.")
        result = tuple(int(a) for a in amounts)
    else:
        raise ValueError(f"padding={padding!r} must be an int, a tuple of ints or a string.")
    if any(int(a) < 0 for a in amounts):
        raise ValueError(f"padding={padding!r} must be >= 0, as PyTorch requires.")
    return {"padding": result, "padding_mode": padding_mode}


def conv_kwargs_from_torch(module) -> dict:
    """All arguments of a PyTorch ``Conv*d`` / ``ConvTranspose*d`` module for convjax.

    Returns a dict with ``kernel`` and ``bias`` (NumPy arrays, ``bias`` None if the layer
    has none) and the keyword arguments of :func:`convjax.functional.conv` (``stride``,
    ``padding``, ``padding_mode``, ``dilation``, ``groups``) or, for a transposed module,
    of :func:`convjax.functional.conv_transpose` (``stride``, ``padding``,
    ``output_padding``, ``dilation``, ``groups``). Add ``channels_last=False`` to feed
    PyTorch's NCHW input unchanged::

        kw = conv_kwargs_from_torch(torch_layer)
        y = cf.conv(x_nchw, kw.pop("kernel"), kw.pop("bias"), channels_last=False, **kw)
    """
    needed = ("weight", "bias", "stride", "padding", "dilation", "groups", "transposed")
    missing = [a for a in needed if not hasattr(module, a)]
    if missing:
        raise ValueError(
            f"module={type(module).__name__} is not a PyTorch convolution (it lacks "
            f"{', '.join(missing)}); pass a torch.nn.Conv*d or ConvTranspose*d."
        )
    bias = None if module.bias is None else to_numpy(module.bias)
    groups = int(module.groups)
    common = {
        "stride": tuple(int(s) for s in module.stride),
        "dilation": tuple(int(d) for d in module.dilation),
        "groups": groups,
    }
    if module.transposed:
        if getattr(module, "padding_mode", "zeros") != "zeros":
            raise ValueError(
                f"padding_mode={module.padding_mode!r}: PyTorch's transposed convolutions "
                f"support only 'zeros'."
            )
        return {
            "kernel": conv_transpose_weight_from_torch(module.weight, groups),
            "bias": bias,
            "padding": tuple(int(p) for p in module.padding),
            "output_padding": tuple(int(p) for p in module.output_padding),
            **common,
        }
    return {
        "kernel": conv_weight_from_torch(module.weight),
        "bias": bias,
        **conv_padding_from_torch(module.padding, module.padding_mode, module.stride),
        **common,
    }
