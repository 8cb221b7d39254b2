"""`convjax.models`: published parameter counts, layer-by-layer output shapes at full size (both
via abstract evaluation, nothing allocated), forward under jit and vmap at a tiny size, the
ablation knobs, and every error path."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
from convjax import models as M
from convjax import nn
from convjax.nn import _trace


def rngs(seed=0):
    # The "rbg" PRNG compiles ~8x faster than threefry on CPU (0.17 s vs 1.5 s per new
    # parameter shape measured here); the models are indifferent to the generator.
    return nnx.Rngs(jax.random.key(seed, impl="rbg"))


def abstract(ctor):
    """The model built by ``ctor(rngs)`` with shapes only (``nnx.eval_shape``)."""
    return nnx.eval_shape(lambda: ctor(rngs()))


def param_count(ctor) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(abstract(ctor), nnx.Param)))


def calls_of(ctor, input_shape, batch=1):
    """Output and recorded layer calls of an abstract forward pass (no FLOPs, no memory)."""
    model = abstract(ctor)
    model.eval()
    graphdef, state = nnx.split(model)
    spec = jax.ShapeDtypeStruct((batch, *input_shape), jnp.float32)
    with _trace.recording() as calls:
        out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, spec)
    return out, calls


def conv_p(k, cin, cout, bias=True, groups=1):
    return cf.conv_param_count(k, cin, cout, groups=groups, use_bias=bias)


def dense_p(din, dout):
    return din * dout + dout


# ------------------------------------------------------------------ published parameter counts

# VGG-16, 1000 classes: 13 convs + 3 FC (Simonyan & Zisserman; torchvision prints the same).
VGG16_COUNT = 138_357_544
# ResNet-18, 1000 classes (He et al.; torchvision's resnet18).
RESNET18_COUNT = 11_689_512


def _vgg_arithmetic(stage_sizes):
    total, cin = 0, 3
    for n, width in zip(stage_sizes, (64, 128, 256, 512, 512)):
        for _ in range(n):
            total += conv_p(3, cin, width)
            cin = width
    return total + dense_p(7 * 7 * 512, 4096) + dense_p(4096, 4096) + dense_p(4096, 1000)


def _resnet18_arithmetic():
    # No conv biases; every BatchNorm has 2 parameters per channel (scale, bias).
    total = conv_p(7, 3, 64, bias=False) + 2 * 64  # stem
    cin = 64
    for width in (64, 128, 256, 512):
        for _ in range(2):
            total += conv_p(3, cin, width, bias=False) + conv_p(3, width, width, bias=False)
            total += 4 * width
            if cin != width:  # projection shortcut (option B) in the first block
                total += conv_p(1, cin, width, bias=False) + 2 * width
            cin = width
    return total + dense_p(512, 1000)


def _cifar_resnet_arithmetic(n, projections):
    total = conv_p(3, 3, 16, bias=False) + 2 * 16
    cin = 16
    for width in (16, 32, 64):
        for _ in range(n):
            total += conv_p(3, cin, width, bias=False) + conv_p(3, width, width, bias=False)
            total += 4 * width
            if projections and cin != width:
                total += conv_p(1, cin, width, bias=False) + 2 * width
            cin = width
    return total + dense_p(64, 10)


# LeNet-5: C1 5*5*1*6+6 = 156, C3 5*5*6*16+16 = 2,416, C5 5*5*16*120+120 = 48,120,
# F6 120*84+84 = 10,164, output 84*10+10 = 850: 61,706.
LENET5_COUNT = 156 + 2_416 + 48_120 + 10_164 + 850
# AlexNet one tower: convs 34,944 + 614,656 + 885,120 + 1,327,488 + 884,992 and FC
# 37,752,832 + 16,781,312 + 4,097,000 = 62,378,344. With the paper's two-GPU groups on conv2,
# conv4, conv5 these are 307,456, 663,936, 442,624 instead: 60,965,224 ("60 million").
ALEXNET_COUNT = 34_944 + 614_656 + 885_120 + 1_327_488 + 884_992 + 37_752_832 + 16_781_312
ALEXNET_COUNT += 4_097_000
ALEXNET_G2_COUNT = ALEXNET_COUNT - (614_656 - 307_456) - (1_327_488 - 663_936)
ALEXNET_G2_COUNT -= 884_992 - 442_624
# All-CNN-C: 3*3*3*96+96 = 2,688; two 3*3*96*96+96 = 83,040; 3*3*96*192+192 = 166,080;
# three 3*3*192*192+192 = 331,968; 192*192+192 = 37,056; 192*10+10 = 1,930: 1,369,738.
ALLCNNC_COUNT = 2_688 + 2 * 83_040 + 166_080 + 3 * 331_968 + 37_056 + 1_930


@pytest.mark.parametrize(
    "ctor, expected",
    [
        (lambda r: M.VGG16((224, 224, 3), 1000, rngs=r), VGG16_COUNT),
        (lambda r: M.VGG16((224, 224, 3), 1000, rngs=r), _vgg_arithmetic((2, 2, 3, 3, 3))),
        (lambda r: M.VGG11((224, 224, 3), 1000, rngs=r), 132_863_336),
        (lambda r: M.VGG11((224, 224, 3), 1000, rngs=r), _vgg_arithmetic((1, 1, 2, 2, 2))),
        (lambda r: M.ResNet18((224, 224, 3), 1000, rngs=r), RESNET18_COUNT),
        (lambda r: M.ResNet18((224, 224, 3), 1000, rngs=r), _resnet18_arithmetic()),
        # ResNet-34 and ResNet-50 as torchvision counts them.
        (lambda r: M.ResNet34((224, 224, 3), 1000, rngs=r), 21_797_672),
        (lambda r: M.ResNet50((224, 224, 3), 1000, rngs=r), 25_557_032),
        # He et al. Table 6: ResNet-20 "0.27M", ResNet-56 "0.85M" (option A, no projections).
        (lambda r: M.ResNet20((32, 32, 3), 10, rngs=r), 269_722),
        (lambda r: M.ResNet20((32, 32, 3), 10, rngs=r), _cifar_resnet_arithmetic(3, False)),
        (lambda r: M.ResNet56((32, 32, 3), 10, rngs=r), 853_018),
        (lambda r: M.ResNet56((32, 32, 3), 10, rngs=r), _cifar_resnet_arithmetic(9, False)),
        # Option B adds 1*1*16*32 + 64 + 1*1*32*64 + 128 = 2,752 (the 272,474 many print).
        (lambda r: M.ResNet20((32, 32, 3), 10, shortcut="B", rngs=r), 272_474),
        (lambda r: M.ResNet56((32, 32, 3), 10, shortcut="B", rngs=r), 855_770),
        (lambda r: M.LeNet5((32, 32, 1), 10, rngs=r), 61_706),
        (lambda r: M.LeNet5((32, 32, 1), 10, rngs=r), LENET5_COUNT),
        (lambda r: M.AlexNet((227, 227, 3), 1000, rngs=r), 62_378_344),
        (lambda r: M.AlexNet((227, 227, 3), 1000, rngs=r), ALEXNET_COUNT),
        (lambda r: M.AlexNet((227, 227, 3), 1000, groups=2, rngs=r), 60_965_224),
        (lambda r: M.AlexNet((227, 227, 3), 1000, groups=2, rngs=r), ALEXNET_G2_COUNT),
        (lambda r: M.AllCNNC((32, 32, 3), 10, rngs=r), ALLCNNC_COUNT),
        # PatternCNN default on 28x28x1: convs 3*3*1*32, 3*3*32*32, 3*3*32*64, 3*3*64*64 (no
        # bias) + BN 2*(32+32+64+64); FC 7*7*64*256 (no bias) + BN 2*256; FC 256*10+10.
        (
            lambda r: M.PatternCNN(rngs=r),
            9 * (32 + 32 * 32 + 32 * 64 + 64 * 64) + 2 * 192 + 3136 * 256 + 512 + 2570,
        ),
        # DilatedContextNet default on 28x28x1: stem 3*3*1*32+32, seven 3*3*32*32+32, a 1x1
        # 32*32+32, FC 32*10+10.
        (
            lambda r: M.DilatedContextNet((28, 28, 1), 10, rngs=r),
            320 + 7 * 9_248 + 1_056 + 330,
        ),
    ],
)
def test_parameter_counts(ctor, expected):
    assert param_count(ctor) == expected


# ------------------------------------------------------------------ shapes at full size


def _shapes(calls, kind):
    return [c.output_shape for c in calls if isinstance(c.module, kind)]


def test_alexnet_shapes_227():
    out, calls = calls_of(lambda r: M.AlexNet((227, 227, 3), 1000, rngs=r), (227, 227, 3))
    assert out.shape == (1, 1000)
    convs = _shapes(calls, nn.Conv)
    assert convs[0] == (1, 55, 55, 96)  # (227 - 11) / 4 + 1 = 55
    assert convs[1:] == [(1, 27, 27, 256), (1, 13, 13, 384), (1, 13, 13, 384), (1, 13, 13, 256)]
    assert _shapes(calls, nn.MaxPool)[-1] == (1, 6, 6, 256)
    grouped = abstract(lambda r: M.AlexNet((227, 227, 3), 1000, groups=2, rngs=r))
    assert grouped.features[3].kernel.shape == (5, 5, 48, 256)


def test_vgg16_shapes_224():
    out, calls = calls_of(lambda r: M.VGG16((224, 224, 3), 1000, rngs=r), (224, 224, 3))
    assert out.shape == (1, 1000)
    assert len(_shapes(calls, nn.Conv)) == 13 and len(_shapes(calls, nn.Dense)) == 3
    assert _shapes(calls, nn.MaxPool) == [
        (1, 112, 112, 64),
        (1, 56, 56, 128),
        (1, 28, 28, 256),
        (1, 14, 14, 512),
        (1, 7, 7, 512),
    ]


def test_resnet18_shapes_224_and_plain_variant():
    out, calls = calls_of(lambda r: M.ResNet18((224, 224, 3), 1000, rngs=r), (224, 224, 3), 2)
    assert out.shape == (2, 1000)
    convs = _shapes(calls, nn.Conv)
    assert convs[0] == (2, 112, 112, 64) and _shapes(calls, nn.MaxPool) == [(2, 56, 56, 64)]
    assert len(convs) == 1 + 16 + 3  # stem, two convs per block, three projections
    assert convs[-1] == (2, 7, 7, 512)
    assert _shapes(calls, nn.GlobalAvgPool) == [(2, 512)]
    # residual=False: the paper's plain net, which has no projections. 3 projections of
    # 1*1*64*128 + 2*128, 1*1*128*256 + 2*256, 1*1*256*512 + 2*512 = 173,824 fewer parameters.
    plain = param_count(lambda r: M.ResNet18((224, 224, 3), 1000, residual=False, rngs=r))
    assert plain == RESNET18_COUNT - (8_192 + 256 + 32_768 + 512 + 131_072 + 1_024)


def test_cifar_resnet_shapes_and_depth():
    out, calls = calls_of(lambda r: M.ResNet56((32, 32, 3), 10, rngs=r), (32, 32, 3))
    assert out.shape == (1, 10)
    convs = _shapes(calls, nn.Conv)
    assert len(convs) + 1 == 56  # 6n + 1 convs and the FC layer, n = 9
    assert {s[1:] for s in convs} == {(32, 32, 16), (16, 16, 32), (8, 8, 64)}


def test_lenet5_and_allcnnc_shapes():
    _, calls = calls_of(lambda r: M.LeNet5((32, 32, 1), 10, rngs=r), (32, 32, 1))
    assert _shapes(calls, nn.Conv) == [(1, 28, 28, 6), (1, 10, 10, 16), (1, 1, 1, 120)]
    assert _shapes(calls, nn.AvgPool) == [(1, 14, 14, 6), (1, 5, 5, 16)]
    # 28x28 digits with the paper's padding to 32x32.
    out, _ = calls_of(lambda r: M.LeNet5((28, 28, 1), 10, first_padding=2, rngs=r), (28, 28, 1))
    assert out.shape == (1, 10)
    out, calls = calls_of(lambda r: M.AllCNNC((32, 32, 3), 10, rngs=r), (32, 32, 3))
    assert out.shape == (1, 10)
    sizes = [s[1] for s in _shapes(calls, nn.Conv)]
    assert sizes == [32, 32, 16, 16, 16, 8, 6, 6, 6]
    assert not _shapes(calls, nn.MaxPool)
    _, calls = calls_of(lambda r: M.AllCNNC((32, 32, 3), 10, downsample="max", rngs=r), (32, 32, 3))
    assert _shapes(calls, nn.MaxPool) == [(1, 16, 16, 96), (1, 8, 8, 192)]


@pytest.mark.parametrize("pool", ["max", "avg", "l2", "none"])
def test_pattern_cnn_pool_kinds(pool):
    out, calls = calls_of(lambda r: M.PatternCNN((28, 28, 1), 10, pool=pool, rngs=r), (28, 28, 1))
    assert out.shape == (1, 10)
    kinds = {"max": nn.MaxPool, "avg": nn.AvgPool, "l2": nn.LpPool}
    convs = _shapes(calls, nn.Conv)
    if pool == "none":
        # The all-convolutional way: a stride-2 conv after each stage instead of a pool.
        assert len(convs) == 6 and convs[2] == (1, 14, 14, 32) and convs[5] == (1, 7, 7, 64)
        assert not any(isinstance(c.module, tuple(kinds.values())) for c in calls)
    else:
        assert len(convs) == 4
        assert _shapes(calls, kinds[pool]) == [(1, 14, 14, 32), (1, 7, 7, 64)]


def test_pattern_cnn_knobs():
    def build(**kw):
        return lambda r: M.PatternCNN((28, 28, 1), 10, rngs=r, **kw)

    # downsample="stride": the stage's last conv carries the stride (no extra layer).
    _, calls = calls_of(build(pool="none", downsample="stride"), (28, 28, 1))
    assert [c.module.stride for c in calls if isinstance(c.module, nn.Conv)] == [1, 2, 1, 2]
    # N, M, K, widths, no batch norm, pool only after the first stage, VALID padding, dilation.
    kw = dict(widths=(8, 16, 16), convs_per_stage=(1, 2, 1), fc_widths=(32, 16))
    _, calls = calls_of(
        build(**kw, batch_norm=False, pool_after=(True, False, False), padding="VALID"),
        (28, 28, 1),
    )
    convs = _shapes(calls, nn.Conv)
    assert convs == [(1, 26, 26, 8), (1, 11, 11, 16), (1, 9, 9, 16), (1, 7, 7, 16)]
    assert _shapes(calls, nn.Dense) == [(1, 32), (1, 16), (1, 10)]
    assert not _shapes(calls, nn.BatchNorm)
    _, calls = calls_of(build(dilation=2, padding="VALID", pool_after=(False, False)), (28, 28, 1))
    assert _shapes(calls, nn.Conv)[-1] == (1, 12, 12, 64)  # four 5-wide effective windows
    model = abstract(build(kernel_size=5, dropout=0.5, conv_dropout=0.1))
    assert model.features[0].kernel_size == (5, 5)
    assert sum(isinstance(m, nn.Dropout) for _, m in nnx.iter_modules(model)) == 3


def test_dilated_context_net_shapes():
    out, calls = calls_of(
        lambda r: M.DilatedContextNet((28, 28, 1), 10, dense_output=True, rngs=r), (28, 28, 1)
    )
    assert out.shape == (1, 28, 28, 10)  # resolution kept by padding = dilation
    assert [c.module.dilation for c in calls if isinstance(c.module, nn.Conv)] == [
        1,
        1,
        1,
        2,
        4,
        8,
        16,
        1,
        1,
        1,
    ]


# ------------------------------------------------------------------ forward: jit and vmap

TINY = {
    "PatternCNN": (
        lambda r, c=3, **kw: M.PatternCNN((8, 8, 1), c, widths=(2, 2), fc_widths=(3,), rngs=r, **kw)
    ),
    "LeNet5": (
        lambda r, c=3, **kw: M.LeNet5((32, 32, 1), c, widths=(2, 2, 2), fc_width=3, rngs=r, **kw)
    ),
    "AlexNet": (
        lambda r, c=3, **kw: M.AlexNet(
            (67, 67, 3), c, widths=(2,) * 5, fc_width=3, groups=2, rngs=r, **kw
        )
    ),
    "VGG11": (lambda r, c=3, **kw: M.VGG11((32, 32, 1), c, base_width=2, fc_width=4, rngs=r, **kw)),
    "VGG16": (lambda r, c=3, **kw: M.VGG16((32, 32, 1), c, base_width=2, fc_width=4, rngs=r, **kw)),
    "AllCNNC": (lambda r, c=3, **kw: M.AllCNNC((12, 12, 1), c, widths=(2, 2), rngs=r, **kw)),
    "ResNet18": (lambda r, c=3, **kw: M.ResNet18((16, 16, 1), c, base_width=1, rngs=r, **kw)),
    "ResNet34": (lambda r, c=3, **kw: M.ResNet34((16, 16, 1), c, base_width=1, rngs=r, **kw)),
    "ResNet20": (lambda r, c=3, **kw: M.ResNet20((8, 8, 1), c, base_width=1, rngs=r, **kw)),
    "ResNet56": (lambda r, c=3, **kw: M.ResNet56((8, 8, 1), c, base_width=1, rngs=r, **kw)),
    # Identity initialisation keeps a 2-wide stack of 8 ReLU layers from dying at random init.
    "DilatedContextNet": (
        lambda r, c=3, **kw: M.DilatedContextNet(
            (8, 8, 1), c, width=2, identity_init=True, rngs=r, **kw
        )
    ),
}


def fast_jit(fn, *args):
    """``jax.jit(fn)(*args)`` compiled at LLVM optimisation level 0: compile time is this
    test's cost, run time is microseconds, and the numbers are the same to float32 rounding."""
    options = {"xla_backend_optimization_level": 0}
    return jax.jit(fn).lower(*args).compile(compiler_options=options)(*args)


