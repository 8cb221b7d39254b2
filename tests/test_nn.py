"""`convjax.nn`: modules equal their functional ops, expose every option, split/merge, train/eval,
BatchNorm and Dropout against independent references (PyTorch, NumPy), and every error path."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
from convjax import nn
from convjax.nn import _trace


def rngs(seed=0):
    # The "rbg" PRNG compiles ~8x faster than threefry on CPU (0.17 s vs 1.5 s per new
    # parameter shape measured here), and every layer takes any jax.random key.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def randn(shape, seed=0):
    return jax.random.normal(jax.random.key(seed, impl="rbg"), shape, jnp.float32)


def params_of(module):
    """The module's parameters as a plain dict {name: array} (top level only)."""
    return {k: v[...] for k, v in nnx.state(module, nnx.Param).items()}


# ------------------------------------------------------------------ every option is an attribute

# Functional arguments that are data, not options, or that a module cannot carry.
DATA_ARGS = {"x", "kernel", "bias"}
NOT_MODULE_OPTIONS = {"return_indices"}  # a layer returns one array; use cf.max_pool for indices


@pytest.mark.parametrize(
    "fn, layer",
    [
        (cf.conv, lambda: nn.Conv(4, 6, (3, 3), rngs=rngs())),
        (cf.conv_transpose, lambda: nn.ConvTranspose(4, 6, (3, 3), rngs=rngs())),
        (cf.dense, lambda: nn.Dense(4, 6, rngs=rngs())),
        (cf.flatten, lambda: nn.Flatten()),
        (cf.max_pool, lambda: nn.MaxPool((2, 2))),
        (cf.avg_pool, lambda: nn.AvgPool((2, 2))),
        (cf.lp_pool, lambda: nn.LpPool(2.0, (2, 2))),
        (cf.adaptive_avg_pool, lambda: nn.AdaptiveAvgPool((2, 2))),
        (cf.adaptive_max_pool, lambda: nn.AdaptiveMaxPool((2, 2))),
        (cf.global_avg_pool, lambda: nn.GlobalAvgPool()),
        (cf.global_max_pool, lambda: nn.GlobalMaxPool()),
        (cf.leaky_relu, lambda: nn.LeakyReLU()),
        (cf.elu, lambda: nn.ELU()),
        (cf.gelu, lambda: nn.GELU()),
    ],
)
def test_every_functional_option_is_a_public_attribute(fn, layer):
    module = layer()
    options = set(inspect.signature(fn).parameters) - DATA_ARGS - NOT_MODULE_OPTIONS
    missing = sorted(o for o in options if not hasattr(module, o))
    assert not missing, f"{type(module).__name__} lacks attributes {missing}"


# ------------------------------------------------------------------ modules == functional ops


@pytest.mark.parametrize(
    "kernel_size, opts",
    [
        ((3,), dict(stride=2, padding="SAME", dilation=2)),
        ((3, 3), dict(padding=1, groups=2, padding_mode="reflect", flip=True)),
        ((2, 3), dict(padding=((1, 0), (2, 1)), stride=(1, 2), padding_mode="circular")),
        ((2, 2, 2), dict(padding="CAUSAL", channels_last=False)),
        ((3, 3), dict(padding="VALID", impl="im2col", use_bias=False)),
    ],
)
def test_conv_module_equals_functional(kernel_size, opts):
    opts = dict(opts)
    use_bias = opts.pop("use_bias", True)
    layer = nn.Conv(4, 6, kernel_size, use_bias=use_bias, rngs=rngs(), **opts)
    n = len(kernel_size)
    shape = (2, *([7] * n), 4) if opts.get("channels_last", True) else (2, 4, *([7] * n))
    x = randn(shape)
    p = params_of(layer)
    assert p["kernel"].shape == (*kernel_size, 4 // opts.get("groups", 1), 6)
    assert ("bias" in p) == use_bias
    if use_bias:
        # A non-zero bias so that its use is checked too.
        layer.bias[...] = jnp.arange(6.0)
        p = params_of(layer)
    np.testing.assert_allclose(layer(x), cf.conv(x, **p, **opts), rtol=1e-6, atol=1e-6)


def test_conv_module_matches_torch():
    import torch

    layer = nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=1, rngs=rngs(1))
    layer.bias[...] = jnp.linspace(-1, 1, 5)
    x = randn((2, 9, 9, 3), 2)
    ref = torch.nn.functional.conv2d(
        torch.tensor(np.asarray(x)).permute(0, 3, 1, 2),
        torch.tensor(np.asarray(layer.kernel[...])).permute(3, 2, 0, 1),  # HWIO -> OIHW
        torch.tensor(np.asarray(layer.bias[...])),
        stride=2,
        padding=1,
    ).permute(0, 2, 3, 1)
    np.testing.assert_allclose(layer(x), ref.numpy(), rtol=1e-5, atol=1e-5)


