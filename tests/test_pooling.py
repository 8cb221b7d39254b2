"""Pooling family: hand-checked cases, a naive NumPy reference, layouts and transforms.

The reference below loops over output positions and window taps one at a time in NumPy;
it shares no code with ``convjax.functional.pooling`` (not even the output-size rule: it
counts window starts by brute force).
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf

# ---------------------------------------------------------------- naive NumPy reference


def _starts(w, f_eff, s, lo, hi, ceil_mode):
    """Window starts (padded coordinates) by brute force; PyTorch's ceil rule."""
    span = w + lo + hi - f_eff
    out = []
    st = 0
    while True:
        fits = st <= span
        ceil_ok = ceil_mode and st < span + s and st < w + lo
        if not (fits or ceil_ok):
            break
        out.append(st)
        st += s
    return out


def naive_pool(x, kind, window, stride, pads, dilation=None, ceil_mode=False, **kw):
    """Pool a channels-first batch ``(N, C, *spatial)``; returns ``(y, grad_fn)``.

    ``grad_fn(g)`` maps an output cotangent to the input gradient (max: the first maximal
    tap in row-major window order gets it).
    """
    x = np.asarray(x, np.float64)
    n = x.ndim - 2
    spatial = x.shape[2:]
    dilation = dilation or (1,) * n
    f_eff = [d * (f - 1) + 1 for f, d in zip(window, dilation)]
    starts = [
        _starts(w, fe, s, lo, hi, ceil_mode)
        for w, fe, s, (lo, hi) in zip(spatial, f_eff, stride, pads)
    ]
    out_shape = x.shape[:2] + tuple(len(s) for s in starts)
    y = np.zeros(out_shape)
    routes = {}  # output position -> list of (input position, weight per (N, C))
    p = kw.get("p", 2.0)
    for pos in itertools.product(*(range(len(s)) for s in starts)):
        taps, inside, in_padded = [], [], []
        for k in itertools.product(*(range(f) for f in window)):
            t = tuple(starts[d][pos[d]] - pads[d][0] + k[d] * dilation[d] for d in range(n))
            taps.append(t)
            inside.append(all(0 <= t[d] < spatial[d] for d in range(n)))
            in_padded.append(all(-pads[d][0] <= t[d] < spatial[d] + pads[d][1] for d in range(n)))
        real = [t for t, ok in zip(taps, inside) if ok]
        vals = np.stack([x[(slice(None), slice(None)) + t] for t in real], -1)
        idx = (slice(None), slice(None)) + pos
        if kind in ("max", "min"):
            v = vals if kind == "max" else -vals
            # First maximal real tap; padding taps are -inf and never win here because
            # every window holds at least one real tap.
            best = np.argmax(v, axis=-1)
            y[idx] = np.take_along_axis(vals, best[..., None], -1)[..., 0]
            routes[pos] = [(t, (best == j).astype(np.float64)) for j, t in enumerate(real)]
        elif kind == "sum":
            y[idx] = vals.sum(-1)
            routes[pos] = [(t, np.ones(x.shape[:2])) for t in real]
        elif kind == "avg":
            if kw.get("divisor_override"):
                div = kw["divisor_override"]
            elif kw.get("count_include_pad", True):
                div = sum(in_padded)
            else:
                div = len(real)
            y[idx] = vals.sum(-1) / div
            routes[pos] = [(t, np.full(x.shape[:2], 1.0 / div)) for t in real]
        elif kind == "lp":
            s = (np.abs(vals) ** p).sum(-1)
            out = s ** (1.0 / p)
            y[idx] = out
            safe = np.where(out > 0, out, 1.0)
            routes[pos] = [
                (
                    t,
                    np.where(
                        out > 0,
                        np.abs(vals[..., j]) ** (p - 1) * np.sign(vals[..., j]) * safe ** (1 - p),
                        0.0,
                    ),
                )
                for j, t in enumerate(real)
            ]
        else:
            raise AssertionError(kind)

    def grad_fn(g):
        g = np.asarray(g, np.float64)
        dx = np.zeros(x.shape)
        for pos, lst in routes.items():
            for t, w in lst:
                dx[(slice(None), slice(None)) + t] += w * g[(slice(None), slice(None)) + pos]
        return dx

    return y, grad_fn


def _cl(a):
    """Channels-first batch -> channels-last."""
    return np.moveaxis(np.asarray(a), 1, -1)


