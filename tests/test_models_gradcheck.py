"""Every model's gradient against finite differences (`convjax.testing.gradcheck`), at a tiny size.

The loss is the training loss: softmax cross-entropy of the logits in training mode (batch
statistics in every BatchNorm, dropout masks drawn from the model's own RNG state, which is
part of the state passed in, so every evaluation draws the same masks). The check runs in
float64 (gradcheck casts every floating leaf) along random directions in parameter space.

Cost is compile time (a float64 forward and its VJP per model). Reverse mode, the mode
training uses, is checked for every model; forward mode too for the cheap ones. ResNet-34 and
ResNet-56 differ from ResNet-18 and ResNet-20 only in ``stage_sizes`` and their graphs take
2-3x longer to compile, so they are ``slow`` (run with ``-m slow``).
"""

import jax
import jax.numpy as jnp
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import convjax.functional as cf
from convjax import models as M
from convjax.testing import gradcheck


def rngs(seed=0):
    # "rbg" compiles ~8x faster than threefry here; see tests/test_models.py.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


TINY = {
    "PatternCNN": lambda r: M.PatternCNN((8, 8, 1), 3, widths=(2, 2), fc_widths=(3,), rngs=r),
    "PatternCNN-allconv-l2": lambda r: M.PatternCNN(
        (8, 8, 1), 3, widths=(2, 2), fc_widths=(), pool="none", batch_norm=False, rngs=r
    ),
    "LeNet5": lambda r: M.LeNet5((32, 32, 1), 3, widths=(2, 2, 2), fc_width=3, rngs=r),
    "AlexNet": lambda r: M.AlexNet((67, 67, 3), 3, widths=(2,) * 5, fc_width=3, groups=2, rngs=r),
    "VGG11": lambda r: M.VGG11((32, 32, 1), 3, base_width=2, fc_width=4, rngs=r),
    "VGG16": lambda r: M.VGG16((32, 32, 1), 3, base_width=2, fc_width=4, rngs=r),
    "AllCNNC": lambda r: M.AllCNNC((12, 12, 1), 3, widths=(2, 2), rngs=r),
    "ResNet18": lambda r: M.ResNet18((16, 16, 1), 3, base_width=1, rngs=r),
    "ResNet34": lambda r: M.ResNet34((16, 16, 1), 3, base_width=1, rngs=r),
    "ResNet20": lambda r: M.ResNet20((8, 8, 1), 3, base_width=1, rngs=r),
    "ResNet56": lambda r: M.ResNet56((8, 8, 1), 3, base_width=1, rngs=r),
    # Random, not identity, initialisation: identity kernels carry the stem's exact zeros
    # through every layer, so the check point would sit on many ReLU kinks at once.
    "DilatedContextNet": lambda r: M.DilatedContextNet((8, 8, 1), 3, width=4, rngs=r),
}


# Forward mode as well for the models whose float64 JVP compiles quickly.
BOTH_MODES = {"PatternCNN-allconv-l2", "LeNet5"}
SLOW = {"ResNet34", "ResNet56"}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(TINY)],
)
def test_model_gradcheck(name):
    model = TINY[name](rngs())
    model.train()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # Zero-initialised biases make a unit whose inputs are all exact ReLU zeros sit exactly
    # on its own ReLU kink; several such kinks at once defeat any finite-difference check.
    # A small random offset on every parameter moves the check point off that set.
    flat, unravel = ravel_pytree(params)
    params = unravel(flat + 0.05 * jax.random.normal(jax.random.key(2, impl="rbg"), flat.shape))
    x = jax.random.normal(jax.random.key(1, impl="rbg"), (2, *model.input_shape))
    labels = jnp.array([0, 2])

    def loss(params, rest, x):
        logits = nnx.merge(graphdef, params, rest)(x)
        return cf.softmax_cross_entropy(logits, labels)

    ad = "both" if name in BOTH_MODES | SLOW else "reverse"
    report = gradcheck(
        loss,
        params,
        rest,
        x,
        argnums=0,
        mode="directional",
        num_directions=3,
        ad=ad,
        vectorize=False,  # a loop of jitted calls compiles faster than the vmapped probes
        key=jax.random.key(0, impl="rbg"),  # random directions; rbg compiles fast
    )
    assert report.passed and report.num_compared > 0
    assert report.num_inputs == sum(p.size for p in jax.tree.leaves(params))