def test_thin_variants_accept_int_kernel_sizes():
    assert nn.Conv1d(2, 3, 5, rngs=rngs()).kernel[...].shape == (5, 2, 3)
    assert nn.Conv2d(2, 3, 5, rngs=rngs()).kernel[...].shape == (5, 5, 2, 3)
    assert nn.Conv3d(2, 3, 2, rngs=rngs()).kernel[...].shape == (2, 2, 2, 2, 3)


def test_seeds_conv_example_shape_and_parameter_count():
    # 32x32x3 input, ten 5x5 filters, stride 1, pad 2 -> 32x32x10 and 5*5*3*10 + 10 = 760.
    layer = nn.Conv2d(3, 10, 5, padding=2, rngs=rngs())
    assert layer(jnp.ones((1, 32, 32, 3))).shape == (1, 32, 32, 10)
    assert sum(v.size for v in jax.tree.leaves(nnx.state(layer, nnx.Param))) == 760


def test_conv_transpose_module_equals_functional_and_size_rule():
    layer = nn.ConvTranspose(4, 2, (3, 3), stride=2, padding=1, output_padding=1, rngs=rngs())
    layer.bias[...] = jnp.array([0.5, -0.5])
    x = randn((2, 5, 5, 4))
    y = layer(x)
    # (W - 1) * S - 2P + F + output_padding = 4 * 2 - 2 + 3 + 1 = 10: inverts a stride-2 conv.
    assert y.shape == (2, 10, 10, 2)
    ref = cf.conv_transpose(x, **params_of(layer), stride=2, padding=1, output_padding=1)
    np.testing.assert_allclose(y, ref, rtol=1e-6, atol=1e-6)


def test_dense_against_numpy_and_default_he_init():
    layer = nn.Dense(3, 2, rngs=rngs())
    layer.bias[...] = jnp.array([1.0, -2.0])
    x = randn((4, 3))
    w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
    np.testing.assert_allclose(layer(x), np.asarray(x) @ w + b, rtol=1e-5, atol=1e-6)
    # He normal: std sqrt(2 / fan_in); with 256 * 512 draws the sample std is within 2%.
    big = nn.Dense(256, 512, rngs=rngs(3))
    assert abs(float(jnp.std(big.kernel[...])) / np.sqrt(2 / 256) - 1) < 0.02
    assert float(jnp.abs(big.bias[...]).max()) == 0.0
    conv = nn.Conv2d(64, 128, 3, rngs=rngs(4))
    assert abs(float(jnp.std(conv.kernel[...])) / np.sqrt(2 / (9 * 64)) - 1) < 0.02
    glorot = nn.Dense(256, 512, scheme="glorot_uniform", rngs=rngs(5))
    bound = np.sqrt(6 / (256 + 512))
    assert float(jnp.abs(glorot.kernel[...]).max()) <= bound


