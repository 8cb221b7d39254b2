"""Inputs other libraries accept: leading batch axes, conv_transpose's padding forms and
modes, pooling padding modes, soft targets.

Each is checked against the same convjax op on the flattened batch and against an
independent oracle: PyTorch (CPU) for convolutions, pools and losses, Flax's ConvTranspose
for TensorFlow/Flax padding semantics, optax for soft-target cross-entropy, and hand-worked
numbers.
"""

import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from flax import nnx

import convjax.functional as cf
from convjax import interop
from convjax import nn as cnn
from convjax.functional.padding import pad_adjoint


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _rng(seed=0):
    return np.random.default_rng(seed)


def _nchw(x):
    return torch.tensor(np.asarray(x)).permute(0, 3, 1, 2)


def _nhwc(t):
    return t.detach().permute(0, 2, 3, 1).numpy()


# float64 sums of at most a few dozen products of N(0, 1) values: another summation order
# (PyTorch, or XLA on another batch shape) changes a result by about 30 * 2.2e-16 * 10 ~ 1e-13,
# so rtol 1e-10 with atol 1e-10 holds with a wide margin, values near zero included.
TOL64 = dict(rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ leading batch axes


def test_conv_takes_several_leading_batch_axes(x64):
    rng = _rng(1)
    x = rng.standard_normal((2, 3, 6, 5, 4))  # (A, B, H, W, C)
    k = rng.standard_normal((3, 2, 4, 6))
    b = rng.standard_normal(6)
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2))
    y = cf.conv(x, k, b, **kw)
    flat = cf.conv(x.reshape(6, 6, 5, 4), k, b, **kw)
    assert y.shape == (2, 3) + flat.shape[1:]
    np.testing.assert_array_equal(np.asarray(y).reshape(flat.shape), np.asarray(flat))
    # PyTorch on the flattened batch, NCHW.
    ref = F.conv2d(
        _nchw(x.reshape(6, 6, 5, 4)),
        torch.tensor(interop.conv_weight_to_torch(k)),
        torch.tensor(b),
        stride=(2, 1),
        padding=1,
        dilation=(1, 2),
    )
    np.testing.assert_allclose(np.asarray(y).reshape(flat.shape), _nhwc(ref), **TOL64)
    # channels-first with leading axes: (A, B, C, H, W)
    y_cf = cf.conv(np.moveaxis(x, -1, 2), k, b, channels_last=False, **kw)
    np.testing.assert_allclose(np.moveaxis(np.asarray(y_cf), 2, -1), np.asarray(y), **TOL64)
    # one example and one leading axis keep working
    np.testing.assert_allclose(cf.conv(x[1, 2], k, b, **kw), y[1, 2], **TOL64)


def test_conv_transpose_takes_several_leading_batch_axes(x64):
    rng = _rng(2)
    x = rng.standard_normal((2, 2, 3, 4, 6))
    k = rng.standard_normal((3, 3, 6, 4))
    kw = dict(stride=2, padding=1, output_padding=1)
    y = cf.conv_transpose(x, k, **kw)
    flat = cf.conv_transpose(x.reshape(4, 3, 4, 6), k, **kw)
    assert y.shape == (2, 2) + flat.shape[1:] == (2, 2, 6, 8, 4)
    np.testing.assert_array_equal(np.asarray(y).reshape(flat.shape), np.asarray(flat))
    layer = torch.nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1, output_padding=1, bias=False)
    layer = layer.double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(interop.conv_transpose_weight_to_torch(k)))
    ref = layer(_nchw(x.reshape(4, 3, 4, 6)))
    np.testing.assert_allclose(np.asarray(flat), _nhwc(ref), **TOL64)


