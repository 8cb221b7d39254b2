"""Figures of what :mod:`convjax.inspect` measures, for any model built from ``convjax.nn``.

Every function draws on a :class:`matplotlib.figure.Figure` of its own (no ``pyplot``, no
``matplotlib.use``: the caller's backend is left alone), returns it, and saves it as a PNG
when given ``path``. matplotlib is imported inside the functions, so importing
``convjax.inspect`` does not import it.

- :func:`plot_filters`: the first convolution's kernels (the CS231n notes' check that
  first-layer filters are smooth, not noisy).
- :func:`plot_activation_maps`: one input's feature maps after each activation and pooling
  layer, for any model (layers found by :func:`convjax.inspect.activations`).
- :func:`plot_effective_receptive_fields`: heat maps of
  :func:`convjax.inspect.effective_receptive_field` with the theoretical field drawn on them
  (one panel: :func:`draw_effective_field`, for figures of your own).
- :func:`plot_explanations`: inputs beside saliency / Grad-CAM maps.
- :func:`plot_loss_landscape`: contour plot of :func:`convjax.inspect.loss_landscape`.
- :func:`save_model_figures`: a trained classifier's filters, activation maps and
  explanations written into a folder in one call.

Text sizes are in points at the saved ``dpi`` (100 by default): 9 pt is 12.5 pixels, readable
at the PNG's own size without zooming.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from flax import nnx

from convjax.inspect import _tracing
from convjax.inspect.capture import activations
from convjax.inspect.layers import layer_kind

__all__ = [
    "first_conv_kernel",
    "plot_filters",
    "activation_map_layers",
    "plot_activation_maps",
    "plot_effective_receptive_fields",
    "draw_effective_field",
    "plot_explanations",
    "plot_loss_landscape",
    "last_spatial_activation",
    "save_model_figures",
]

_TEXT = 9  # points; see the module docstring
_SMALL = 8


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _save(fig, path, dpi: int):
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=dpi)
    return fig


def _modules_by_name(model) -> dict:
    # The names trace_model gives (module paths); a shared module keeps its first path.
    names: dict = {}
    for path, module in nnx.iter_modules(model):
        names.setdefault(_tracing.path_name(path), module)
    return names


def first_conv_kernel(model, input_shape) -> np.ndarray | None:
    """Kernel ``(F_h, F_w, C_in, C_out)`` of the first 2-D convolution the model *calls*.

    Call order, not attribute order (a ``classifier`` attribute sorts before ``features``);
    None when the model calls no 2-D convolution. ``input_shape`` has no batch axis.
    """
    modules = _modules_by_name(model)
    for call in _tracing.trace_model(model, tuple(input_shape)):
        if layer_kind(call.module) != "conv" or len(call.module.kernel.shape) != 4:
            continue
        return np.asarray(modules[call.name.split("#")[0]].kernel[...])
    return None


def plot_filters(model, input_shape, path=None, *, dpi: int = 100):
    """Grid of the first convolution's filters (None if the model has no 2-D convolution).

    One small image per output filter, each scaled to its own range: an RGB image when the
    layer has 3 input channels, else the mean over the input channels in grey.
    """
    k = first_conv_kernel(model, input_shape)
    if k is None:
        return None
    fh, fw, cin, cout = k.shape
    cols = math.ceil(math.sqrt(cout))
    rows = math.ceil(cout / cols)
    fig = _figure(max(0.8 * cols, 3.5), 0.8 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= cout:
            continue
        f = k[:, :, :, i]
        f = f if cin == 3 else f.mean(-1)
        f = (f - f.min()) / (f.max() - f.min() + 1e-12)  # own range; 1e-12 for a flat filter
        ax.imshow(f, cmap=None if cin == 3 else "gray", interpolation="nearest")
        ax.set_title(str(i), fontsize=_SMALL, pad=2)
    fig.suptitle(f"first convolution: {cout} filters of {fh}x{fw}x{cin}", fontsize=_TEXT + 1)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / (0.8 * rows + 0.6))
    return _save(fig, path, dpi)


_MAP_KINDS = (
    "activation",
    "max_pool",
    "min_pool",
    "sum_pool",
    "avg_pool",
    "lp_pool",
    "adaptive_avg_pool",
    "adaptive_max_pool",
)


def activation_map_layers(model, input_shape, *, max_rows: int = 10) -> list[str]:
    """Default layers of :func:`plot_activation_maps`: activation and pooling calls with a
    spatial output, plus the last spatial layer; at most ``max_rows``, evenly spread, the
    first and last kept (ResNet-20 has 19 ReLUs)."""
    calls = _tracing.trace_model(model, tuple(input_shape))
    n = len(tuple(input_shape)) + 1
    spatial = [c for c in calls if len(c.output_shape) == n]
    names = [c.name for c in spatial if layer_kind(c.module) in _MAP_KINDS]
    if spatial and spatial[-1].name not in names:
        names.append(spatial[-1].name)
    if len(names) > max_rows:
        picks = np.linspace(0, len(names) - 1, max_rows).round().astype(int)
        names = [names[i] for i in sorted(set(picks.tolist()))]
    return names


def plot_activation_maps(
    model,
    x,
    path=None,
    *,
    layers: Sequence[str] | None = None,
    channels: int = 16,
    label: str = "",
    max_rows: int = 10,
    dpi: int = 100,
):
    """Feature maps of one input ``x`` (``(H, W, C)``) after chosen layers, any model.

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers; runs as a copy in
        evaluation mode (the picture of the network as it predicts).
      x: one channels-last input without the batch axis, normalised as for the model.
      path: PNG to write (None: only return the figure).
      layers: layer names; default :func:`activation_map_layers`.
      channels: maps shown per layer (the first ``channels`` channels).
      label: title of the input image (e.g. its class).
      max_rows: the most layers shown by default.

    Returns:
      the Figure, or None when no layer has a spatial output.
    """
    x = np.asarray(x)
    if layers is None:
        layers = activation_map_layers(model, x.shape, max_rows=max_rows)
    if not layers:
        return None
    acts = activations(model, x[None], list(layers), eval_mode=True)
    calls = {c.name: c for c in _tracing.trace_model(model, x.shape)}
    rows = len(acts) + 1
    cell = 0.75  # inches per map: 75 pixels at dpi 100
    label_w = 1.9
    fig = _figure(label_w + cell * channels, cell * rows + 0.1)
    grid = fig.add_gridspec(
        rows,
        channels + 1,
        width_ratios=[label_w / cell] + [1] * channels,
        left=0.005,
        right=0.995,
        top=0.99,
        bottom=0.01,
        wspace=0.06,
        hspace=0.12,
    )

    def label_cell(r, text):
        ax = fig.add_subplot(grid[r, 0])
        ax.set_axis_off()
        ax.text(1.0, 0.5, text, ha="right", va="center", fontsize=_TEXT, transform=ax.transAxes)

    label_cell(0, f"input\n{label}" if label else "input")
    ax = fig.add_subplot(grid[0, 1])
    ax.set_axis_off()
    if x.shape[-1] == 3:  # a normalised RGB image, scaled to [0, 1] for display
        ax.imshow((x - x.min()) / (np.ptp(x) + 1e-12))
    else:
        ax.imshow(x.mean(-1), cmap="gray")
    for r, (name, a) in enumerate(acts.items(), start=1):
        a = np.asarray(a[0])
        call = calls.get(name)
        kind = type(call.module).__name__ if call is not None else ""
        size = "x".join(str(s) for s in a.shape)
        label_cell(r, f"{name}\n{kind} {size}")
        for c in range(min(channels, a.shape[-1])):
            ax = fig.add_subplot(grid[r, c + 1])
            ax.set_axis_off()
            ax.imshow(a[..., c], cmap="viridis", interpolation="nearest")
    return _save(fig, path, dpi)


def plot_effective_receptive_fields(
    erfs, path=None, *, cols: int = 4, title: str = "", dpi: int = 100
):
    """Heat maps of effective receptive fields, each with its theoretical field outlined.

    Args:
      erfs: ``{name: EffectiveReceptiveField}`` (as :func:`effective_receptive_field`
        returns) or a sequence of them; 2-D inputs only.
      cols: panels per row.
      title: figure title (e.g. "random weights").

    Each panel shows the whole input, the map divided by its maximum; the dashed box is the
    unit's theoretical field (clipped to the input); the caption gives the fitted Gaussian's
    sigma and the fraction of the theoretical field holding 95% of the mass.
    """
    items = list(erfs.values()) if isinstance(erfs, Mapping) else list(erfs)
    if not items:
        raise ValueError("erfs is empty; pass effective_receptive_field(...)'s result.")
    if any(e.map.ndim != 2 for e in items):
        raise ValueError("plot_effective_receptive_fields draws 2-D inputs only.")
    cols = min(cols, len(items))
    rows = math.ceil(len(items) / cols)
    fig = _figure(2.6 * cols, 2.75 * rows + (0.35 if title else 0.0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, e in zip(axes.flat, items):
        draw_effective_field(ax, e)
        sigma = "x".join(f"{s:.1f}" for s in e.sigma)
        ax.set_title(
            f"{e.layer}\nsigma {sigma} px, 95% in {100 * e.mass_fraction(0.95):.0f}% of RF",
            fontsize=_SMALL,
        )
    if title:
        fig.suptitle(title, fontsize=_TEXT + 1)
    fig.tight_layout()
    return _save(fig, path, dpi)


def draw_effective_field(ax, erf, *, half: int | None = None, linewidth: float = 1.0):
    """One effective receptive field on ``ax``: the map divided by its maximum, the theoretical
    field as a dashed cyan box (clipped to the input). No title: captions are the caller's.

    Args:
      ax: a matplotlib Axes.
      erf: an :class:`~convjax.inspect.EffectiveReceptiveField` of a 2-D input, ``map`` (H, W).
      half: show only the ``(2 half + 1)`` square around the input's centre (deep stacks on a
        large input); None shows the whole input.
      linewidth: of the box.
    """
    from matplotlib.patches import Rectangle

    m, top = erf.map, 0
    if half is not None:
        c0 = m.shape[0] // 2
        top = c0 - half
        m = m[top : c0 + half + 1, top : c0 + half + 1]
    ax.imshow(m / m.max() if m.max() > 0 else m, cmap="inferno", vmin=0, vmax=1,
              interpolation="nearest")  # fmt: skip
    (y0, y1), (x0, x1) = erf.region
    ax.add_patch(
        Rectangle(
            (x0 - top - 0.5, y0 - top - 0.5),
            x1 - x0 + 1,
            y1 - y0 + 1,
            fill=False,
            edgecolor="cyan",
            linestyle="--",
            linewidth=linewidth,
        )
    )
    return ax


def plot_explanations(
    images,
    maps: Mapping[str, np.ndarray],
    path=None,
    *,
    titles: Sequence[str] | None = None,
    overlay: Sequence[str] = (),
    percentile: float = 99.0,
    dpi: int = 100,
):
    """Each input beside its explanation maps (saliency, Grad-CAM, ...), one row per input.

    Args:
      images: ``(N, H, W, C)`` channels-last inputs (any range; each is shown scaled).
      maps: ``{column title: (N, H, W) map}``; maps are scaled per example to their maximum.
      titles: one caption per input (e.g. "Coat, predicted Coat").
      overlay: names of ``maps`` drawn half-transparent over the grey input (Grad-CAM),
        scaled to their maximum; the others (saliency) are drawn alone, divided by their
        ``percentile``-th percentile and clipped to 1 (the SmoothGrad paper's display: a few
        extreme gradients would otherwise darken every other pixel).
    """
    images = np.asarray(images)
    n = images.shape[0]
    for name, m in maps.items():
        if np.shape(m)[:1] != (n,) or np.ndim(m) != 3:
            raise ValueError(
                f"maps[{name!r}] has shape {np.shape(m)}; pass (N, H, W) with N={n} as images."
            )
    cols = 1 + len(maps)
    fig = _figure(1.7 * cols + 0.2, 1.8 * n + 0.3)
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        img = images[i]
        grey = img[..., 0] if img.shape[-1] == 1 else img.mean(-1)
        show = grey if img.shape[-1] != 3 else (img - img.min()) / (np.ptp(img) + 1e-12)
        axes[i, 0].imshow(show, cmap="gray" if img.shape[-1] != 3 else None)
        axes[i, 0].set_ylabel(titles[i] if titles else "", fontsize=_SMALL)
        for j, (name, m) in enumerate(maps.items(), start=1):
            a = np.asarray(m[i], np.float64)
            if name in overlay:
                a = a / a.max() if a.max() > 0 else a
                axes[i, j].imshow(grey, cmap="gray")
                axes[i, j].imshow(a, cmap="jet", alpha=0.5, vmin=0, vmax=1)
            else:
                top = np.percentile(a, percentile)
                a = np.clip(a / top, 0, 1) if top > 0 else a
                axes[i, j].imshow(a, cmap="hot", vmin=0, vmax=1)
        for j, name in enumerate(["input", *maps]):
            if i == 0:
                axes[i, j].set_title(name, fontsize=_TEXT)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
    fig.tight_layout()
    return _save(fig, path, dpi)


def last_spatial_activation(model, input_shape) -> str | None:
    """Name of the last activation call whose output keeps the spatial axes: Grad-CAM's usual
    layer (the last convolutional block's ReLU); None if there is none."""
    calls = _tracing.trace_model(model, tuple(input_shape))
    n = len(tuple(input_shape)) + 1
    names = [
        c.name for c in calls if len(c.output_shape) == n and layer_kind(c.module) == "activation"
    ]
    return names[-1] if names else None


def save_model_figures(
    model, images, labels, class_names: Sequence[str], directory, *, smoothgrad_key=None
) -> list[Path]:
    """Write a trained classifier's pictures into ``directory`` (e.g. a run's workdir).

    ``filters.png`` (first convolution), ``activation_maps.png`` (``images[0]``) and
    ``explanations.png`` (every image: saliency, SmoothGrad when ``smoothgrad_key`` is given,
    and Grad-CAM at :func:`last_spatial_activation`).

    Args:
      model: a ``flax.nnx`` classifier built from ``convjax.nn`` layers (not modified; runs
        as a copy in evaluation mode).
      images: ``(N, H, W, C)`` inputs normalised as in training (a handful, e.g. 8).
      labels: ``(N,)`` true classes; class_names: their names.
      directory: folder to write into (created if needed).

    Returns:
      the paths written.
    """
    from convjax.inspect.explain import grad_cam, saliency

    directory = Path(directory)
    images = np.asarray(images)
    labels = np.asarray(labels)
    shape = images.shape[1:]
    written = []
    if plot_filters(model, shape, directory / "filters.png") is not None:
        written.append(directory / "filters.png")
    label = f"{class_names[int(labels[0])]}"
    if plot_activation_maps(model, images[0], directory / "activation_maps.png", label=label):
        written.append(directory / "activation_maps.png")
    plain = saliency(model, images)
    maps = {"saliency": plain.map}
    if smoothgrad_key is not None:
        maps["SmoothGrad"] = saliency(model, images, samples=32, key=smoothgrad_key).map
    overlay = []
    layer = last_spatial_activation(model, shape)
    if layer is not None:
        title = f"Grad-CAM\n{layer}"
        maps[title] = grad_cam(model, images, layer).heatmap
        overlay.append(title)
    titles = [
        f"{class_names[int(y)]}\npredicted {class_names[int(t)]}"
        for y, t in zip(labels, plain.target)
    ]
    plot_explanations(images, maps, directory / "explanations.png", titles=titles, overlay=overlay)
    written.append(directory / "explanations.png")
    return written


def plot_loss_landscape(landscape, path=None, *, levels: int = 25, title: str = "", dpi=100):
    """Filled contour plot of a :class:`convjax.inspect.LossLandscape` (log-spaced levels
    when the losses span more than a factor of 20, so the basin keeps its detail); a cross
    marks the centre, the model's own parameters."""
    from matplotlib.colors import LogNorm

    a, b, z = landscape.alphas, landscape.betas, np.asarray(landscape.losses)
    finite = z[np.isfinite(z)]
    if finite.size == 0:
        raise ValueError("the landscape has no finite loss to draw.")
    lo, hi = float(finite.min()), float(finite.max())
    fig = _figure(5.2, 4.4)
    ax = fig.subplots()
    if lo > 0 and hi / lo > 20:
        lv = np.geomspace(lo, hi, levels)
        filled = ax.contourf(a, b, z.T, levels=lv, norm=LogNorm(lo, hi), cmap="viridis")
    else:
        filled = ax.contourf(a, b, z.T, levels=levels, cmap="viridis")
    ticks = filled.levels[:: max(len(filled.levels) // 6, 1)]
    lines = ax.contour(a, b, z.T, levels=ticks, colors="white", linewidths=0.8)
    ax.clabel(lines, fontsize=_SMALL - 1, fmt="%.3g")
    ax.plot([0], [0], marker="x", color="red", markersize=8, label="the model's parameters")
    ax.set_xlabel("alpha (direction 1, filter-normalised)", fontsize=_TEXT)
    ax.set_ylabel("beta (direction 2, filter-normalised)", fontsize=_TEXT)
    ax.tick_params(labelsize=_SMALL)
    ax.legend(fontsize=_SMALL, loc="upper right")
    bar = fig.colorbar(filled, ax=ax, ticks=ticks, format="%.3g")
    bar.ax.minorticks_off()
    bar.set_label("loss", fontsize=_TEXT)
    bar.ax.tick_params(labelsize=_SMALL)
    if title:
        ax.set_title(title, fontsize=_TEXT + 1)
    fig.tight_layout()
    return _save(fig, path, dpi)