@pytest.mark.parametrize(
    "layer, fn",
    [
        (
            nn.MaxPool((3, 3), 2, 1, ceil_mode=True),
            lambda x: cf.max_pool(x, (3, 3), 2, 1, ceil_mode=True),
        ),
        (
            nn.AvgPool((2, 2), padding=1, count_include_pad=False),
            lambda x: cf.avg_pool(x, (2, 2), padding=1, count_include_pad=False),
        ),
        (
            nn.AvgPool(2, num_spatial_dims=2, divisor_override=3),
            lambda x: cf.avg_pool(x, (2, 2), divisor_override=3),
        ),
        (nn.LpPool(2.0, (2, 2)), lambda x: cf.lp_pool(x, (2, 2), p=2.0)),
        (nn.MaxPool((2, 2), dilation=2), lambda x: cf.max_pool(x, (2, 2), dilation=2)),
        (nn.AdaptiveAvgPool((3, 2)), lambda x: cf.adaptive_avg_pool(x, (3, 2))),
        (nn.AdaptiveMaxPool(3, num_spatial_dims=2), lambda x: cf.adaptive_max_pool(x, (3, 3))),
        (nn.GlobalAvgPool(), lambda x: cf.global_avg_pool(x, 2)),
        (nn.GlobalMaxPool(keepdims=True), lambda x: cf.global_max_pool(x, 2, keepdims=True)),
    ],
    ids=[
        "max",
        "avg",
        "avg-int",
        "l2",
        "max-dilated",
        "adaptive-avg",
        "adaptive-max",
        "gap",
        "gmp",
    ],
)
def test_pool_modules_equal_functional(layer, fn):
    x = randn((2, 7, 7, 3))
    np.testing.assert_allclose(layer(x), fn(x), rtol=1e-6, atol=1e-6)
    assert isinstance(layer.window if hasattr(layer, "window") else (), tuple)


def test_max_pool_seeds_example():
    # The CS231n notes' 4x4 depth slice max-pooled 2x2/2: hand-computed maxima of each quadrant.
    x = jnp.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], jnp.float32)
    y = nn.MaxPool((2, 2))(x[None, :, :, None])[0, :, :, 0]
    np.testing.assert_array_equal(y, [[6, 8], [3, 4]])


def test_activation_layers_and_flatten():
    x = jnp.array([[-2.0, -0.5, 0.0, 1.5]])
    np.testing.assert_array_equal(nn.ReLU()(x), [[0, 0, 0, 1.5]])
    np.testing.assert_allclose(nn.LeakyReLU(0.1)(x), [[-0.2, -0.05, 0, 1.5]], rtol=1e-6)
    np.testing.assert_allclose(nn.Tanh()(x), np.tanh(x), rtol=1e-6)
    np.testing.assert_allclose(nn.Sigmoid()(x), 1 / (1 + np.exp(-np.asarray(x))), rtol=1e-6)
    np.testing.assert_allclose(nn.ELU(2.0)(x)[0, 0], 2 * np.expm1(-2.0), rtol=1e-6)
    assert isinstance(nn.activation("gelu"), nn.GELU)
    assert nn.Flatten()(jnp.zeros((2, 3, 4, 5))).shape == (2, 60)
    assert nn.Flatten(0)(jnp.zeros((3, 4, 5))).shape == (60,)


# ------------------------------------------------------------------ Dropout


def test_dropout_train_statistics_and_eval_identity():
    layer = nn.Dropout(0.25, rngs=rngs(7))
    x = jnp.ones((200, 100))
    y = layer(x)
    dropped = float(jnp.mean(y == 0))
    assert abs(dropped - 0.25) < 0.01  # 20,000 Bernoulli draws: std of the mean 0.003
    np.testing.assert_allclose(np.unique(np.asarray(y)), [0.0, 1 / 0.75], rtol=1e-6)
    assert not np.array_equal(layer(x), y)  # a fresh mask on every call
    layer.eval()
    np.testing.assert_array_equal(layer(x), x)
    layer.train()
    assert float(jnp.mean(layer(x) == 0)) > 0.2


def test_dropout_same_seed_same_masks_and_broadcast_dims():
    x = jnp.ones((4, 6, 6, 8))
    a, b = nn.Dropout(0.5, rngs=rngs(3)), nn.Dropout(0.5, rngs=rngs(3))
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))
    spatial = nn.Dropout(0.5, broadcast_dims=(1, 2), rngs=rngs(4))(x)
    # One mask per (example, channel): each feature map is all kept or all dropped.
    per_map = np.asarray(spatial).reshape(4, 36, 8)
    assert np.all(per_map.min(axis=1) == per_map.max(axis=1))
    key = jax.random.key(9, impl="rbg")
    np.testing.assert_array_equal(
        nn.Dropout(0.5)(x, key=key), cf.dropout(x, 0.5, key)
    )  # an explicit key needs no Rngs


