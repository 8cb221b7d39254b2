"""`conv`: hand-computed cases, a naive NumPy loop reference, shape rules, transforms, errors."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf
from convjax.functional import conv, conv1d, conv2d, conv3d

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


# --------------------------------------------------------------------------- hand-computed

# A 5x5 binary image and a 3x3 filter with ones on the corners and the centre.
IMAGE = np.array(
    [
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 0],
        [0, 1, 1, 0, 0],
    ],
    np.float32,
)
X_FILTER = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], np.float32)


def _as_nhwc(a):
    return jnp.asarray(a)[None, :, :, None]


def _as_hwio(f):
    return jnp.asarray(f)[:, :, None, None]


def test_binary_image_valid_by_hand():
    # out[i, j] = x[i, j] + x[i, j+2] + x[i+1, j+1] + x[i+2, j] + x[i+2, j+2]
    #   (0,0): 1+1+1+0+1 = 4   (0,1): 1+0+1+0+1 = 3   (0,2): 1+0+1+1+1 = 4
    #   (1,0): 0+1+0+0+1 = 2   (1,1): 1+1+1+0+1 = 4   (1,2): 1+0+1+1+0 = 3
    #   (2,0): 0+1+0+0+1 = 2   (2,1): 0+1+1+1+0 = 3   (2,2): 1+1+1+1+0 = 4
    expected = np.array([[4, 3, 4], [2, 4, 3], [2, 3, 4]], np.float32)
    got = conv(_as_nhwc(IMAGE), _as_hwio(X_FILTER))
    np.testing.assert_array_equal(got[0, :, :, 0], expected)
    # channels-first and unbatched give the same numbers
    got_cf = conv(jnp.asarray(IMAGE)[None], _as_hwio(X_FILTER), channels_last=False)
    np.testing.assert_array_equal(got_cf[0], expected)


def test_binary_image_stride2_pad1_by_hand():
    # Windows centred on rows/cols 0, 2, 4; value = centre + its four diagonal neighbours
    # (zero outside the image):
    #   (0,0): 1+x[1,1]=2            (0,2): 1+x[1,1]+x[1,3]=3        (0,4): 0+x[1,3]=1
    #   (2,0): 0+x[1,1]+x[3,1]=1     (2,2): 1+1+1+0+1=4              (2,4): 1+x[1,3]+x[3,3]=3
    #   (4,0): 0+x[3,1]=0            (4,2): 1+x[3,1]+x[3,3]=2        (4,4): 0+x[3,3]=1
    expected = np.array([[2, 3, 1], [1, 4, 3], [0, 2, 1]], np.float32)
    got = conv(_as_nhwc(IMAGE), _as_hwio(X_FILTER), stride=2, padding=1)
    np.testing.assert_array_equal(got[0, :, :, 0], expected)


def test_flip_by_hand_asymmetric_filter():
    # f has 1 at (0,0) and 2 at (2,2).
    # Cross-correlation: x[i,j] + 2 x[i+2,j+2]
    #   (0,0): 1+2*1=3  (0,1): 1+2*1=3  (0,2): 1+2*1=3
    #   (1,0): 0+2*1=2  (1,1): 1+2*1=3  (1,2): 1+2*0=1
    #   (2,0): 0+2*1=2  (2,1): 0+2*0=0  (2,2): 1+2*0=1
    # True convolution (f flipped: 2 at (0,0), 1 at (2,2)): 2 x[i,j] + x[i+2,j+2]
    #   (0,0): 2+1=3  (0,1): 2+1=3  (0,2): 2+1=3
    #   (1,0): 0+1=1  (1,1): 2+1=3  (1,2): 2+0=2
    #   (2,0): 0+1=1  (2,1): 0+0=0  (2,2): 2+0=2
    f = np.zeros((3, 3), np.float32)
    f[0, 0], f[2, 2] = 1, 2
    corr = np.array([[3, 3, 3], [2, 3, 1], [2, 0, 1]], np.float32)
    true = np.array([[3, 3, 3], [1, 3, 2], [1, 0, 2]], np.float32)
    np.testing.assert_array_equal(conv(_as_nhwc(IMAGE), _as_hwio(f))[0, :, :, 0], corr)
    np.testing.assert_array_equal(conv(_as_nhwc(IMAGE), _as_hwio(f), flip=True)[0, :, :, 0], true)


def test_flip_full_is_numpy_convolve(x64):
    rng = np.random.default_rng(1)
    sig, w = rng.standard_normal(9), rng.standard_normal(4)
    # NumPy sums the <= 4 products in another order: float64 rounding is <= 4 * 2.2e-16 *
    # max|sig * w| (< 20 here), about 2e-14, so an atol of 1e-12 covers outputs near zero.
    got = conv(sig[:, None], w[:, None, None], padding="FULL", flip=True)[:, 0]
    np.testing.assert_allclose(got, np.convolve(sig, w, mode="full"), rtol=1e-12, atol=1e-12)
    got_corr = conv(sig[:, None], w[:, None, None], padding="VALID")[:, 0]
    np.testing.assert_allclose(got_corr, np.correlate(sig, w, mode="valid"), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- naive reference


def naive_conv(x, w, b, stride, pads, dilation, groups, mode, flip):
    """Batched channels-last reference: explicit np.pad, then loops over outputs and taps."""
    n = w.ndim - 2
    if flip:
        w = w[(slice(None, None, -1),) * n]
    widths = [(0, 0)] + list(pads) + [(0, 0)]
    xp = np.pad(x, widths, mode=NP_MODE[mode])
    out = [
        (xp.shape[1 + i] - dilation[i] * (w.shape[i] - 1) - 1) // stride[i] + 1 for i in range(n)
    ]
    cg, c_out = w.shape[-2], w.shape[-1]
    og = c_out // groups
    y = np.zeros((x.shape[0], *out, c_out))
    for pos in itertools.product(*map(range, out)):
        for tap in itertools.product(*map(range, w.shape[:n])):
            idx = tuple(p * s + t * d for p, s, t, d in zip(pos, stride, tap, dilation))
            for o in range(c_out):
                g = o // og
                y[(slice(None), *pos, o)] += (
                    xp[(slice(None), *idx, slice(g * cg, (g + 1) * cg))]
                    @ (w[(*tap, slice(None), o)])
                )
    return y if b is None else y + b


def _random_config(rng, i):
    n = int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2, 3]))
    cin, cout = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    ksz = tuple(int(v) for v in rng.integers(1, 4, n))
    stride = tuple(int(v) for v in rng.integers(1, 4, n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, n))
    spatial = tuple(int(v) for v in rng.integers(4, 8 if n < 3 else 6, n))
    padding = [
        "VALID",
        "SAME",
        "same_lower",
        "FULL",
        "CAUSAL",
        int(rng.integers(0, 3)),
        tuple(int(v) for v in rng.integers(0, 3, n)),
        tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (n, 2))),
    ][i % 8]
    mode = ["zeros", "reflect", "replicate", "circular"][(i // 8) % 4]
    return dict(
        n=n,
        groups=groups,
        cin=cin,
        cout=cout,
        ksz=ksz,
        stride=stride,
        dilation=dilation,
        spatial=spatial,
        padding=padding,
        mode=mode,
        channels_last=bool(rng.integers(2)),
        batched=bool(rng.integers(2)),
        flip=bool(rng.integers(2)),
        bias=bool(rng.integers(2)),
    )


@pytest.mark.parametrize("seed", range(40))
def test_matches_naive_numpy(seed, x64):
    rng = np.random.default_rng(seed)
    c = _random_config(rng, seed)
    n = c["n"]
    x = rng.standard_normal((2, *c["spatial"], c["cin"]))
    w = rng.standard_normal((*c["ksz"], c["cin"] // c["groups"], c["cout"]))
    b = rng.standard_normal(c["cout"]) if c["bias"] else None
    pads = cf.resolve_padding(c["padding"], c["spatial"], c["ksz"], c["stride"], c["dilation"])
    fits = all(
        w_ + lo + hi >= d * (k - 1) + 1
        for w_, (lo, hi), d, k in zip(c["spatial"], pads, c["dilation"], c["ksz"])
    )
    reflect_ok = c["mode"] != "reflect" or all(
        max(p) <= w_ - 1 for p, w_ in zip(pads, c["spatial"])
    )
    xin = x if c["channels_last"] else np.moveaxis(x, -1, 1)
    if not c["batched"]:
        xin = xin[0]
    kwargs = dict(
        stride=c["stride"],
        padding=c["padding"],
        dilation=c["dilation"],
        groups=c["groups"],
        padding_mode=c["mode"],
        channels_last=c["channels_last"],
        flip=c["flip"],
    )
    if not (fits and reflect_ok):
        with pytest.raises(ValueError, match="larger than the padded input|too wide"):
            conv(xin, w, b, **kwargs)
        return
    want = naive_conv(x, w, b, c["stride"], pads, c["dilation"], c["groups"], c["mode"], c["flip"])
    if not c["channels_last"]:
        want = np.moveaxis(want, -1, 1)
    if not c["batched"]:
        want = want[0]
    got = conv(xin, w, b, **kwargs)
    assert got.dtype == jnp.float64
    assert got.shape == want.shape, (got.shape, want.shape, n)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)


# --------------------------------------------------------------------------- shape rules


def test_seed_examples():
    x = jnp.ones((7, 7, 1))
    k = jnp.ones((3, 3, 1, 1))
    assert conv(x, k).shape == (5, 5, 1)
    assert conv(x, k, stride=2).shape == (3, 3, 1)
    assert conv(x, k, stride=2, strict=True).shape == (3, 3, 1)  # (7 - 3) / 2 is whole
    assert conv(x, k, stride=3).shape == (2, 2, 1)  # floor: last input column dropped
    with pytest.raises(ValueError, match=r"stride=3 does not fit: .*\(7 - 3 \+ 0 \+ 0\) / 3"):
        conv(x, k, stride=3, strict=True)

    params = {"kernel": jnp.ones((5, 5, 3, 10)), "bias": jnp.zeros(10)}
    assert sum(p.size for p in params.values()) == 760
    y = conv(jnp.ones((1, 32, 32, 3)), params["kernel"], params["bias"], stride=1, padding=2)
    assert y.shape == (1, 32, 32, 10)

    alex = conv(jnp.ones((1, 227, 227, 3)), jnp.ones((11, 11, 3, 96)), stride=4, padding=0)
    assert alex.shape == (1, 55, 55, 96)


@pytest.mark.parametrize("width,stride", [(7, 1), (7, 2), (8, 2), (8, 3), (9, 4)])
def test_same_output_is_ceil_and_lower_puts_extra_first(width, stride):
    x = jnp.asarray(np.random.default_rng(0).standard_normal((width, width, 1)), jnp.float32)
    k = jnp.asarray(np.random.default_rng(1).standard_normal((4, 4, 1, 1)), jnp.float32)
    out = -(-width // stride)
    assert conv(x, k, stride=stride, padding="SAME").shape == (out, out, 1)
    total = max((out - 1) * stride + 4 - width, 0)
    hi = total - total // 2
    lower = conv(x, k, stride=stride, padding="SAME_LOWER")
    # Both calls reach the same padding pairs; the atol covers outputs near zero should XLA
    # sum the 16 float32 products of N(0, 1) values in another order (<= 16 * 6e-8 * 10).
    np.testing.assert_allclose(
        lower, conv(x, k, stride=stride, padding=[(hi, total - hi)] * 2), rtol=1e-6, atol=1e-5
    )
    assert conv(x, k, padding="FULL").shape == (width + 3, width + 3, 1)


def test_causal_sees_only_the_past_in_every_dimension():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((6, 6, 2)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 2, 2, 3)), jnp.float32)
    y = conv(x, k, padding="CAUSAL", dilation=(1, 2))
    assert y.shape == (6, 6, 3)
    x2 = x.at[4, 3].add(10.0)  # change one "future" sample
    y2 = conv(x2, k, padding="CAUSAL", dilation=(1, 2))
    changed = np.any(np.asarray(y2 != y), axis=-1)
    rows, cols = np.nonzero(changed)
    assert rows.size and rows.min() >= 4 and cols.min() >= 3


def test_depthwise_with_channel_multiplier():
    rng = np.random.default_rng(0)
    c, mult = 3, 2
    x = jnp.asarray(rng.standard_normal((2, 6, 6, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 1, c * mult)), jnp.float32)
    y = conv(x, k, groups=c, padding="SAME")
    assert y.shape == (2, 6, 6, c * mult)
    for o in range(c * mult):  # output o reads only input channel o // mult
        single = conv(x[..., o // mult : o // mult + 1], k[..., o : o + 1], padding="SAME")
        np.testing.assert_allclose(y[..., o], single[..., 0], rtol=1e-5, atol=1e-5)


def test_conv1d_2d_3d_shapes_and_mixed_stride_dilation():
    assert conv1d(jnp.ones((2, 10, 3)), jnp.ones((3, 3, 4)), stride=2, dilation=2).shape == (
        2,
        3,
        4,
    )
    y2 = conv2d(jnp.ones((9, 9, 2)), jnp.ones((3, 2, 2, 5)), stride=(2, 1), dilation=(1, 3))
    assert y2.shape == (4, 6, 5)
    y3 = conv3d(jnp.ones((1, 2, 5, 6, 7)), jnp.ones((2, 3, 3, 2, 4)), channels_last=False)
    assert y3.shape == (1, 4, 4, 4, 5)


def test_dtypes():
    x = jnp.ones((1, 5, 5, 2), jnp.bfloat16)
    k = jnp.ones((3, 3, 2, 4), jnp.bfloat16)
    assert conv(x, k).dtype == jnp.bfloat16
    y = conv(x, k, preferred_element_type=jnp.float32)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(y, np.full((1, 3, 3, 4), 18.0, np.float32))
    assert conv(x, k.astype(jnp.float32)).dtype == jnp.float32  # promoted
    y_hi = conv(x.astype(jnp.float32), k.astype(jnp.float32), precision=jax.lax.Precision.HIGHEST)
    np.testing.assert_array_equal(y_hi, np.full((1, 3, 3, 4), 18.0, np.float32))


# --------------------------------------------------------------------------- transforms


def _transform_case():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((3, 7, 6, 4)))
    k = jnp.asarray(rng.standard_normal((3, 2, 2, 6)))
    b = jnp.asarray(rng.standard_normal(6))
    kw = dict(stride=(2, 1), padding="SAME", dilation=(1, 2), groups=2, padding_mode="reflect")
    return x, k, b, kw


def test_jit_vmap_grad_match_eager(x64):
    x, k, b, kw = _transform_case()
    f = lambda x_, k_, b_: conv(x_, k_, b_, **kw)
    eager = f(x, k, b)
    # jit, vmap and eager may sum the 12 products per output (3x2 taps x 2 channels) in
    # another order: float64 rounding <= 12 * 2.2e-16 * max|x k| (< 30), about 1e-13, which
    # is large relative to an output near zero; hence the atol.
    tol = dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(jax.jit(f)(x, k, b), eager, **tol)
    per_example = jax.vmap(f, in_axes=(0, None, None))(x, k, b)  # unbatched inside vmap
    np.testing.assert_allclose(per_example, eager, **tol)
    # vmap over kernels too (a population of layers)
    ks = jnp.stack([k, 2 * k])
    pop = jax.vmap(f, in_axes=(None, 0, None))(x, ks, b)
    np.testing.assert_allclose(pop[1] - b, 2 * (eager - b), **tol)

    loss = lambda x_, k_, b_: jnp.sum(jnp.sin(f(x_, k_, b_)))
    grads = jax.grad(loss, argnums=(0, 1, 2))(x, k, b)
    grads_jit = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(x, k, b)
    for g, gj in zip(grads, grads_jit):
        np.testing.assert_allclose(g, gj, rtol=1e-10, atol=1e-12)
    # gradients against central finite differences on a few coordinates of each argument
    eps = 1e-6
    rng = np.random.default_rng(0)
    loss_jit = jax.jit(loss)  # one compilation for all finite-difference evaluations
    for arg, g in enumerate(grads):
        for _ in range(3):
            args = [x, k, b]
            idx = tuple(int(rng.integers(s)) for s in args[arg].shape)
            plus = list(args)
            minus = list(args)
            plus[arg] = args[arg].at[idx].add(eps)
            minus[arg] = args[arg].at[idx].add(-eps)
            fd = (loss_jit(*plus) - loss_jit(*minus)) / (2 * eps)
            np.testing.assert_allclose(g[idx], fd, rtol=1e-6, atol=1e-8)


def test_forward_mode_is_bilinear(x64):
    # jax.jvp gives the bilinear tangent (3-D strided: tests/test_conv_impls.py)
    x, k, _, kw = _transform_case()
    rng = np.random.default_rng(5)
    dx, dk = rng.standard_normal(x.shape), rng.standard_normal(k.shape)
    y, tangent = jax.jvp(lambda x_, k_: conv(x_, k_, **kw), (x, k), (dx, dk))
    # Sums of 12 float64 products in possibly another order (see above): atol for zeros.
    np.testing.assert_allclose(y, conv(x, k, **kw), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(
        tangent, conv(dx, k, **kw) + conv(x, dk, **kw), rtol=1e-10, atol=1e-12
    )


# --------------------------------------------------------------------------- errors


def test_errors_name_the_argument():
    x = jnp.ones((1, 5, 5, 4))
    k = jnp.ones((3, 3, 4, 6))
    with pytest.raises(ValueError, match=r"stride=0 must be >= 1"):
        conv(x, k, stride=0)
    with pytest.raises(ValueError, match=r"stride=\(1, -2\) must be >= 1"):
        conv(x, k, stride=(1, -2))
    with pytest.raises(ValueError, match=r"stride=\(1, 1, 1\) has 3 entries but the op has 2"):
        conv(x, k, stride=(1, 1, 1))
    with pytest.raises(ValueError, match=r"dilation=0 must be >= 1"):
        conv(x, k, dilation=0)
    with pytest.raises(ValueError, match=r"dilation=-1 must be >= 1"):
        conv(x, k, dilation=-1)
    with pytest.raises(ValueError, match=r"kernel_size=3 \(effective size 5 with dilation=2\) is"):
        conv(jnp.ones((1, 4, 4, 4)), k, dilation=2)
    with pytest.raises(
        ValueError, match=r"kernel_size=8 .* larger than the padded input \(5 \+ 1 \+ 1 = 7\)"
    ):
        conv(x, jnp.ones((8, 8, 4, 6)), padding=1)
    with pytest.raises(ValueError, match=r"groups=4 must divide both the input channels \(4\)"):
        conv(x, jnp.ones((3, 3, 1, 6)), groups=4)
    with pytest.raises(ValueError, match=r"groups=0 must be an int >= 1"):
        conv(x, k, groups=0)
    with pytest.raises(
        ValueError, match=r"kernel.shape=\(3, 3, 4, 6\) expects 4 \* groups = 8 input channels"
    ):
        conv(x, k, groups=2)
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 3, 2, 6\) expects 2 \* groups = 2"):
        conv(x, jnp.ones((3, 3, 2, 6)))
    with pytest.raises(
        ValueError, match=r"x.shape=\(5, 5\) has rank 2, but conv with the 2-D kernel .* no channel"
    ):
        conv(jnp.ones((5, 5)), k)
    with pytest.raises(ValueError, match=r"x.shape=\(4,\) has rank 1, .* needs x of rank >= 3"):
        conv(jnp.ones((4,)), k)
    with pytest.raises(ValueError, match=r"kernel.shape=\(3, 6\) has rank 2, but conv needs"):
        conv(x, jnp.ones((3, 6)))
    with pytest.raises(ValueError, match=r"padding='HALF' is not a known padding name"):
        conv(x, k, padding="HALF")
    with pytest.raises(ValueError, match=r"padding=-1 must be >= 0"):
        conv(x, k, padding=-1)
    with pytest.raises(ValueError, match=r"padding_mode='mirror' is not a known padding mode"):
        conv(x, k, padding=1, padding_mode="mirror")
    with pytest.raises(ValueError, match=r"padding='FULL' is too wide for padding_mode='reflect'"):
        conv(jnp.ones((1, 3, 3, 4)), k, padding="FULL", dilation=2, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"padding=5 is too wide .* allows at most 4 per side"):
        conv(x, k, padding=5, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"impl='toeplitz' is not a known convolution impl"):
        conv(x, k, impl="toeplitz")
    with pytest.raises(ValueError, match=r"bias.shape=\(4,\) must be \(6,\)"):
        conv(x, k, jnp.ones(4))
    with pytest.raises(ValueError, match=r"conv1d needs a rank-3 HWIO kernel .* use conv2d"):
        conv1d(x, k)
    with pytest.raises(ValueError, match=r"conv3d needs a rank-5 HWIO kernel .* use conv2d"):
        conv3d(x, k)
    with pytest.raises(ValueError, match=r"conv2d needs a rank-4 HWIO kernel"):
        conv2d(x, jnp.ones((3, 3)))
    # circular padding wider than the input is fine (it wraps), unlike reflect
    assert conv(x, k, padding=7, padding_mode="circular").shape == (1, 17, 17, 6)