POOLS = {
    "max": (
        lambda x, cl: cf.max_pool(x, (3, 2), (2, 1), 1, channels_last=cl),
        lambda t: F.max_pool2d(t, (3, 2), (2, 1), 1),
    ),
    "min": (
        lambda x, cl: cf.min_pool(x, (2, 2), channels_last=cl),
        lambda t: -F.max_pool2d(-t, 2),
    ),
    "sum": (
        lambda x, cl: cf.sum_pool(x, (2, 3), 1, channels_last=cl),
        lambda t: 6 * F.avg_pool2d(t, (2, 3), 1),
    ),
    "avg": (
        lambda x, cl: cf.avg_pool(x, (3, 3), 2, 1, ceil_mode=True, channels_last=cl),
        lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
    ),
    "lp": (
        lambda x, cl: cf.lp_pool(x, (2, 2), p=2.0, channels_last=cl),
        lambda t: F.lp_pool2d(t, 2.0, 2),
    ),
    "adaptive_avg": (
        lambda x, cl: cf.adaptive_avg_pool(x, (3, 2), channels_last=cl),
        lambda t: F.adaptive_avg_pool2d(t, (3, 2)),
    ),
    "adaptive_max": (
        lambda x, cl: cf.adaptive_max_pool(x, (4, 3), channels_last=cl),
        lambda t: F.adaptive_max_pool2d(t, (4, 3)),
    ),
    "global_avg": (
        lambda x, cl: cf.global_avg_pool(x, 2, channels_last=cl),
        lambda t: t.mean((2, 3)),
    ),
    "global_max": (
        lambda x, cl: cf.global_max_pool(x, 2, channels_last=cl),
        lambda t: t.amax((2, 3)),
    ),
}


@pytest.mark.parametrize("name", list(POOLS))
def test_every_pool_takes_several_leading_batch_axes(name, x64):
    ours, theirs = POOLS[name]
    x = _rng(3).standard_normal((2, 3, 7, 6, 2))  # (A, B, H, W, C)
    y = np.asarray(ours(x, True))
    flat = np.asarray(ours(x.reshape(6, 7, 6, 2), True))
    assert y.shape == (2, 3) + flat.shape[1:]
    np.testing.assert_array_equal(y.reshape(flat.shape), flat)
    ref = theirs(_nchw(x.reshape(6, 7, 6, 2)))
    ref = ref.numpy() if ref.ndim == 2 else _nhwc(ref)
    np.testing.assert_allclose(y.reshape(flat.shape), ref, **TOL64)
    # channels-first (A, B, C, H, W) and an unbatched example agree with the same numbers
    y_cf = np.asarray(ours(np.moveaxis(x, -1, 2), False))
    if y_cf.ndim == 5:  # (A, B, C, h, w); global pools give (A, B, C) in either layout
        y_cf = np.moveaxis(y_cf, 2, -1)
    np.testing.assert_allclose(y_cf, y, **TOL64)
    np.testing.assert_allclose(np.asarray(ours(x[1, 0], True)), y[1, 0], **TOL64)


def test_max_unpool_round_trip_with_leading_axes():
    x = jnp.asarray(_rng(4).standard_normal((2, 2, 4, 4, 3)), jnp.float32)
    y, idx = cf.max_pool(x, (2, 2), return_indices=True)
    assert y.shape == idx.shape == (2, 2, 2, 2, 3)
    up = cf.max_unpool(y, idx, (2, 2))
    flat = cf.max_unpool(y.reshape(4, 2, 2, 3), idx.reshape(4, 2, 2, 3), (2, 2))
    np.testing.assert_array_equal(np.asarray(up).reshape(flat.shape), np.asarray(flat))
    # PyTorch's unpool of its own pool on the flattened batch (NCHW)
    t, ti = F.max_pool2d(_nchw(x.reshape(4, 4, 4, 3)), 2, return_indices=True)
    np.testing.assert_array_equal(np.asarray(flat), _nhwc(F.max_unpool2d(t, ti, 2)))


# ------------------------------------------------------------------ conv_transpose forms


def _flax_conv_transpose(x, k, s, padding, transpose_kernel=False):
    """Flax linen ConvTranspose with a given kernel, bias off."""
    # transpose_kernel=True holds the kernel as (*F, features, in_features)
    layer = fnn.ConvTranspose(
        k.shape[-2] if transpose_kernel else k.shape[-1],
        k.shape[:2],
        strides=(s, s),
        padding=padding,
        transpose_kernel=transpose_kernel,
        use_bias=False,
        param_dtype=jnp.float64,
    )
    return layer.apply({"params": {"kernel": jnp.asarray(k)}}, jnp.asarray(x))