def test_dropout_traced_rate_equals_python_rate_and_set_dropout_rate():
    x = jnp.ones((8, 500))
    key = jax.random.key(5)
    # a traced per-member rate (what a population passes) gives the Python rate's mask
    for rate in (0.0, 0.3):
        traced = jax.jit(lambda r: cf.dropout(x, r, key))(jnp.float32(rate))
        np.testing.assert_array_equal(traced, cf.dropout(x, rate, key))
    per_member = jax.vmap(lambda r: cf.dropout(x, r, key))(jnp.array([0.1, 0.6]))
    assert abs(float(jnp.mean(per_member[0] == 0)) - 0.1) < 0.02
    assert abs(float(jnp.mean(per_member[1] == 0)) - 0.6) < 0.02
    model = nn.Sequential(
        nn.Dropout(0.2, rngs=rngs(0)), nn.Dense(3, 3, rngs=rngs(1)), nn.Dropout(0.4, rngs=rngs(2))
    )
    assert nn.set_dropout_rate(model, 0.1, paths=[("layers", 2)]) == 1
    assert [model.layers[0].rate, model.layers[2].rate] == [0.2, 0.1]
    assert nn.set_dropout_rate(model, np.float32(0.0)) == 2 and model.layers[0].rate == 0.0
    with pytest.raises(ValueError, match=r"paths \[\('layers', 1\)\] are not Dropout layers"):
        nn.set_dropout_rate(model, 0.1, paths=[("layers", 1)])
    with pytest.raises(ValueError, match=r"set_dropout_rate: rate=1.0 must be a float in \[0, 1\)"):
        nn.set_dropout_rate(model, 1.0)
    with pytest.raises(ValueError, match=r"dropout: rate has shape \(2,\); pass one scalar"):
        cf.dropout(x, jnp.array([0.1, 0.2]), key)


# ------------------------------------------------------------------ BatchNorm (PyTorch oracle)


@pytest.mark.parametrize("channels_last", [True, False])
def test_batch_norm_matches_torch_train_and_eval(channels_last):
    import torch

    c = 3
    layer = nn.BatchNorm(c, channels_last=channels_last, momentum=0.9, epsilon=1e-5)
    layer.scale[...] = jnp.array([1.0, 2.0, 0.5])
    layer.bias[...] = jnp.array([0.0, -1.0, 3.0])
    ref = torch.nn.BatchNorm2d(c, momentum=0.1, eps=1e-5).double()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        ref.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))

    def to_torch(x):
        t = torch.tensor(np.asarray(x, np.float64))
        return t.permute(0, 3, 1, 2) if channels_last else t

    def from_torch(t):
        t = t.detach()
        return (t.permute(0, 2, 3, 1) if channels_last else t).numpy()

    shape = (4, 5, 5, c) if channels_last else (4, c, 5, 5)
    for step in range(2):  # two updates of the running statistics
        x = randn(shape, step) * 3 + 2
        ref.train()
        np.testing.assert_allclose(layer(x), from_torch(ref(to_torch(x))), rtol=1e-4, atol=1e-4)
    # float32 means of 100 values of magnitude < 15 against float64: error about
    # 100 * 6e-8 * 15 / 100 ~ 1e-6 absolute, large relative to a running mean near zero.
    np.testing.assert_allclose(layer.mean[...], ref.running_mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(layer.var[...], ref.running_var.numpy(), rtol=1e-5, atol=1e-5)
    layer.eval()
    ref.eval()
    x = randn(shape, 5)
    np.testing.assert_allclose(layer(x), from_torch(ref(to_torch(x))), rtol=1e-4, atol=1e-4)
    before = np.asarray(layer.mean[...])
    layer(x)
    np.testing.assert_array_equal(layer.mean[...], before)  # evaluation changes nothing


def test_batch_norm_gradient_matches_torch():
    import torch

    x = randn((3, 4, 4, 2), 1)
    w = randn((3, 4, 4, 2), 2)  # a random linear read-out of the output
    layer = nn.BatchNorm(2)
    graphdef, state = nnx.split(layer)

    def loss(state, x):
        return jnp.sum(nnx.merge(graphdef, state)(x) * w)

    # Differentiate w.r.t. the state too: nnx only lets the running statistics be written
    # inside the trace that owns them, and a state closed over by jax.grad is not traced.
    gx = jax.grad(loss, argnums=(0, 1))(state, x)[1]
    tx = torch.tensor(np.asarray(x, np.float64)).permute(0, 3, 1, 2).requires_grad_()
    out = torch.nn.functional.batch_norm(
        tx, None, None, torch.ones(2, dtype=torch.float64), None, training=True, eps=1e-5
    )
    (out * torch.tensor(np.asarray(w, np.float64)).permute(0, 3, 1, 2)).sum().backward()
    np.testing.assert_allclose(gx, tx.grad.permute(0, 2, 3, 1).numpy(), rtol=1e-3, atol=1e-4)


def test_batch_moments_against_numpy_and_stable_for_large_means():
    x = np.asarray(randn((8, 3, 3, 2))) + 1e4
    mean, var = cf.batch_moments(jnp.asarray(x))
    np.testing.assert_allclose(mean, x.mean(axis=(0, 1, 2)), rtol=1e-6)
    # Two-pass variance: E[x^2] - E[x]^2 in float32 would lose every digit at mean 1e4.
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=(0, 1, 2)), rtol=2e-2)