def _cf(a):
    return np.moveaxis(np.asarray(a), -1, 1)


# ---------------------------------------------------------------- hand-checked cases


def test_seed_depth_slice_max_pooled_2x2_stride_2():
    # One 4x4 depth slice, 2x2 windows at stride 2: each output is its quadrant's max.
    slice_ = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], np.float32)
    y = cf.max_pool(slice_[..., None], (2, 2))
    np.testing.assert_array_equal(np.asarray(y)[..., 0], [[6, 8], [3, 4]])
    y, idx = cf.max_pool(slice_[None, None], (2, 2), return_indices=True, channels_last=False)
    np.testing.assert_array_equal(np.asarray(y)[0, 0], [[6, 8], [3, 4]])
    # Flat positions h * 4 + w of 6, 8, 3 (first of the tied 3? no: 3 is unique) and 4.
    np.testing.assert_array_equal(np.asarray(idx)[0, 0], [[5, 7], [8, 15]])


def test_volume_224x224x64_pools_to_112x112x64():
    x = np.random.default_rng(0).standard_normal((224, 224, 64)).astype(np.float32)
    y = cf.max_pool(x, (2, 2))
    assert y.shape == (112, 112, 64)
    np.testing.assert_array_equal(np.asarray(y), x.reshape(112, 2, 112, 2, 64).max(axis=(1, 3)))
    a = cf.avg_pool(x, (2, 2))
    np.testing.assert_allclose(
        np.asarray(a), x.reshape(112, 2, 112, 2, 64).mean(axis=(1, 3)), rtol=1e-6, atol=1e-6
    )


def test_overlapping_3x3_stride_2_by_hand():
    x = np.arange(25.0, dtype=np.float32).reshape(5, 5)
    y = cf.max_pool(x[..., None], (3, 3), 2)[..., 0]
    np.testing.assert_array_equal(np.asarray(y), [[12, 14], [22, 24]])
    s = cf.sum_pool(x[..., None], (3, 3), 2)[..., 0]
    np.testing.assert_array_equal(np.asarray(s), [[54, 72], [144, 162]])


def test_max_pool_pads_with_minus_inf_not_zero():
    x = -np.ones((1, 3, 3, 1), np.float32) * np.arange(1, 10).reshape(1, 3, 3, 1)
    y = cf.max_pool(x, (2, 2), 2, 1)
    # Zero padding would give 0 in every corner window; -inf padding gives the real element.
    np.testing.assert_array_equal(np.asarray(y)[0, ..., 0], [[-1, -2], [-4, -5]])


# ---------------------------------------------------------------- against the naive reference

CASES = [
    # n, spatial, window, stride, padding, dilation, ceil_mode
    (1, (9,), (3,), (2,), ((1, 1),), (1,), False),
    (1, (8,), (2,), (2,), ((0, 0),), (1,), True),
    (1, (10,), (3,), (1,), ((2, 2),), (2,), False),
    (2, (6, 7), (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), False),
    (2, (7, 7), (3, 3), (2, 2), ((1, 1), (1, 1)), (1, 1), True),
    (2, (7, 6), (3, 2), (2, 1), ((1, 0), (1, 1)), (2, 1), False),
    (2, (5, 5), (2, 3), (3, 2), ((1, 1), (0, 1)), (1, 1), True),
    (3, (4, 5, 4), (2, 2, 2), (2, 2, 2), ((0, 0),) * 3, (1, 1, 1), True),
    (3, (5, 5, 6), (3, 2, 2), (2, 1, 2), ((1, 1), (0, 0), (1, 0)), (1, 2, 1), False),
]
KINDS = ["max", "min", "sum", "avg", "lp"]