@functools.cache
def tiny_model(name):
    """A tiny instance of each model, built once per test session (compiles are the cost).

    Its head is random: the default zero head (``head_scheme="zeros"``) gives constant logits,
    which would hide the rest of the network from the forward checks below.
    """
    return TINY[name](rngs(), head_scheme="lecun_normal")


@pytest.mark.parametrize("name", sorted(TINY))
def test_untrained_zoo_models_start_at_uniform_predictions(name):
    # The zoo's heads start at zero: logits 0, so the cross-entropy on any input is ln(10).
    # Float32 rounding of log(10) and of the batch mean is a few ulps of 2.3, below 1e-6.
    model = TINY[name](rngs(), 10)
    x = jax.random.normal(jax.random.key(3, impl="rbg"), (4, *model.input_shape))
    labels = jnp.array([0, 3, 7, 9])
    for train in (True, False):  # batch statistics, then running ones
        model.train() if train else model.eval()
        graphdef, state = nnx.split(model)
        logits = fast_jit(functools.partial(_apply, graphdef), state, x)
        loss = float(cf.softmax_cross_entropy(logits, labels))
        assert abs(loss - np.log(10)) < 1e-6, (name, train, loss)


def test_dense_output_head_starts_at_uniform_predictions():
    model = M.DilatedContextNet((8, 8, 1), 10, width=2, dense_output=True, rngs=rngs())
    x = jax.random.normal(jax.random.key(4, impl="rbg"), (2, 8, 8, 1))
    logits = model(x)  # per pixel
    loss = float(cf.softmax_cross_entropy(logits, jnp.zeros((2, 8, 8), jnp.int32)))
    assert logits.shape == (2, 8, 8, 10) and abs(loss - np.log(10)) < 1e-6


