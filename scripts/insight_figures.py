r"""Insight pictures and numbers: the default network (random and trained) and Luo et al.'s
effective-receptive-field findings reproduced on the model zoo.

Command (what results/insight/ records)::

    PYTHONPATH=. .venv/bin/python scripts/insight_figures.py \
        --workdir=workdirs/insight_default --epochs=1 --out=results/insight

If ``--workdir`` holds no checkpoint, ``configs/default.py`` is first trained there for
``--epochs`` epochs with ``convjax.train.train_and_evaluate`` (1 epoch: about 91% test
accuracy, 4-5 minutes of training on an idle 2-core CPU). ``--quick`` shrinks every
experiment to a smoke run of a minute or two.

Written to ``--out``:

- ``filters.png``, ``activation_maps.png``, ``explanations.png``
  (``convjax.inspect.figures.save_model_figures``): first-layer filters, one test image's
  feature maps, and the first test image of 8 classes with saliency, SmoothGrad and Grad-CAM
  (last conv block), all of the trained network.
- ``erf_default.png``: effective receptive fields of the default network's blocks, random
  weights and trained, averaged over test images.
- ``erf_depth.png``: a plain stack of 3x3 convolutions, depth 1-32: heat maps and the ERF's
  width (sigma) against depth on log-log axes with the fitted exponent.
- ``erf_dilation_pooling.png``: equal-depth stacks with and without pooling / dilation, and a
  residual network with and without its shortcuts.
- ``loss_landscape.png``: the trained network's filter-normalised 2-D loss slice.
- ``insight.json``: every number quoted in README.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import convjax.data as cdata
import convjax.functional as cf
import convjax.inspect as ci
import convjax.models as cm
from convjax.inspect import figures

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- default net


def default_config(epochs: int):
    from convjax.train import load_config

    config = load_config(ROOT / "configs" / "default.py")
    config.num_epochs = epochs
    config.progress = False
    return config


def default_networks(workdir: Path, epochs: int):
    """``(config, data, random model, trained model, step)``; trains first if needed."""
    from convjax.train import load_model, make_model, prepare, train_and_evaluate
    from convjax.train.checkpoint import Checkpointer
    from convjax.train.inputs import load_data

    config = default_config(epochs)
    if not (workdir / "results.json").exists():
        log(f"training configs/default.py for {epochs} epoch(s) in {workdir}")
        train_and_evaluate(config, workdir)
    ds = load_data(prepare(config))
    random_net = make_model(prepare(config), ds.image_shape, ds.num_classes)
    random_net.eval()
    trained = load_model(workdir)
    step = Checkpointer(workdir).latest_step()
    return config, ds, random_net, trained, step


def accuracy(model, images, labels, batch: int = 1000) -> float:
    graphdef, state = nnx.split(model)
    predict = jax.jit(lambda s, x: jnp.argmax(nnx.merge(graphdef, s)(x), -1))
    hits = 0
    for i in range(0, len(images), batch):
        hits += int(
            np.sum(np.asarray(predict(state, images[i : i + batch])) == labels[i : i + batch])
        )
    return hits / len(images)


def block_outputs(model, input_shape) -> list[str]:
    """The ReLU and pooling layers of the convolutional part (where a block ends)."""
    return [
        name
        for name in figures.activation_map_layers(model, input_shape, max_rows=100)
        if name.startswith("features.")
    ]


def erf_numbers(erfs) -> dict:
    return {
        name: {
            "sigma": [round(s, 3) for s in e.sigma],
            "theoretical_size": [hi - lo + 1 for lo, hi in e.region],
            "mass95_fraction": round(e.mass_fraction(0.95), 4),
            "gaussian_r2": round(e.gaussian_r2, 4),
        }
        for name, e in erfs.items()
    }


def default_network_pictures(args, out: Path, numbers: dict) -> None:
    config, ds, random_net, trained, step = default_networks(Path(args.workdir), args.epochs)
    mean, std = ds.train_mean_std
    n_test = 1000 if args.quick else len(ds.test_images)
    test_x = np.asarray(cdata.normalize(ds.test_images[:n_test], mean, std))
    test_y = np.asarray(ds.test_labels[:n_test])
    acc = accuracy(trained, test_x, test_y)
    log(f"trained network: step {step}, test accuracy {100 * acc:.2f}% on {n_test} images")
    numbers["default"] = {
        "epochs": args.epochs,
        "step": step,
        "test_accuracy": acc,
        "test_images": n_test,
    }
    names = ds.class_names

    # Filters, activation maps and explanations of the first test image of each of 8 classes.
    picks = [int(np.nonzero(test_y == c)[0][0]) for c in range(8)]
    figures.save_model_figures(
        trained, test_x[picks], test_y[picks], names, out, smoothgrad_key=jax.random.key(0)
    )
    numbers["default"]["grad_cam_layer"] = figures.last_spatial_activation(trained, ds.image_shape)

    # Effective receptive fields of the blocks, random and trained, over test images.
    blocks = block_outputs(trained, ds.image_shape)
    n_erf = 64 if args.quick else 512
    erf_x = test_x[:n_erf]
    erf_random = ci.effective_receptive_field(random_net, erf_x, blocks)
    erf_trained = ci.effective_receptive_field(trained, erf_x, blocks)
    numbers["default"]["erf_inputs"] = n_erf
    numbers["default"]["erf_random"] = erf_numbers(erf_random)
    numbers["default"]["erf_trained"] = erf_numbers(erf_trained)
    pair_figure(
        [("random weights", erf_random), ("trained", erf_trained)],
        out / "erf_default.png",
        f"default network: effective receptive fields, mean over {n_erf} test images",
    )

    # Loss landscape of the trained network around its parameters.
    n_loss = 32 if args.quick else 128
    steps = 5 if args.quick else 13
    lx, ly = jnp.asarray(test_x[:n_loss]), jnp.asarray(test_y[:n_loss])
    t0 = time.perf_counter()
    land = ci.loss_landscape(
        trained,
        lambda m: cf.softmax_cross_entropy(m(lx), ly),
        key=jax.random.key(0),
        steps=steps,
        span=1.0,
        chunk_size=steps,
    )
    seconds = time.perf_counter() - t0
    figures.plot_loss_landscape(
        land,
        out / "loss_landscape.png",
        title=f"trained default network: cross-entropy on {n_loss} test images",
    )
    numbers["default"]["landscape"] = {
        "steps": steps,
        "images": n_loss,
        "centre_loss": float(land.losses[steps // 2, steps // 2]),
        "min_loss": float(land.losses.min()),
        "corner_losses": [float(land.losses[i, j]) for i in (0, -1) for j in (0, -1)],
        "seconds": round(seconds, 1),
    }
    log(f"loss landscape: {steps}x{steps} points on {n_loss} images in {seconds:.0f} s")


def pair_figure(rows, path: Path, title: str) -> None:
    """Rows of ERF heat maps (one row per variant) on one figure."""
    from matplotlib.figure import Figure

    cols = max(len(erfs) for _, erfs in rows)
    fig = Figure(figsize=(2.3 * cols + 0.9, 3.0 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, (label, erfs) in enumerate(rows):
        for c, e in enumerate(erfs.values()):
            ax = figures.draw_effective_field(axes[r, c], e)
            ax.set_title(
                f"{e.layer}\nsigma {e.sigma[0]:.1f} px, 95% in {100 * e.mass_fraction():.0f}%",
                fontsize=8,
            )
        axes[r, 0].text(
            -0.08, 0.5, label, transform=axes[r, 0].transAxes, rotation=90,
            ha="right", va="center", fontsize=10,
        )  # fmt: skip
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


# ---------------------------------------------------------------------------- ERF on the zoo


def plain_stack(depth: int, *, width: int, size: int, uniform: bool, seed: int = 0):
    """``depth`` 3x3 SAME convolutions + ReLU (PatternCNN with no pooling and no BN)."""
    model = cm.PatternCNN(
        (size, size, 1),
        10,
        widths=(width,),
        convs_per_stage=depth,
        fc_widths=(),
        pool_after=(False,),
        batch_norm=False,
        dropout=0.0,
        activation="relu",
        rngs=nnx.Rngs(seed),
    )
    if uniform:
        # Luo et al.'s uniform weights: every kernel averages its window, biases 0, so the
        # ERF is the depth-fold convolution of a 3x3 box (sigma = sqrt(2 depth / 3)).
        for _, module in nnx.iter_modules(model):
            if ci.layer_kind(module) == "conv":
                k = module.kernel[...]
                module.kernel[...] = jnp.full(k.shape, 1.0 / math.prod(k.shape[:-1]), k.dtype)
                if module.bias is not None:
                    module.bias[...] = jnp.zeros_like(module.bias[...])
    return model


def fit_exponent(depths, sigmas) -> tuple[float, float]:
    """Least-squares ``log sigma = log c + e log depth``; returns ``(e, c)``."""
    e, logc = np.polyfit(np.log(depths), np.log(sigmas), 1)
    return float(e), float(np.exp(logc))


def depth_experiment(args, out: Path, numbers: dict) -> None:
    depths = [1, 2, 4, 8] if args.quick else [1, 2, 3, 4, 6, 8, 12, 16, 24, 32]
    size = 24 if args.quick else 72  # depth 32: theoretical field 65 px, inside 72
    width = 8 if args.quick else 16
    n_inputs = 16 if args.quick else 64
    seeds = [0] if args.quick else [0, 1, 2]
    x = jax.random.normal(jax.random.key(42), (n_inputs, size, size, 1))
    # Uniform kernels on a positive input keep every pre-activation positive: the ReLUs pass
    # every gradient and the stack is linear, Luo et al.'s analytic case; one input suffices.
    ones = jnp.ones((1, size, size, 1))
    deepest = max(depths)
    layer_of = {d: f"features.layers.{2 * d - 1}" for d in depths}  # the depth-d ReLU
    result = {}
    heat = {}
    for kind in ("uniform", "random"):
        maps = {}
        for seed in seeds if kind == "random" else [0]:
            model = plain_stack(
                deepest, width=width, size=size, uniform=kind == "uniform", seed=seed
            )
            model.eval()
            inputs = ones if kind == "uniform" else x
            erfs = ci.effective_receptive_field(model, inputs, [layer_of[d] for d in depths])
            for d in depths:
                maps.setdefault(d, []).append(erfs[layer_of[d]])
        # Several random-weight draws: average their maps (each already a mean over inputs).
        sig, frac, r2 = [], [], []
        for d in depths:
            m = np.mean([e.map / e.map.sum() for e in maps[d]], axis=0)
            e0 = maps[d][0]
            merged = ci.EffectiveReceptiveField.from_map(
                f"depth {d}", e0.unit, m, e0.theoretical, e0.region, e0.num_inputs * len(maps[d])
            )
            heat[(kind, d)] = merged
            sig.append(merged.sigma[0])
            frac.append(merged.mass_fraction(0.95))
            r2.append(merged.gaussian_r2)
        fit_from = [i for i, d in enumerate(depths) if d >= 2]
        e, c = fit_exponent([depths[i] for i in fit_from], [sig[i] for i in fit_from])
        # The exponent of the deep end alone: shallow stacks still carry the kernel's shape.
        deep = [i for i, d in enumerate(depths) if d >= 8]
        e_deep = fit_exponent([depths[i] for i in deep], [sig[i] for i in deep])[0]
        result[kind] = {
            "depths": depths,
            "sigma": [round(s, 3) for s in sig],
            "theoretical_size": [2 * d + 1 for d in depths],
            "mass95_fraction": [round(f, 4) for f in frac],
            "gaussian_r2": [round(v, 4) for v in r2],
            "exponent": round(e, 3),
            "exponent_depth_ge_8": round(e_deep, 3),
            "prefactor": round(c, 3),
            "weight_draws": len(seeds) if kind == "random" else 1,
        }
        log(f"plain stack, {kind} weights: sigma ~ depth^{e:.3f}; sigma {result[kind]['sigma']}")
    numbers["depth"] = {"input": size, "width": width, "inputs": n_inputs, **result}
    depth_figure(depths, heat, result, out / "erf_depth.png", size)


def depth_figure(depths, heat, result, path: Path, size: int) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    show = [d for d in (1, 4, 16, 32) if d in depths] or depths[:4]
    fig = Figure(figsize=(13, 5.6))
    grid = fig.add_gridspec(2, len(show) + 2, width_ratios=[1] * len(show) + [0.15, 2.2])
    half = 36 if size >= 72 else size // 2
    for r, kind in enumerate(("uniform", "random")):
        for c, d in enumerate(show):
            e = heat[(kind, d)]
            ax = fig.add_subplot(grid[r, c])
            figures.draw_effective_field(ax, e, half=half, linewidth=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"depth {d}: sigma {e.sigma[0]:.1f} px\nRF {2 * d + 1} px, "
                f"95% in {100 * e.mass_fraction():.0f}%",
                fontsize=8,
            )
            if c == 0:
                label = "uniform kernels" if kind == "uniform" else "random weights + ReLU"
                ax.set_ylabel(label, fontsize=9)
    ax = fig.add_subplot(grid[:, -1])
    d = np.asarray(depths, float)
    for kind, style, label in (
        ("uniform", "o-", "uniform kernels"),
        ("random", "s-", "random weights + ReLU"),
    ):
        res = result[kind]
        ax.plot(d, res["sigma"], style, label=f"{label}: exponent {res['exponent']:.2f}")
        ax.plot(d, res["prefactor"] * d ** res["exponent"], ":", color="gray")
    ax.plot(d, (2 * d + 1) / 2, "--", color="black", label="theoretical RF / 2 (slope 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("depth (3x3 conv layers)", fontsize=9)
    ax.set_ylabel("ERF sigma (input pixels)", fontsize=9)
    # Plain numbers at chosen ticks (log axes otherwise label minor ticks "6 x 10^0").
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(depths, [str(v) for v in depths])
    top = max(max(result[k]["sigma"]) for k in result) * 1.0
    yt = [v for v in (0.5, 1, 2, 4, 8, 16, 32) if v <= 2 * max(top, (2 * max(depths) + 1) / 2)]
    ax.set_yticks(yt, [f"{v:g}" for v in yt])
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("ERF width vs depth (fits over depth >= 2, dotted)", fontsize=9)
    fig.suptitle(
        "plain stack of 3x3 convolutions, centre unit, mean over random inputs "
        "(dashed: theoretical field)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def variants_experiment(args, out: Path, numbers: dict) -> None:
    size = 32 if args.quick else 96
    width = 8 if args.quick else 16
    n_inputs = 16 if args.quick else 64
    x = jax.random.normal(jax.random.key(7), (n_inputs, size, size, 1))
    x3 = jax.random.normal(jax.random.key(8), (n_inputs, size, size, 3))
    rows = []
    found = {}

    def last_relu(model, shape):
        return [n for n in figures.activation_map_layers(model, shape, max_rows=100)][-1]

    def probe(label, model, inputs, layer=None):
        model.eval()
        shape = tuple(inputs.shape[1:])
        layer = layer or last_relu(model, shape)
        e = ci.effective_receptive_field(model, inputs, layer)[layer]
        found[label] = {
            "layer": layer,
            "sigma": [round(s, 3) for s in e.sigma],
            "theoretical_size": [hi - lo + 1 for lo, hi in e.region],
            "mass95_fraction": round(e.mass_fraction(), 4),
            "gaussian_r2": round(e.gaussian_r2, 4),
        }
        log(f"{label}: sigma {e.sigma[0]:.2f}, theoretical {found[label]['theoretical_size'][0]}")
        return e

    # Pooling: six 3x3 convs in three stages, with and without 2x2 max pooling between.
    common = dict(
        widths=(width,) * 3, convs_per_stage=2, fc_widths=(), batch_norm=False, dropout=0.0
    )
    shape = (size, size, 1)
    no_pool = cm.PatternCNN(shape, 10, pool_after=(False,) * 3, rngs=nnx.Rngs(0), **common)
    pool = cm.PatternCNN(
        shape, 10, pool="max", pool_after=(True, True, False), rngs=nnx.Rngs(0), **common
    )
    avg = cm.PatternCNN(
        shape, 10, pool="avg", pool_after=(True, True, False), rngs=nnx.Rngs(0), **common
    )
    rows.append(
        (
            "6 convs: pooling",
            {
                "no pooling": probe("6 convs, no pooling", no_pool, x),
                "2 max pools": probe("6 convs, 2x2 max pool after stages 1-2", pool, x),
                "2 avg pools": probe("6 convs, 2x2 avg pool after stages 1-2", avg, x),
            },
        )
    )
    # Dilation: DilatedContextNet's context module vs the same depth with dilation 1.
    dil_kw = dict(width=width, rngs=nnx.Rngs(0))
    plain = cm.DilatedContextNet(shape, 10, dilations=(1,) * 7, **dil_kw)
    dilated = cm.DilatedContextNet(shape, 10, **dil_kw)
    layer = "context.layers.13"  # the ReLU after the seventh 3x3 context convolution
    rows.append(
        (
            "8 convs: dilation",
            {
                "dilations 1": probe("context net, dilations all 1", plain, x, layer),
                "dilations 1,1,2,4,8,16,1": probe(
                    "context net, dilations 1,1,2,4,8,16,1", dilated, x, layer
                ),
            },
        )
    )
    # Residual connections: ResNet-20 with and without shortcuts (CIFAR form, 3 channels),
    # at the last block of the first stage (full resolution, field 1 + 2*7 = 15 px).
    res_shape = (size, size, 3)
    resnet = cm.ResNet20(res_shape, 10, rngs=nnx.Rngs(0))
    plain_net = cm.ResNet20(res_shape, 10, residual=False, rngs=nnx.Rngs(0))
    layer = "stages.layers.2.relu2"
    rows.append(
        (
            "ResNet-20 stage 1",
            {
                "plain (no shortcuts)": probe(
                    "ResNet-20 stage 1, no shortcuts", plain_net, x3, layer
                ),
                "residual": probe("ResNet-20 stage 1, residual", resnet, x3, layer),
            },
        )
    )
    numbers["variants"] = {"input": size, "width": width, "inputs": n_inputs, **found}
    variants_figure(rows, out / "erf_dilation_pooling.png", size)


def variants_figure(rows, path: Path, size: int) -> None:
    from matplotlib.figure import Figure

    cols = max(len(r[1]) for r in rows)
    fig = Figure(figsize=(3.0 * cols + 0.6, 3.0 * len(rows) + 0.4))
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for r, (label, erfs) in enumerate(rows):
        for c, (name, e) in enumerate(erfs.items()):
            ax = axes[r, c]
            ax.set_axis_on()
            ax.set_xticks([])
            ax.set_yticks([])
            figures.draw_effective_field(ax, e)
            (y0, y1), _ = e.region
            ax.set_title(
                f"{name}\nsigma {e.sigma[0]:.1f} px, RF {y1 - y0 + 1} px, "
                f"95% in {100 * e.mass_fraction():.0f}%",
                fontsize=8,
            )
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    fig.suptitle(
        f"effective receptive fields, random weights, mean over random {size}x{size} inputs "
        "(dashed: theoretical field)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def finite(tree):
    """NaN (a Gaussian fit of a constant 3x3 map) as JSON null, so the file is strict JSON."""
    if isinstance(tree, dict):
        return {k: finite(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [finite(v) for v in tree]
    if isinstance(tree, float) and not math.isfinite(tree):
        return None
    return tree


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="workdirs/insight_default")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--out", default="results/insight")
    parser.add_argument("--quick", action="store_true", help="smoke-sized experiments")
    parser.add_argument(
        "--only", choices=("default", "depth", "variants"), action="append", help="run a part"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    numbers_path = out / "insight.json"
    numbers = json.loads(numbers_path.read_text()) if numbers_path.exists() else {}
    parts = args.only or ["default", "depth", "variants"]
    t0 = time.perf_counter()
    if "depth" in parts:
        depth_experiment(args, out, numbers)
    if "variants" in parts:
        variants_experiment(args, out, numbers)
    if "default" in parts:
        default_network_pictures(args, out, numbers)
    numbers["quick"] = args.quick
    numbers_path.write_text(json.dumps(finite(numbers), indent=1) + "\n")
    log(f"done in {time.perf_counter() - t0:.0f} s; numbers in {numbers_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
