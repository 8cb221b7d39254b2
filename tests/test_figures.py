"""convjax.inspect.figures: every figure draws for the zoo and a user-written model, saves a
PNG of the size asked for, labels what it shows at a readable size, and never touches
matplotlib's global backend."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn
from convjax.inspect import figures

# Readable at the saved size: 8 pt is 11 pixels at dpi 100.
MIN_POINTS = 7


def _texts(fig):
    out = []
    for ax in fig.axes:
        out += [t for t in ax.texts if t.get_text()]
        out += [t for t in (ax.title, ax.xaxis.label, ax.yaxis.label) if t.get_text()]
    if fig._suptitle is not None:
        out.append(fig._suptitle)
    return out


def _png_size(path):
    import matplotlib.image as mpimg

    return mpimg.imread(path).shape[:2]


class UserNet(nnx.Module):
    """A model written by a user: the first conv called sits in ``body``, not ``features``,
    and an ``aux`` conv defined earlier is called second."""

    def __init__(self, rngs):
        self.aux = cnn.Conv2d(4, 4, 1, rngs=rngs)
        self.body = cnn.Conv2d(3, 4, 3, padding=1, rngs=rngs)
        self.act = cnn.ReLU()
        self.pool = cnn.MaxPool((2, 2))
        self.head = cnn.Sequential(cnn.GlobalAvgPool(), cnn.Dense(4, 2, rngs=rngs))

    def __call__(self, x):
        return self.head(self.pool(self.aux(self.act(self.body(x)))))


def test_first_conv_kernel_follows_call_order():
    net = UserNet(nnx.Rngs(0))
    k = figures.first_conv_kernel(net, (8, 8, 3))
    np.testing.assert_array_equal(k, np.asarray(net.body.kernel[...]))
    assert figures.first_conv_kernel(cnn.Sequential(cnn.Flatten()), (4, 4, 1)) is None
    assert figures.plot_filters(cnn.Sequential(cnn.Flatten()), (4, 4, 1)) is None


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: cm.PatternCNN((12, 12, 1), widths=(8, 16), rngs=nnx.Rngs(0)), (12, 12, 1)),
        (lambda: cm.ResNet20((16, 16, 3), rngs=nnx.Rngs(0)), (16, 16, 3)),
        (lambda: cm.DilatedContextNet((16, 16, 1), width=4, rngs=nnx.Rngs(0)), (16, 16, 1)),
        (lambda: UserNet(nnx.Rngs(0)), (8, 8, 3)),
    ],
    ids=["pattern", "resnet20", "dilated", "user"],
)
def test_filters_and_activation_maps_for_every_model(tmp_path, make, shape):
    model = make()
    backend = matplotlib.get_backend()
    fig = figures.plot_filters(model, shape, tmp_path / "filters.png")
    assert (tmp_path / "filters.png").exists() and fig.axes
    x = np.asarray(jax.random.normal(jax.random.key(0), shape))
    layers = figures.activation_map_layers(model, shape)
    assert 1 <= len(layers) <= 10
    fig = figures.plot_activation_maps(model, x, tmp_path / "acts.png", label="Coat")
    labels = [t.get_text() for t in _texts(fig)]
    # One label per row: the layer's name, class and output shape.
    for name in layers:
        assert any(t.startswith(name + "\n") for t in labels), (name, labels)
    assert all(t.get_fontsize() >= MIN_POINTS for t in _texts(fig))
    h, w = _png_size(tmp_path / "acts.png")
    width, height = fig.get_size_inches() * 100
    assert (h, w) == (round(height), round(width))
    assert matplotlib.get_backend() == backend


def test_activation_map_rows_of_resnet20_are_spread_and_keep_the_last():
    resnet = cm.ResNet20(rngs=nnx.Rngs(0))
    names = figures.activation_map_layers(resnet, (32, 32, 3), max_rows=5)
    assert len(names) == 5
    assert names[0] == "stem.layers.2" and names[-1] == "stages.layers.8.relu2"


def test_effective_field_explanation_and_landscape_figures(tmp_path):
    model = cm.PatternCNN(
        (12, 12, 1), 3, widths=(4,), convs_per_stage=2, fc_widths=(), rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(0), (3, 12, 12, 1))
    erfs = ci.effective_receptive_field(model, x, ["features.layers.2", "features.layers.6"])
    fig = figures.plot_effective_receptive_fields(erfs, tmp_path / "erf.png", title="random")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles[0].startswith("features.layers.2\nsigma ") and "% of RF" in titles[0]
    assert len(fig.axes[0].patches) == 1  # the theoretical field's box
    assert all(t.get_fontsize() >= MIN_POINTS for t in _texts(fig))

    # one panel cropped around the centre: the image and the box move together
    e = erfs["features.layers.6"]
    ax = figures.draw_effective_field(fig.add_subplot(), e, half=3)
    assert ax.images[-1].get_array().shape == (7, 7)
    (y0, _), (x0, _) = e.region
    assert ax.patches[-1].get_xy() == (x0 - (12 // 2 - 3) - 0.5, y0 - (12 // 2 - 3) - 0.5)
    assert float(ax.images[-1].get_array().max()) == 1.0  # normalised to its own maximum

    s = ci.saliency(model, x)
    g = ci.grad_cam(model, x, "features.layers.5")
    fig = figures.plot_explanations(
        x,
        {"saliency": s.map, "Grad-CAM": g.heatmap},
        tmp_path / "explain.png",
        titles=["a", "b", "c"],
        overlay=["Grad-CAM"],
    )
    assert [ax.get_title() for ax in fig.axes[:3]] == ["input", "saliency", "Grad-CAM"]
    assert len(fig.axes[2].images) == 2  # Grad-CAM drawn over the input
    assert len(fig.axes[1].images) == 1
    assert (tmp_path / "explain.png").exists()

    y = jnp.arange(3) % 3
    land = ci.loss_landscape(
        model, lambda m: cf.softmax_cross_entropy(m(x), y), key=jax.random.key(1), steps=5
    )
    fig = figures.plot_loss_landscape(land, tmp_path / "land.png", title="random weights")
    ax = fig.axes[0]
    assert "alpha" in ax.get_xlabel() and "beta" in ax.get_ylabel()
    assert (tmp_path / "land.png").exists()


def test_save_model_figures(tmp_path):
    model = cm.PatternCNN(
        (10, 10, 1), 3, widths=(4,), convs_per_stage=2, fc_widths=(), rngs=nnx.Rngs(0)
    )
    # conv, BN, ReLU, conv, BN, ReLU (index 5), pool, flatten, dense
    assert figures.last_spatial_activation(model, (10, 10, 1)) == "features.layers.5"
    assert figures.last_spatial_activation(cnn.Sequential(cnn.Flatten()), (4, 4, 1)) is None
    x = np.asarray(jax.random.normal(jax.random.key(0), (2, 10, 10, 1)))
    paths = figures.save_model_figures(
        model, x, [0, 2], ["a", "b", "c"], tmp_path / "run", smoothgrad_key=jax.random.key(1)
    )
    names = ["filters.png", "activation_maps.png", "explanations.png"]
    assert [p.name for p in paths] == names
    assert all(p.exists() and p.stat().st_size > 1000 for p in paths)


def test_errors():
    with pytest.raises(ValueError, match="erfs is empty"):
        figures.plot_effective_receptive_fields({})
    with pytest.raises(ValueError, match=r"maps\['m'\] has shape \(2, 4\); pass \(N, H, W\)"):
        figures.plot_explanations(np.zeros((2, 4, 4, 1)), {"m": np.zeros((2, 4))})
    land = ci.LossLandscape(
        alphas=np.zeros(2), betas=np.zeros(2), losses=np.full((2, 2), np.nan), directions=(0, 0)
    )
    with pytest.raises(ValueError, match="no finite loss"):
        figures.plot_loss_landscape(land)


def test_figures_module_never_chooses_a_backend(tmp_path):
    # In a fresh process: importing convjax.inspect imports no matplotlib, and drawing and
    # saving a figure imports no pyplot (so no backend is chosen) and calls no matplotlib.use.
    code = (
        "import sys, numpy as np, matplotlib\n"
        "matplotlib.use = lambda *a, **k: sys.exit('matplotlib.use called')\n"
        "import convjax.inspect\n"
        "from convjax.inspect import figures\n"
        "figures.plot_explanations(np.zeros((1, 4, 4, 1)), {'m': np.ones((1, 4, 4))},\n"
        "                          sys.argv[1])\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    out = tmp_path / "x.png"
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.exists()