def _apply(graphdef, state, x):
    return nnx.merge(graphdef, state)(x)


@pytest.mark.parametrize("name", sorted(TINY))
def test_forward_jit_and_vmap(name):
    model = tiny_model(name)
    model.eval()
    graphdef, state = nnx.split(model)
    shape = model.input_shape

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    xs = jax.random.normal(jax.random.key(1, impl="rbg"), (2, 2, *shape))  # 2 batches of 2 images
    ys = fast_jit(jax.vmap(forward, in_axes=(None, 0)), state, xs)
    assert ys.shape == (2, 2, 3) and bool(jnp.all(jnp.isfinite(ys)))
    # vmap over batches equals a jitted call per batch.
    y1 = fast_jit(forward, state, xs[1])
    np.testing.assert_allclose(ys[1], y1, rtol=1e-5, atol=1e-5)
    assert len(set(np.asarray(ys).round(5).ravel().tolist())) > 1  # not a constant output


def test_dilated_identity_init_and_receptive_field():
    # Identity initialisation: on the stem's (non-negative) output the context module is the
    # identity, as Yu & Koltun intend.
    model = M.DilatedContextNet((8, 8, 1), 3, width=2, identity_init=True, rngs=rngs())
    x = jax.random.normal(jax.random.key(0, impl="rbg"), (1, 8, 8, 1))
    stem = model.stem(x)
    np.testing.assert_allclose(model.context(stem), stem, rtol=1e-6, atol=1e-6)
    # Receptive field of the basic module: 1 + 2 * (1 + 1 + 2 + 4 + 8 + 16 + 1) = 67 pixels,
    # plus 2 for the 3x3 stem: 69. With positive weights nothing cancels, so the input pixels
    # that reach the centre output are exactly the receptive field.
    net = M.DilatedContextNet((75, 75, 1), 1, width=1, dense_output=True, rngs=rngs())
    graphdef, state = nnx.split(net)
    state = jax.tree.map(lambda a: jnp.abs(a) + 0.1, state)
    img = jnp.ones((1, 75, 75, 1))
    grad = jax.jit(jax.grad(lambda x: nnx.merge(graphdef, state)(x)[0, 37, 37, 0]))(img)
    rows, cols = np.nonzero(np.asarray(grad[0, :, :, 0]))
    assert (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) == (69, 69)