# ------------------------------------------------------------------ containers, train/eval, trace


class _Net(nnx.Module):
    def __init__(self, *, rngs):
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1, use_bias=False, rngs=rngs),
            nn.BatchNorm(4),
            nn.ReLU(),
            nn.MaxPool((2, 2)),
            nn.Flatten(),
            nn.Dropout(0.5, rngs=rngs),
            nn.Dense(4 * 4 * 4, 3, rngs=rngs),
        )

    def __call__(self, x):
        return self.body(x)


def test_sequential_order_indexing_and_trace():
    net = _Net(rngs=rngs())
    x = randn((2, 8, 8, 1))
    net.eval()
    manual = x
    for layer in net.body:
        manual = layer(manual)
    np.testing.assert_allclose(net(x), manual, rtol=1e-6, atol=1e-6)
    assert len(net.body) == 7 and isinstance(net.body[3], nn.MaxPool)
    with _trace.recording() as calls:
        jax.eval_shape(lambda x: net(x), x)
    assert [type(c.module).__name__ for c in calls] == [
        "Conv2d",
        "BatchNorm",
        "ReLU",
        "MaxPool",
        "Flatten",
        "Dropout",
        "Dense",
    ]
    assert calls[0].output_shape == (2, 8, 8, 4) and calls[3].output_shape == (2, 4, 4, 4)
    assert calls[-1].input_shape == (2, 64)


def test_train_eval_switch_dropout_and_batch_norm():
    net = _Net(rngs=rngs())
    net.eval()
    assert net.body[5].deterministic and net.body[1].use_running_average
    net.train()
    assert not net.body[5].deterministic and not net.body[1].use_running_average


def _raw(a):
    """Array contents of a leaf; typed PRNG keys (the dropout stream) as their key data."""
    return jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a


def test_nnx_view_sets_modes_without_mutating():
    net = _Net(rngs=rngs())
    view = nnx.view(net, deterministic=True, use_running_average=True)
    assert view.body[5].deterministic and view.body[1].use_running_average
    assert not net.body[5].deterministic and not net.body[1].use_running_average


def test_split_merge_round_trip_and_transforms():
    net = _Net(rngs=rngs())
    net.eval()
    graphdef, state = nnx.split(net)
    x = randn((2, 8, 8, 1))
    restored = nnx.merge(graphdef, state)
    for a, b in zip(jax.tree.leaves(nnx.state(net)), jax.tree.leaves(nnx.state(restored))):
        np.testing.assert_array_equal(_raw(a), _raw(b))
    assert nnx.graphdef(restored) == graphdef

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    eager = net(x)
    np.testing.assert_allclose(jax.jit(forward)(state, x), eager, rtol=1e-5, atol=1e-6)
    # vmap over a stack of inputs equals one call per slice.
    xs = jnp.stack([x, 2 * x])
    ys = jax.vmap(forward, in_axes=(None, 0))(state, xs)
    np.testing.assert_allclose(ys[1], net(2 * x), rtol=1e-5, atol=1e-5)
    # grad takes the pure state; parameters get gradients, the tree structure is kept.
    params = nnx.state(net, nnx.Param)
    rest = nnx.state(net, nnx.Not(nnx.Param))
    graphdef2 = nnx.graphdef(net)

    def loss(params, x):
        return jnp.sum(nnx.merge(graphdef2, params, rest)(x) ** 2)

    grads = jax.grad(loss)(params, x)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert float(jnp.abs(grads["body"]["layers"][0]["kernel"][...]).sum()) > 0