def _call(kind, x, window, stride, padding, dilation, ceil_mode, channels_last=True, **kw):
    fn = {
        "max": cf.max_pool,
        "min": cf.min_pool,
        "sum": cf.sum_pool,
        "avg": cf.avg_pool,
        "lp": cf.lp_pool,
    }[kind]
    return fn(
        x,
        window,
        stride,
        padding,
        dilation=dilation,
        ceil_mode=ceil_mode,
        channels_last=channels_last,
        **kw,
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}d{c[1]}w{c[2]}s{c[3]}")
def test_values_and_gradients_match_naive_reference(kind, case):
    n, spatial, window, stride, pads, dilation, ceil_mode = case
    rng = np.random.default_rng(hash((kind, spatial)) % 2**32)
    x_cf = rng.standard_normal((2, 3, *spatial)).astype(np.float32)
    kw = {"p": 3.0} if kind == "lp" else {}
    want, grad_fn = naive_pool(x_cf, kind, window, stride, pads, dilation, ceil_mode, **kw)
    g_cf = rng.standard_normal(want.shape).astype(np.float32)

    def f(x):
        return _call(kind, x, window, stride, pads, dilation, ceil_mode, **kw)

    y, vjp = jax.vjp(f, _cl(x_cf))
    np.testing.assert_allclose(_cf(y), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(_cf(vjp(_cl(g_cf))[0]), grad_fn(g_cf), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "count_include_pad,divisor_override", [(True, None), (False, None), (True, 5), (False, 2)]
)
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_avg_pool_divisors_match_naive_reference(count_include_pad, divisor_override, ceil_mode):
    rng = np.random.default_rng(1)
    x_cf = rng.standard_normal((1, 2, 7, 8)).astype(np.float32)
    kw = {"count_include_pad": count_include_pad, "divisor_override": divisor_override}
    pads = ((1, 1), (1, 1))
    want, grad_fn = naive_pool(x_cf, "avg", (3, 3), (2, 2), pads, None, ceil_mode, **kw)
    y, vjp = jax.vjp(
        lambda x: cf.avg_pool(x, (3, 3), 2, 1, ceil_mode=ceil_mode, channels_last=False, **kw),
        x_cf,
    )
    np.testing.assert_allclose(np.asarray(y), want, rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(want.shape).astype(np.float32)
    np.testing.assert_allclose(np.asarray(vjp(g)[0]), grad_fn(g), rtol=1e-5, atol=1e-6)


def test_same_padding_equals_its_explicit_pairs():
    x = np.random.default_rng(2).standard_normal((2, 7, 6, 3)).astype(np.float32)
    pairs = cf.resolve_padding("SAME", (7, 6), (3, 3), (2, 2))
    for fn in (cf.max_pool, cf.avg_pool, cf.sum_pool):
        np.testing.assert_array_equal(
            np.asarray(fn(x, (3, 3), 2, "SAME")), np.asarray(fn(x, (3, 3), 2, pairs))
        )
    assert cf.max_pool(x, (3, 3), 2, "SAME").shape == (2, 4, 3, 3)
    assert cf.max_pool(x, (3, 3), 2, "VALID").shape == (2, 3, 2, 3)


# ---------------------------------------------------------------- ties, NaN, dilation


def test_tied_maxima_send_gradient_to_first_in_row_major_order():
    # Every element equal: the top-left element of each 2x2 window gets the whole gradient.
    x = jnp.ones((4, 4, 1))
    g = jax.grad(lambda x: cf.max_pool(x, (2, 2)).sum())(x)
    want = np.zeros((4, 4))
    want[::2, ::2] = 1
    np.testing.assert_array_equal(np.asarray(g)[..., 0], want)
    # A tie between positions (0, 1) and (1, 0): row-major order picks (0, 1).
    x = np.zeros((2, 2, 1), np.float32)
    x[0, 1] = x[1, 0] = 5.0
    g = jax.grad(lambda x: cf.max_pool(x, (2, 2)).sum())(jnp.asarray(x))
    np.testing.assert_array_equal(np.asarray(g)[..., 0], [[0, 1], [0, 0]])
    _, idx = cf.max_pool(x, (2, 2), return_indices=True)
    assert int(np.asarray(idx).ravel()[0]) == 1


def test_tied_maxima_overlapping_windows_and_global_max():
    x = jnp.ones((5, 1))
    g = jax.grad(lambda x: cf.max_pool(x, (3,), 1).sum())(x)
    # Windows [0..2], [1..3], [2..4]: first taps 0, 1, 2.
    np.testing.assert_array_equal(np.asarray(g)[:, 0], [1, 1, 1, 0, 0])
    g = jax.grad(lambda x: cf.global_max_pool(x, 2).sum())(jnp.ones((2, 3, 3, 2)))
    want = np.zeros((2, 3, 3, 2))
    want[:, 0, 0, :] = 1
    np.testing.assert_array_equal(np.asarray(g), want)


def test_nan_propagates_through_max_pool():
    x = np.zeros((4, 4, 1), np.float32)
    x[1, 1] = np.nan
    y = np.asarray(cf.max_pool(x, (2, 2)))[..., 0]
    assert np.isnan(y[0, 0]) and not np.isnan(y[1:, :]).any() and not np.isnan(y[0, 1])
    _, idx = cf.max_pool(x, (2, 2), return_indices=True)
    assert int(np.asarray(idx)[0, 0, 0]) == 5


def test_dilated_max_pool_has_a_gradient():
    rng = np.random.default_rng(3)
    x_cf = rng.standard_normal((1, 2, 9, 9)).astype(np.float32)
    want, grad_fn = naive_pool(x_cf, "max", (3, 3), (1, 1), ((2, 2), (2, 2)), (2, 2))
    g = jax.grad(
        lambda x: jnp.sum(cf.max_pool(x, (3, 3), 1, 2, dilation=2, channels_last=False) ** 2)
    )(x_cf)
    np.testing.assert_allclose(np.asarray(g), grad_fn(2 * want), rtol=1e-5, atol=1e-6)


def test_forward_mode_and_second_order_work():
    x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
    t = jax.random.normal(jax.random.key(1), x.shape)
    f = lambda x: cf.max_pool(x, (2, 2), 1, 1)
    y, ty = jax.jvp(f, (x,), (t,))
    _, vjp = jax.vjp(f, x)
    g = jax.random.normal(jax.random.key(2), y.shape)
    # <g, J t> == <J^T g, t>: the forward and reverse rules are the same linear map.
    np.testing.assert_allclose(
        float(jnp.vdot(g, ty)), float(jnp.vdot(vjp(g)[0], t)), rtol=1e-5, atol=1e-5
    )
    # Second order (Hessian-vector product) on a small 1-D pool, to keep compile time low.
    f1 = lambda v: cf.max_pool(v, (2,), 1, 1)
    v = x[0, 0]
    hvp = jax.jvp(jax.grad(lambda v: jnp.sum(f1(v) ** 2)), (v,), (t[0, 0],))[1]
    # sum(max^2) has Hessian 2 * (count of windows each element wins) on the diagonal.
    _, idx = cf.max_pool(v, (2,), 1, 1, return_indices=True)
    wins = np.zeros(v.shape)
    np.add.at(wins, (np.asarray(idx), np.arange(v.shape[1])[None, :]), 1)
    np.testing.assert_allclose(np.asarray(hvp), 2 * wins * np.asarray(t[0, 0]), rtol=1e-5)


# ---------------------------------------------------------------- layouts and transforms

ALL_WINDOWED = [
    lambda x, cl: cf.max_pool(x, (3, 2), (2, 1), 1, dilation=(1, 2), channels_last=cl),
    lambda x, cl: cf.min_pool(x, (2, 2), channels_last=cl),
    lambda x, cl: cf.sum_pool(x, (2, 3), 1, ((0, 1), (1, 1)), channels_last=cl),
    lambda x, cl: cf.avg_pool(x, (3, 3), 2, 1, ceil_mode=True, count_include_pad=False,
                              channels_last=cl),
    lambda x, cl: cf.lp_pool(x, (2, 2), p=2.0, channels_last=cl),
    lambda x, cl: cf.adaptive_avg_pool(x, (3, 2), channels_last=cl),
    lambda x, cl: cf.adaptive_max_pool(x, (4, 3), channels_last=cl),
    lambda x, cl: cf.global_avg_pool(x, 2, channels_last=cl, keepdims=True),
    lambda x, cl: cf.global_max_pool(x, 2, channels_last=cl, keepdims=True),
]  # fmt: skip


@pytest.mark.parametrize("op", range(len(ALL_WINDOWED)))
def test_layouts_batching_jit_vmap_agree(op):
    fn = ALL_WINDOWED[op]
    x = jax.random.normal(jax.random.key(op), (3, 7, 6, 4))
    y = fn(x, True)
    y_cf = fn(jnp.moveaxis(x, -1, 1), False)
    # XLA may sum a window in another order for another layout or batch size. Inputs are
    # N(0, 1), so a window sum of k <= 42 terms has a rounding error of about k * eps * 3
    # ~ 1.5e-5 at worst and ~1e-7 typically, divided by k for a mean: an atol of 1e-6 covers
    # values near zero (an adaptive average of 0.0083 once differed by 8.4e-9).
    tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.asarray(jnp.moveaxis(y_cf, 1, -1)), np.asarray(y), **tol)
    np.testing.assert_allclose(np.asarray(fn(x[1], True)), np.asarray(y[1]), **tol)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda v: fn(v, True))(x)), np.asarray(y), **tol)
    # Gradients: jitted over the batch vs vmapped per example (the rules compose).
    grad = jax.grad(lambda v: jnp.sum(fn(v, True) ** 2))
    g = jax.jit(grad)(x)
    g1 = jax.vmap(grad)(x)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g), rtol=1e-5, atol=1e-6)
    assert float(jnp.abs(g).sum()) > 0