def test_zero_init_residual_starts_blocks_at_identity():
    model = M.ResNet20((8, 8, 1), 3, base_width=1, zero_init_residual=True, rngs=rngs())
    first = model.stages[0]
    assert float(jnp.abs(first.bn2.scale[...]).sum()) == 0.0
    model.eval()
    x = jax.nn.relu(jax.random.normal(jax.random.key(0, impl="rbg"), (1, 8, 8, 1)))
    np.testing.assert_allclose(first(x), x, rtol=1e-6)  # relu(0 + x) = x for x >= 0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda r: M.PatternCNN((28, 28), 10, rngs=r), r"input_shape=\(28, 28\) must be \(H, W"),
        (lambda r: M.PatternCNN((28, 28, 1), 0, rngs=r), r"num_classes=0 must be a positive"),
        (lambda r: M.PatternCNN(pool="stochastic", rngs=r), r"pool='stochastic' is not a pool"),
        (lambda r: M.PatternCNN(pool="none", downsample="x", rngs=r), r"downsample='x' must be"),
        (lambda r: M.PatternCNN(widths=(), rngs=r), r"widths=\(\) gives no conv stage"),
        (lambda r: M.PatternCNN(convs_per_stage=(1,), rngs=r), r"convs_per_stage=\(1,\) must"),
        (lambda r: M.PatternCNN(pool_after=(True,), rngs=r), r"pool_after=\(True,\) has 1"),
        (lambda r: M.LeNet5(pool="l2", rngs=r), r"pool='l2' must be 'avg'"),
        (lambda r: M.AllCNNC(downsample="avg", rngs=r), r"downsample='avg' must be 'conv'"),
        (lambda r: M.VGG((32, 32, 3), 10, stage_sizes=(1,) * 8, rngs=r), r"stage_sizes=\(1, 1"),
        (lambda r: M.ResNet(stage_sizes=(2, 2), block="wide", rngs=r), r"block='wide' must be"),
        (lambda r: M.ResNet18(shortcut="C", rngs=r), r"shortcut='C' must be 'A'"),
        (lambda r: M.CifarResNet(stage_sizes=(3, 0), rngs=r), r"stage_sizes=\(3, 0\) must be"),
        (lambda r: M.DilatedContextNet(dilations=(1, 0), rngs=r), r"dilations=\(1, 0\) must"),
        (lambda r: M.DilatedContextNet(kernel_size=4, rngs=r), r"kernel_size=4 must be odd"),
        # A 28x28 input is too small for LeNet-5's C5 without padding (4x4 left for a 5x5).
        (lambda r: M.LeNet5((28, 28, 1), 10, rngs=r), r"kernel_size=5"),
    ],
)
def test_model_errors(build, match):
    with pytest.raises(ValueError, match=match):
        nnx.eval_shape(lambda: build(rngs()))
