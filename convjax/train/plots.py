"""PNG figures of a trained model, drawn on figures of their own (no global backend change).

- :func:`plot_first_layer_filters`: the first convolution's kernels as a grid of small images
  (one per output filter; an RGB image when the layer has 3 input channels, else the mean
  over input channels), each scaled to its own range -- the CS231n notes' way of checking that
  first-layer filters are smooth, not noisy.
- :func:`plot_activation_maps`: one test image through the network: the feature maps after
  each activation / pooling layer of ``model.features`` (the first 16 channels of each).
"""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from convjax.train.report import figure, save_figure


def first_conv_kernel(model: nnx.Module, input_shape) -> np.ndarray | None:
    """The kernel (HWIO) of the first 2-D convolution the model *calls* (not the first in
    attribute order, where ``classifier`` sorts before ``features``), or None."""
    import convjax.inspect as ci

    for call in ci.trace_model(model, tuple(input_shape)):
        kernel = getattr(call.module, "kernel", None)
        if kernel is None or len(kernel.shape) != 4:
            continue
        obj = model
        for part in call.name.split("#")[0].split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return np.asarray(obj.kernel[...])
    return None


def plot_first_layer_filters(model: nnx.Module, input_shape, path) -> Path | None:
    """Save a grid of the first conv layer's filters; None if the model has no 2-D conv."""
    k = first_conv_kernel(model, input_shape)
    if k is None:
        return None
    h, w, cin, cout = k.shape
    cols = math.ceil(math.sqrt(cout))
    rows = math.ceil(cout / cols)
    fig, axes = figure(1.2 * cols, 1.2 * rows + 0.4, ncols=cols, nrows=rows)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= cout:
            continue
        f = k[:, :, :, i]
        f = f if cin == 3 else f.mean(-1)
        f = (f - f.min()) / (f.max() - f.min() + 1e-12)
        ax.imshow(f, cmap=None if cin == 3 else "gray", interpolation="nearest")
    fig.suptitle(f"first conv layer: {cout} filters {h}x{w}x{cin}")
    return save_figure(fig, path, dpi=100)


def activation_maps(model: nnx.Module, x) -> list[tuple[str, np.ndarray]]:
    """``[(layer name, (H, W, C) maps)]`` of one image ``x`` (H, W, C) through ``model.features``.

    Runs the layers of ``model.features`` (a ``convjax.nn.Sequential``) one by one in eval mode
    and keeps the outputs of activation and pooling layers (4-D outputs only).
    """
    features = getattr(model, "features", None)
    if features is None or not hasattr(features, "layers"):
        return []
    model.eval()
    h = jnp.asarray(x)[None]
    out = []
    for i, layer in enumerate(features.layers):
        h = layer(h)
        kind = type(layer).__name__
        is_act = (
            not isinstance(layer, nnx.Module)
            or "Pool" in kind
            or kind
            in (
                "Activation",
                "ReLU",
            )
        )
        if h.ndim == 4 and (is_act or i == len(features.layers) - 1):
            out.append((f"{i}: {kind}", np.asarray(h[0])))
    return out


def plot_activation_maps(model, x, path, *, label: str = "", channels: int = 16) -> Path | None:
    """Save the activation maps of one image (see :func:`activation_maps`); None if none."""
    maps = activation_maps(model, x)
    if not maps:
        return None
    rows = len(maps) + 1
    cols = channels
    fig, axes = figure(0.9 * cols, 1.0 * rows, ncols=cols, nrows=rows)
    for ax in axes.flat:
        ax.axis("off")
    img = np.asarray(x)
    axes[0, 0].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray")
    axes[0, 0].set_title(label or "input", fontsize=7)
    for r, (name, a) in enumerate(maps, start=1):
        for c in range(min(cols, a.shape[-1])):
            axes[r, c].imshow(a[..., c], cmap="viridis")
        axes[r, 0].set_title(name, fontsize=6, loc="left")
    return save_figure(fig, path, dpi=90)