CASES = [(3, 2, (5, 4)), (4, 2, (5, 5)), (5, 2, (4, 3)), (2, 3, (4, 3)), (3, 1, (6, 5))]


@pytest.mark.parametrize("f,s,size", CASES)
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
def test_same_and_valid_match_flax_conv_transpose(f, s, size, padding, x64):
    rng = _rng(5)
    x = rng.standard_normal((2, *size, 3))
    flax_kernel = rng.standard_normal((f, f, 3, 4))
    want = _flax_conv_transpose(x, flax_kernel, s, padding)
    # Flax slides the kernel unflipped (transpose_kernel=False): port it flipped.
    got = cf.conv_transpose(x, flax_kernel[::-1, ::-1], stride=s, padding=padding)
    assert got.shape == want.shape
    h, w = size
    if padding == "SAME":
        assert got.shape[1:3] == (h * s, w * s)
    else:
        assert got.shape[1:3] == (h * s + max(f - s, 0), w * s + max(f - s, 0))
    np.testing.assert_allclose(got, want, **TOL64)


def test_transpose_kernel_true_is_convjax_kernel_with_io_swapped(x64):
    # Flax's transpose_kernel=True flips the kernel and swaps its in/out axes itself.
    rng = _rng(6)
    x = rng.standard_normal((1, 4, 5, 3))
    flax_kernel = rng.standard_normal((4, 4, 4, 3))  # (*F, out, in) for transpose_kernel
    want = _flax_conv_transpose(x, flax_kernel, 2, "SAME", transpose_kernel=True)
    got = cf.conv_transpose(x, np.swapaxes(flax_kernel, -1, -2), stride=2, padding="SAME")
    np.testing.assert_allclose(got, want, **TOL64)


@pytest.mark.parametrize("f,s,size", CASES)
def test_circular_matches_flax_circular_conv_transpose(f, s, size, x64):
    rng = _rng(7)
    x = rng.standard_normal((2, *size, 3))
    flax_kernel = rng.standard_normal((f, f, 3, 4))
    want = _flax_conv_transpose(x, flax_kernel, s, "CIRCULAR")
    got = cf.conv_transpose(
        x, flax_kernel[::-1, ::-1], stride=s, padding="SAME", padding_mode="circular"
    )
    np.testing.assert_allclose(got, want, **TOL64)