def test_int_window_needs_num_spatial_dims_and_then_agrees():
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 8, 3))
    np.testing.assert_array_equal(
        np.asarray(cf.max_pool(x, 2, num_spatial_dims=3)), np.asarray(cf.max_pool(x, (2, 2, 2)))
    )
    # A rank-4 array is one 3-D volume or a batch of 2-D images; num_spatial_dims decides.
    assert cf.max_pool(x[0], 2, num_spatial_dims=3).shape == (4, 4, 4, 3)
    assert cf.max_pool(x[0], 2, num_spatial_dims=2).shape == (8, 4, 4, 3)


def test_integer_max_pool():
    x = np.arange(-20, 16, dtype=np.int32).reshape(6, 6, 1)
    y = cf.max_pool(x, (2, 2), 2, 1)
    assert y.dtype == jnp.int32
    want, _ = naive_pool(_cf(x[None]), "max", (2, 2), (2, 2), ((1, 1), (1, 1)))
    np.testing.assert_array_equal(np.asarray(y), _cl(want)[0])


# ---------------------------------------------------------------- indices and unpooling


@pytest.mark.parametrize("channels_last", [True, False])
def test_unpool_inverts_max_pool(channels_last):
    shape = (2, 6, 7, 3) if channels_last else (2, 3, 6, 7)
    # Positive values, so that re-pooling the unpooled map (zeros elsewhere) finds them again.
    x = jnp.abs(jax.random.normal(jax.random.key(4), shape)) + 0.1
    y, idx = cf.max_pool(x, (2, 2), return_indices=True, channels_last=channels_last)
    full = cf.max_unpool(y, idx, (2, 2), output_size=(6, 7), channels_last=channels_last)
    assert full.shape == x.shape
    xs = np.asarray(x)
    fs = np.asarray(full)
    kept = fs != 0
    # Every kept value sits where the input had it; exactly one per pooling window.
    np.testing.assert_array_equal(fs[kept], xs[kept])
    assert kept.sum() == y.size
    np.testing.assert_array_equal(
        np.asarray(cf.max_pool(full, (2, 2), channels_last=channels_last)), np.asarray(y)
    )
    # The default output size (out - 1) * S + F = (6, 6) loses the odd 7th column, so some
    # indices fall outside it: an error that asks for output_size, not a silent drop.
    with pytest.raises(ValueError, match=r"indices contains \d+, outside \[0, 36\).*output_size"):
        cf.max_unpool(y, idx, (2, 2), channels_last=channels_last)
    even = x[:, :, :6, :6] if not channels_last else x[:, :6, :6, :]
    y, idx = cf.max_pool(even, (2, 2), return_indices=True, channels_last=channels_last)
    default = cf.max_unpool(y, idx, (2, 2), channels_last=channels_last)
    assert default.shape == even.shape
    np.testing.assert_array_equal(
        np.asarray(cf.max_pool(default, (2, 2), channels_last=channels_last)), np.asarray(y)
    )


