"""`conv_transpose`: the gradient of `conv` (jax.vjp), a NumPy scatter reference, sizes, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.functional import conv, conv_transpose, conv_transpose_output_size, transpose_kernel


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def naive_conv_transpose(x, k, stride, pads, output_padding, dilation, groups):
    """Batched channels-last scatter: input sample i, tap t adds x[i] @ k[t] at i*S + t*D."""
    n = k.ndim - 2
    spatial = x.shape[1 : n + 1]
    full = [
        (w - 1) * s + d * (f - 1) + 1 + op
        for w, s, d, f, op in zip(spatial, stride, dilation, k.shape[:n], output_padding)
    ]
    cg, c_out = k.shape[-2], k.shape[-1]
    og = c_out // groups
    y = np.zeros((x.shape[0], *full, c_out))
    for pos in itertools.product(*map(range, spatial)):
        for tap in itertools.product(*map(range, k.shape[:n])):
            at = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
            for g in range(groups):
                xs = x[(slice(None), *pos, slice(g * cg, (g + 1) * cg))]
                y[(slice(None), *at, slice(g * og, (g + 1) * og))] += (
                    xs @ k[(*tap, slice(None), slice(g * og, (g + 1) * og))]
                )
    crop = tuple(slice(lo, f - hi) for (lo, hi), f in zip(pads, full))
    return y[(slice(None), *crop)]


def _config(seed):
    rng = np.random.default_rng(200 + seed)
    n = 1 + seed % 3
    groups = [1, 2][seed % 2]
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    ksz = tuple(int(v) for v in rng.integers(1, 4, n))
    stride = tuple(int(v) for v in rng.integers(1, 4, n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, n))
    spatial = tuple(int(v) for v in rng.integers(2, 6 if n < 3 else 4, n))
    pads = tuple(
        (int(rng.integers(0, d * (f - 1) + 1)), int(rng.integers(0, d * (f - 1) + 1)))
        for f, d in zip(ksz, dilation)
    )
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    return dict(
        n=n,
        groups=groups,
        cin=cin,
        cout=cout,
        ksz=ksz,
        stride=stride,
        dilation=dilation,
        spatial=spatial,
        pads=pads if seed % 3 else tuple(lo for lo, _ in pads),
        output_padding=output_padding,
        channels_last=bool(seed % 4 < 2),
        batched=bool(seed % 5),
    )


@pytest.mark.parametrize("seed", range(24))
def test_matches_numpy_scatter(seed, x64):
    c = _config(seed)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, *c["spatial"], c["cin"]))
    k = rng.standard_normal((*c["ksz"], c["cin"] // c["groups"], c["cout"]))
    b = rng.standard_normal(c["cout"])
    pairs = tuple(p if isinstance(p, tuple) else (p, p) for p in c["pads"])
    want = (
        naive_conv_transpose(
            x, k, c["stride"], pairs, c["output_padding"], c["dilation"], c["groups"]
        )
        + b
    )
    xin = x if c["channels_last"] else np.moveaxis(x, -1, 1)
    if not c["channels_last"]:
        want = np.moveaxis(want, -1, 1)
    if not c["batched"]:
        xin, want = xin[0], want[0]
    got = conv_transpose(
        xin,
        k,
        b,
        stride=c["stride"],
        padding=c["pads"],
        output_padding=c["output_padding"],
        dilation=c["dilation"],
        groups=c["groups"],
        channels_last=c["channels_last"],
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    sizes = [
        conv_transpose_output_size(w, f, s, p, d, op)
        for w, f, s, p, d, op in zip(
            c["spatial"], c["ksz"], c["stride"], pairs, c["dilation"], c["output_padding"]
        )
    ]
    spatial_out = got.shape[-1 - c["n"] : -1] if c["channels_last"] else got.shape[-c["n"] :]
    assert list(spatial_out) == sizes


@pytest.mark.parametrize("seed", range(18))
def test_is_the_input_gradient_of_conv(seed, x64):
    """jax.vjp of conv w.r.t. x == conv_transpose of the cotangent with transpose_kernel(w)."""
    rng = np.random.default_rng(300 + seed)
    n = 1 + seed % 3
    groups = [1, 2, 3][seed % 3]
    a, b = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    ksz = tuple(int(v) for v in rng.integers(1, 4, n))
    stride = tuple(int(v) for v in rng.integers(1, 4, n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, n))
    spatial = tuple(int(v) for v in rng.integers(6, 10 if n < 3 else 8, n))
    pads = tuple((int(rng.integers(0, 3)), int(rng.integers(0, 3))) for _ in range(n))
    channels_last = bool(seed % 2)
    shape = (2, *spatial, a) if channels_last else (2, a, *spatial)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((*ksz, a // groups, b))  # conv: a -> b channels
    kw = dict(stride=stride, padding=pads, dilation=dilation, groups=groups)
    y, pullback = jax.vjp(lambda x_: conv(x_, w, channels_last=channels_last, **kw), x)
    ct = rng.standard_normal(y.shape)
    (dx,) = pullback(ct)
    # output_padding recovers the input positions the conv's floor dropped
    output_padding = tuple(
        (wi + lo + hi - (d * (f - 1) + 1)) % s
        for wi, (lo, hi), d, f, s in zip(spatial, pads, dilation, ksz, stride)
    )
    got = conv_transpose(
        ct,
        transpose_kernel(w, groups),  # b -> a channels
        output_padding=output_padding,
        channels_last=channels_last,
        **kw,
    )
    assert got.shape == dx.shape == x.shape
    np.testing.assert_allclose(got, dx, rtol=1e-10, atol=1e-10)


def test_pytorch_style_upsampling_sizes():
    x = jnp.ones((1, 7, 7, 4))
    k = jnp.ones((3, 3, 4, 2))
    assert conv_transpose(x, k, stride=2, padding=1, output_padding=1).shape == (1, 14, 14, 2)
    assert conv_transpose(x, k, stride=2, padding=1).shape == (1, 13, 13, 2)
    assert conv_transpose(x, k).shape == (1, 9, 9, 2)
    k4 = jnp.ones((4, 4, 4, 2))
    assert conv_transpose(x, k4, stride=2, padding=1).shape == (1, 14, 14, 2)  # DCGAN block


def test_by_hand_1d():
    # x = [1, 2], k = [1, 10, 100], stride 2: scatter x[i] * k at 2i:
    #   [1, 10, 100, 0, 0] + [0, 0, 2, 20, 200] = [1, 10, 102, 20, 200]; padding 1 crops ends
    x = jnp.array([1.0, 2.0])[:, None]
    k = jnp.array([1.0, 10.0, 100.0])[:, None, None]
    np.testing.assert_array_equal(conv_transpose(x, k, stride=2)[:, 0], [1, 10, 102, 20, 200])
    np.testing.assert_array_equal(conv_transpose(x, k, stride=2, padding=1)[:, 0], [10, 102, 20])
    np.testing.assert_array_equal(
        conv_transpose(x, k, stride=2, padding=1, output_padding=1)[:, 0], [10, 102, 20, 200]
    )


def test_transpose_kernel_is_an_involution_and_swaps_group_roles():
    w = jnp.arange(3 * 4 * 6, dtype=jnp.float32).reshape(3, 4, 6)  # groups=2: 8 -> 6 channels
    t = transpose_kernel(w, 2)
    assert t.shape == (3, 3, 8)  # 6 -> 8 channels, 3 per group
    np.testing.assert_array_equal(transpose_kernel(t, 2), w)
    # element check: t[k, o', g*I + i] == w[k, i, g*(O/G) + o']
    assert t[1, 2, 1 * 4 + 3] == w[1, 3, 1 * 3 + 2]
    with pytest.raises(ValueError, match=r"groups=4 must be >= 1 and divide the kernel's output"):
        transpose_kernel(w, 4)


def test_jit_vmap_grad_match_eager(x64):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((3, 4, 5, 4)))
    k = jnp.asarray(rng.standard_normal((3, 2, 2, 6)))
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), dilation=(1, 2), groups=2)
    f = lambda x_, k_: conv_transpose(x_, k_, **kw)
    eager = f(x, k)
    # Each output sums <= 12 float64 products (3x2 taps x 2 channels); another summation
    # order changes it by <= 12 * 2.2e-16 * max|x k| (< 30), about 1e-13: an atol for zeros.
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(f)(x, k), eager, **tol)
    np.testing.assert_allclose(jax.vmap(f, in_axes=(0, None))(x, k), eager, **tol)
    loss = lambda x_, k_: jnp.sum(f(x_, k_) ** 2)
    g = jax.grad(loss, argnums=(0, 1))(x, k)
    gj = jax.jit(jax.grad(loss, argnums=(0, 1)))(x, k)
    for a, b in zip(g, gj):
        # Gradients sum many more products (all outputs an input reaches): atol 1e-10.
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    # d loss / d x of a linear map L is 2 L^T L x; L^T is conv with the transposed kernel
    y = f(x, k)
    back = conv(
        2 * y, transpose_kernel(k, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2
    )
    np.testing.assert_allclose(g[0], back, rtol=1e-10, atol=1e-10)


def test_errors():
    x = jnp.ones((1, 5, 5, 4))
    k = jnp.ones((3, 3, 4, 2))
    with pytest.raises(ValueError, match=r"padding='CAUSAL' is not a padding name conv_transpose"):
        conv_transpose(x, k, padding="CAUSAL")
    with pytest.raises(ValueError, match=r"output_padding=2 must be >= 0 and smaller than the"):
        conv_transpose(x, k, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"output_padding=-1 must be >= 0"):
        conv_transpose(x, k, stride=2, output_padding=-1)
    with pytest.raises(ValueError, match=r"padding=\(5, 5\) removes the whole output"):
        conv_transpose(x, k, padding=(0, 5))
    with pytest.raises(ValueError, match=r"stride=0 must be >= 1"):
        conv_transpose(x, k, stride=0)
    with pytest.raises(ValueError, match=r"dilation=0 must be >= 1"):
        conv_transpose(x, k, dilation=0)
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 3, 3, 2\) expects 3 \* groups = 3"):
        conv_transpose(x, jnp.ones((3, 3, 3, 2)))
    with pytest.raises(ValueError, match=r"groups=3 must divide both the input channels \(4\)"):
        conv_transpose(x, k, groups=3)
    with pytest.raises(ValueError, match=r"x.shape=\(5, 5\) has rank 2, but conv_transpose with"):
        conv_transpose(jnp.ones((5, 5)), k)
    with pytest.raises(ValueError, match=r"bias.shape=\(4,\) must be \(2,\)"):
        conv_transpose(x, k, jnp.ones(4))
    with pytest.raises(ValueError, match=r"impl='toeplitz' is not a known convolution"):
        conv_transpose(x, k, impl="toeplitz")