def test_nnx_conv_transpose_same_port():
    layer = nnx.ConvTranspose(3, 4, (3, 3), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    x = jnp.asarray(_rng(8).standard_normal((2, 5, 5, 3)), jnp.float32)
    kernel = layer.kernel[...][::-1, ::-1]
    got = cf.conv_transpose(x, kernel, layer.bias[...], stride=2, padding="SAME")
    # float32 sums of <= 27 products of values < 5: rounding about 27 * 6e-8 * 5 ~ 1e-5.
    np.testing.assert_allclose(got, layer(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_padding_modes_are_the_gradient_of_a_padded_conv(mode, x64):
    # PyTorch autograd of conv2d(F.pad(x, mode)) is the independent oracle.
    rng = _rng(9)
    in_size, pads, stride, dilation = (7, 6), ((1, 2), (2, 1)), (2, 1), (1, 2)
    w = torch.tensor(rng.standard_normal((5, 3, 3, 3)))  # forward conv 3 -> 5 channels
    x = torch.tensor(rng.standard_normal((2, 3, *in_size)), requires_grad=True)
    torch_pads = (pads[1][0], pads[1][1], pads[0][0], pads[0][1])
    y = F.conv2d(F.pad(x, torch_pads, mode=mode), w, stride=stride, dilation=dilation)
    g = torch.tensor(rng.standard_normal(tuple(y.shape)))
    (y * g).sum().backward()
    kernel = cf.transpose_kernel(interop.conv_weight_from_torch(w))
    b = rng.standard_normal(3)
    got = cf.conv_transpose(
        g.numpy(),
        kernel,
        b,
        stride=stride,
        dilation=dilation,
        padding=pads,
        padding_mode=mode,
        output_size=in_size,
        channels_last=False,
    )
    np.testing.assert_allclose(got, x.grad.numpy() + b[:, None, None], **TOL64)


def test_zeros_mode_is_todays_pytorch_default(x64):
    rng = _rng(10)
    x = rng.standard_normal((1, 4, 4, 2))
    k = rng.standard_normal((3, 3, 2, 3))
    kw = dict(stride=2, padding=1, output_padding=1)
    np.testing.assert_array_equal(
        cf.conv_transpose(x, k, padding_mode="zeros", **kw), cf.conv_transpose(x, k, **kw)
    )


@pytest.mark.parametrize(
    "f,s,p,d,size,out", [(3, 2, 1, 1, (4, 5), (8, 10)), (3, 3, 0, 1, (3, 3), (9, 11))]
)
def test_output_size_picks_output_padding_like_pytorch(f, s, p, d, size, out, x64):
    layer = torch.nn.ConvTranspose2d(3, 4, f, stride=s, padding=p, dilation=d).double()
    x = torch.tensor(_rng(11).standard_normal((2, 3, *size)))
    want = layer(x, output_size=out).detach().numpy()
    kw = interop.conv_kwargs_from_torch(layer)
    kw.pop("output_padding")
    got = cf.conv_transpose(
        x.numpy(), kw.pop("kernel"), kw.pop("bias"), channels_last=False, output_size=out, **kw
    )
    np.testing.assert_allclose(got, want, **TOL64)


def test_output_size_with_same_is_tensorflow_output_shape(x64):
    # TensorFlow's conv2d_transpose(..., output_shape, padding="SAME") is the gradient of a
    # SAME conv on an input of output_shape: an odd size 9 at stride 2 from 5 outputs.
    rng = _rng(12)
    w = rng.standard_normal((3, 3, 2, 4))  # forward conv 2 -> 4 channels
    x = rng.standard_normal((1, 9, 9, 2))
    _, vjp = jax.vjp(lambda v: cf.conv(v, w, stride=2, padding="SAME"), x)
    dy = rng.standard_normal((1, 5, 5, 4))
    got = cf.conv_transpose(
        dy, cf.transpose_kernel(w), stride=2, padding="SAME", output_size=(9, 9)
    )
    np.testing.assert_allclose(got, vjp(dy)[0], **TOL64)


def test_conv_transpose_form_errors():
    x, k = jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 2, 3))
    with pytest.raises(ValueError, match=r"padding='FULL' is not a padding name conv_transpose"):
        cf.conv_transpose(x, k, padding="FULL")
    with pytest.raises(ValueError, match=r"output_padding=\(1, 1\) with padding='SAME'"):
        cf.conv_transpose(x, k, stride=2, padding="SAME", output_padding=1)
    with pytest.raises(ValueError, match=r"output_padding=\(1, 1\) and output_size=\(8, 8\)"):
        cf.conv_transpose(x, k, stride=2, padding=1, output_padding=1, output_size=(8, 8))
    with pytest.raises(
        ValueError, match=r"output_size=\(12, 12\) cannot be reached .* from \(7, 7\) to \(8, 8\)"
    ):
        cf.conv_transpose(x, k, stride=2, padding=1, output_size=(12, 12))
    with pytest.raises(ValueError, match=r"output_size=\(1, 4, 4, 2\) must be one int or 2 ints"):
        cf.conv_transpose(x, k, output_size=(1, 4, 4, 2))
    # output 3 = (4 - 1) * 2 - 6 + 3: reflection allows at most 2 per side there
    with pytest.raises(ValueError, match=r"padding=3 is too wide for padding_mode='reflect'"):
        cf.conv_transpose(x, k, stride=2, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"padding_mode='mirror' is not a known padding mode"):
        cf.conv_transpose(x, k, padding=1, padding_mode="mirror")


def test_conv_transpose_module_takes_modes_and_output_size():
    layer = cnn.ConvTranspose(
        2, 3, (3, 3), stride=2, padding=1, padding_mode="circular", rngs=nnx.Rngs(0)
    )
    x = jnp.asarray(_rng(13).standard_normal((2, 4, 4, 2)), jnp.float32)
    y = layer(x, output_size=(8, 8))
    want = cf.conv_transpose(
        x,
        layer.kernel[...],
        layer.bias[...],
        stride=2,
        padding=1,
        padding_mode="circular",
        output_size=(8, 8),
    )
    np.testing.assert_array_equal(y, want)
    assert layer(x).shape == (2, 7, 7, 3)
    same = cnn.ConvTranspose(2, 3, (3, 3), stride=2, padding="SAME", rngs=nnx.Rngs(0))
    assert same(x).shape == (2, 8, 8, 3)


# ------------------------------------------------------------------ pad adjoint


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
def test_pad_adjoint_is_the_transpose_of_pad(mode, x64):
    rng = _rng(14)
    pads = ((2, 1), (0, 3))
    x = rng.standard_normal((2, 4, 5, 3))
    y = rng.standard_normal((2, 7, 8, 3))
    lhs = np.vdot(np.asarray(cf.pad(x, pads, mode)), y)
    rhs = np.vdot(x, np.asarray(pad_adjoint(y, pads, mode)))
    # two float64 sums of 336 and 120 products of N(0, 1) values: about 336 * 2.2e-16 * 4
    assert abs(lhs - rhs) <= 1e-12 * (1 + abs(lhs))


def test_pad_adjoint_hand_computed():
    # circular (2, 1) on 1 2 3 4: padded 3 4 | 1 2 3 4 | 1; ones fold to 1+1, 1, 1+1, 1+1
    np.testing.assert_array_equal(
        pad_adjoint(jnp.ones((7, 1)), [(2, 1)], "circular")[:, 0], [2, 1, 2, 2]
    )
    # reflect (2, 1) on a b c d: c b | a b c d | c; values 10..16 fold back
    y = jnp.arange(10.0, 17.0)[:, None]
    np.testing.assert_array_equal(
        pad_adjoint(y, [(2, 1)], "reflect")[:, 0], [12, 13 + 11, 14 + 10 + 16, 15]
    )
    # replicate (1, 2): a | a b | b b
    y = jnp.arange(1.0, 6.0)[:, None]
    np.testing.assert_array_equal(pad_adjoint(y, [(1, 2)], "replicate")[:, 0], [1 + 2, 3 + 4 + 5])


# ------------------------------------------------------------------ pooling padding modes


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_pool_padding_modes_match_pytorch_pad_then_pool(mode, x64):
    t = torch.tensor(_rng(15).standard_normal((2, 3, 7, 6)))
    x = t.numpy()
    pads = ((1, 2), (2, 1))
    tp = F.pad(t, (2, 1, 1, 2), mode=mode)
    kw = dict(padding_mode=mode, channels_last=False)
    y, idx = cf.max_pool(x, (3, 3), 2, pads, return_indices=True, **kw)
    np.testing.assert_allclose(y, F.max_pool2d(tp, 3, 2).numpy(), **TOL64)
    # the indices name the input sample each winner copies
    picked = np.take_along_axis(x.reshape(2, 3, -1), np.asarray(idx).reshape(2, 3, -1), -1)
    np.testing.assert_array_equal(picked.reshape(y.shape), np.asarray(y))
    np.testing.assert_allclose(
        cf.avg_pool(x, (3, 3), 2, pads, **kw), F.avg_pool2d(tp, 3, 2).numpy(), **TOL64
    )
    np.testing.assert_allclose(
        cf.sum_pool(x, (2, 2), 1, pads, **kw), 4 * F.avg_pool2d(tp, 2, 1).numpy(), **TOL64
    )
    np.testing.assert_allclose(
        cf.lp_pool(x, (2, 2), 2, pads, p=2.0, **kw), F.lp_pool2d(tp, 2.0, 2).numpy(), **TOL64
    )
    np.testing.assert_allclose(
        cf.min_pool(x, (3, 3), 2, pads, **kw), -F.max_pool2d(-tp, 3, 2).numpy(), **TOL64
    )


def test_pool_padding_mode_same_padding_and_module():
    x = jnp.asarray(_rng(16).standard_normal((1, 5, 5, 2)), jnp.float32)
    pads = cf.resolve_padding("SAME", (5, 5), (3, 3), (2, 2))
    want = cf.max_pool(cf.pad(x, pads, "reflect"), (3, 3), 2)
    np.testing.assert_array_equal(cf.max_pool(x, (3, 3), 2, "SAME", padding_mode="reflect"), want)
    layer = cnn.MaxPool((3, 3), 2, "SAME", padding_mode="reflect")
    np.testing.assert_array_equal(layer(x), want)
    with pytest.raises(ValueError, match=r"padding=3 is too wide for padding_mode='reflect'"):
        cf.avg_pool(jnp.ones((1, 3, 3, 1)), (7, 7), 1, 3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"MaxPool: padding_mode='mirror' is not supported"):
        cnn.MaxPool((2, 2), padding_mode="mirror")


# ------------------------------------------------------------------ soft targets


def test_soft_targets_match_optax_and_pytorch(x64):
    rng = _rng(17)
    logits = rng.standard_normal((6, 5))
    t = rng.random((6, 5))
    t /= t.sum(-1, keepdims=True)
    per = cf.softmax_cross_entropy(logits, t, reduction="none")
    np.testing.assert_allclose(per, optax.softmax_cross_entropy(logits, t), **TOL64)
    for eps in (0.1, 0.4):
        smoothed = cf.softmax_cross_entropy(logits, t, label_smoothing=eps, reduction="none")
        want = optax.softmax_cross_entropy(logits, optax.smooth_labels(t, eps))
        np.testing.assert_allclose(smoothed, want, **TOL64)
        ref = F.cross_entropy(torch.tensor(logits), torch.tensor(t), label_smoothing=eps)
        np.testing.assert_allclose(
            float(cf.softmax_cross_entropy(logits, t, label_smoothing=eps)), float(ref), **TOL64
        )


def test_soft_targets_hand_computed_and_one_hot_equals_labels(x64):
    # logits log([1, 2, 1]) -> p = [1/4, 1/2, 1/4]; targets [1/2, 0, 1/2]: -log(1/4) = log 4.
    logits = np.log([[1.0, 2.0, 1.0]])
    got = cf.softmax_cross_entropy(logits, np.array([[0.5, 0.0, 0.5]]))
    np.testing.assert_allclose(float(got), np.log(4), rtol=1e-12)
    labels = np.array([2, 0, 1, 1])
    z = _rng(18).standard_normal((4, 3))
    onehot = np.eye(3)[labels]
    for eps in (0.0, 0.3):
        np.testing.assert_allclose(
            cf.softmax_cross_entropy(z, onehot, label_smoothing=eps),
            cf.softmax_cross_entropy(z, labels, label_smoothing=eps),
            **TOL64,
        )


def test_soft_target_gradient_is_p_minus_t(x64):
    rng = _rng(19)
    z = rng.standard_normal((3, 4))
    t = rng.random((3, 4))
    t /= t.sum(-1, keepdims=True)
    g = jax.grad(lambda v: cf.softmax_cross_entropy(v, t, reduction="sum"))(z)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    np.testing.assert_allclose(g, p - t, **TOL64)


def test_soft_target_errors():
    z = jnp.zeros((2, 3))
    with pytest.raises(ValueError, match=r"row \(1,\) sums to 2, not 1"):
        cf.softmax_cross_entropy(z, jnp.array([[1.0, 0, 0], [1.0, 1.0, 0]]))
    with pytest.raises(ValueError, match=r"contains -0.5; every entry must be a probability"):
        cf.softmax_cross_entropy(z, jnp.array([[1.5, -0.5, 0], [1.0, 0, 0]]))
    with pytest.raises(ValueError, match=r"labels.shape=\(2, 2\) .* soft targets need"):
        cf.softmax_cross_entropy(z, jnp.ones((2, 2)) / 2)