def test_unpool_gradient_reads_at_indices():
    x = jax.random.normal(jax.random.key(5), (1, 4, 4, 2))
    y, idx = cf.max_pool(x, (2, 2), return_indices=True)
    g = jax.random.normal(jax.random.key(6), (1, 4, 4, 2))
    _, vjp = jax.vjp(lambda v: cf.max_unpool(v, idx, (2, 2)), y)
    flat = np.asarray(g).transpose(0, 3, 1, 2).reshape(1, 2, 16)
    ids = np.asarray(idx).transpose(0, 3, 1, 2).reshape(1, 2, 4)
    want = np.take_along_axis(flat, ids, -1).reshape(1, 2, 2, 2).transpose(0, 2, 3, 1)
    np.testing.assert_array_equal(np.asarray(vjp(g)[0]), want)


def test_indices_for_padding_dilation_and_3d_match_naive_positions():
    rng = np.random.default_rng(7)
    x_cf = rng.standard_normal((1, 2, 5, 6, 5)).astype(np.float32)
    y, idx = cf.max_pool(
        x_cf, (3, 2, 2), (2, 2, 1), 1, dilation=(1, 2, 1), return_indices=True,
        channels_last=False,
    )  # fmt: skip
    flat = x_cf.reshape(1, 2, -1)
    np.testing.assert_array_equal(
        np.take_along_axis(flat, np.asarray(idx).reshape(1, 2, -1), -1).reshape(y.shape),
        np.asarray(y),
    )