def test_batch_norm_statistics_flow_through_pure_train_step():
    net = _Net(rngs=rngs())
    graphdef, state = nnx.split(net)

    @jax.jit
    def step(state, x):
        model = nnx.merge(graphdef, state)
        y = model(x)
        return y, nnx.state(model)

    _, new_state = step(state, randn((4, 8, 8, 1)) + 3.0)
    mean = new_state["body"]["layers"][1]["mean"][...]
    assert float(jnp.abs(mean).sum()) > 0  # the running mean moved towards the batch's
    assert float(jnp.abs(state["body"]["layers"][1]["mean"][...]).sum()) == 0  # input untouched


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: nn.Conv(4, 6, 3, rngs=rngs()), r"kernel_size=3 must be a tuple"),
        (lambda: nn.Conv(4, 6, (3, 3, 3, 3), rngs=rngs()), r"kernel_size=\(3, 3, 3, 3\) has 4"),
        (lambda: nn.Conv(4, 6, (3, 3), groups=4, rngs=rngs()), r"groups=4 must divide"),
        (lambda: nn.Conv(0, 6, (3, 3), rngs=rngs()), r"in_features=0 must be a positive int"),
        (lambda: nn.Conv2d(2, 2, 0, rngs=rngs()), r"kernel_size=0 must be >= 1"),
        (lambda: nn.ConvTranspose(3, 4, (2, 2), groups=2, rngs=rngs()), r"groups=2 must divide"),
        (lambda: nn.Dense(3, -1, rngs=rngs()), r"out_features=-1 must be a positive int"),
        (lambda: nn.Conv2d(2, 2, 3, scheme="he", rngs=rngs()), r"scheme='he' is not a known"),
        (lambda: nn.MaxPool(2), r"window=2 must be a tuple"),
        (lambda: nn.LpPool(0, (2, 2)), r"p=0 must be a number > 0"),
        (lambda: nn.AdaptiveAvgPool(3), r"output_size=3 is an int"),
        (lambda: nn.GlobalAvgPool(4), r"num_spatial_dims=4 must be 1, 2 or 3"),
        (lambda: nn.Dropout(1.0), r"rate=1.0 must be a float in \[0, 1\)"),
        (lambda: nn.BatchNorm(3, momentum=1.5), r"momentum=1.5 must be in \[0, 1\]"),
        (lambda: nn.BatchNorm(3, epsilon=0.0), r"epsilon=0.0 must be > 0"),
        (lambda: nn.Sequential(nn.ReLU(), "relu"), r"layers\[1\]='relu' is not callable"),
        (lambda: nn.activation("swish"), r"activation='swish' is not known"),
    ],
)
def test_constructor_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_call_errors():
    with pytest.raises(ValueError, match=r"input shape \(2, 4, 4, 5\) has 5 channels"):
        nn.BatchNorm(3)(jnp.zeros((2, 4, 4, 5)))
    with pytest.raises(ValueError, match=r"needs a batch axis and a channel axis"):
        nn.BatchNorm(3)(jnp.zeros((3,)))
    with pytest.raises(ValueError, match=r"rngs=None and no key was passed"):
        nn.Dropout(0.5)(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"broadcast_dims=\(5,\) contains 5"):
        cf.dropout(jnp.ones((2, 2)), 0.5, jax.random.key(0), broadcast_dims=(5,))
    # Errors of the functional op reach the caller unchanged (they name the argument).
    with pytest.raises(ValueError, match=r"kernel_size"):
        nn.Conv2d(1, 1, 5, rngs=rngs())(jnp.zeros((1, 3, 3, 1)))