# ---------------------------------------------------------------- adaptive, global, Lp


def naive_adaptive(x_cf, out, kind):
    spatial = x_cf.shape[2:]
    y = np.zeros(x_cf.shape[:2] + tuple(out))
    for pos in itertools.product(*(range(o) for o in out)):
        sl = tuple(
            slice((i * w) // o, -(-((i + 1) * w) // o)) for i, w, o in zip(pos, spatial, out)
        )
        block = x_cf[(slice(None), slice(None)) + sl].reshape(x_cf.shape[:2] + (-1,))
        y[(slice(None), slice(None)) + pos] = block.mean(-1) if kind == "avg" else block.max(-1)
    return y


@pytest.mark.parametrize(
    "spatial,out", [((7,), (3,)), ((6, 9), (4, 5)), ((8, 8), (4, 2)), ((5, 7, 6), (2, 3, 4))]
)
def test_adaptive_pools_match_naive_bins(spatial, out):
    x_cf = np.random.default_rng(8).standard_normal((2, 3, *spatial)).astype(np.float32)
    for kind, fn in (("avg", cf.adaptive_avg_pool), ("max", cf.adaptive_max_pool)):
        y = fn(_cl(x_cf), out)
        np.testing.assert_allclose(_cf(y), naive_adaptive(x_cf, out, kind), rtol=1e-5, atol=1e-6)
    _, idx = cf.adaptive_max_pool(x_cf, out, return_indices=True, channels_last=False)
    flat = x_cf.reshape(2, 3, -1)
    np.testing.assert_array_equal(
        np.take_along_axis(flat, np.asarray(idx).reshape(2, 3, -1), -1).reshape(2, 3, *out),
        naive_adaptive(x_cf, out, "max"),
    )


def test_adaptive_none_keeps_size_and_global_pools():
    x = jax.random.normal(jax.random.key(9), (2, 5, 6, 3))
    assert cf.adaptive_avg_pool(x, (1, None)).shape == (2, 1, 6, 3)
    # Two float32 means of 30 N(0, 1) values, maybe summed in another order: the difference
    # is about 30 * 6e-8 * 3 / 30 ~ 2e-7 absolute, large relative to a mean near zero.
    np.testing.assert_allclose(
        np.asarray(cf.global_avg_pool(x, 2)), np.asarray(x.mean((1, 2))), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(np.asarray(cf.global_max_pool(x, 2)), np.asarray(x.max((1, 2))))
    assert cf.global_avg_pool(x, 2, keepdims=True).shape == (2, 1, 1, 3)
    assert cf.global_max_pool(x[0], 2).shape == (3,)
    assert cf.global_avg_pool(jnp.moveaxis(x, -1, 1), 2, channels_last=False).shape == (2, 3)


def test_lp_pool_special_cases():
    x = jax.random.normal(jax.random.key(10), (1, 4, 4, 2))
    np.testing.assert_allclose(
        np.asarray(cf.lp_pool(x, (2, 2), p=1.0)),
        np.asarray(cf.sum_pool(jnp.abs(x), (2, 2))),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        np.asarray(cf.lp_pool(x, (2, 2), p=60.0)),
        np.asarray(cf.max_pool(jnp.abs(x), (2, 2))),
        rtol=0.05,
    )
    # An all-zero window: output 0 and a finite (zero) gradient instead of inf * 0 = NaN.
    z = jnp.zeros((2, 2, 1)).at[0, 0, 0].set(0.0)
    g = jax.grad(lambda v: cf.lp_pool(v, (2, 2)).sum())(z)
    assert float(cf.lp_pool(z, (2, 2)).sum()) == 0.0
    np.testing.assert_array_equal(np.asarray(g), 0.0)
