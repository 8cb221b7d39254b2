"""PyTorch parity (torch==2.13.0, CPU) for the pooling family: outputs, indices, gradients.

Random configurations (seeded, so every run checks the same ones) cover window, stride,
padding, dilation, ceil_mode, count_include_pad, divisor_override, layout, batched or not,
and 1/2/3 spatial dimensions: 300 for max/avg pooling, plus adaptive and Lp pooling.

To keep the suite fast, each test jits ONE program that runs a chunk of configurations
(forward, indices and VJP of each), so XLA compiles a few programs instead of hundreds.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import convjax.functional as cf

F = torch.nn.functional

CHUNKS = 12
PER_CHUNK = 25  # 12 x 25 = 300 max/avg configurations


@dataclasses.dataclass(frozen=True)
class Cfg:
    kind: str  # "max" or "avg"
    spatial: tuple
    window: tuple
    stride: tuple | None
    padding: tuple
    dilation: tuple
    ceil_mode: bool
    count_include_pad: bool
    divisor_override: int | None
    channels_last: bool
    batched: bool
    channels: int = 2


def _random_cfg(rng) -> Cfg:
    n = int(rng.integers(1, 4))
    kind = "max" if rng.random() < 0.6 else "avg"
    window = tuple(int(rng.integers(1, 5 if n == 1 else 4)) for _ in range(n))
    stride = None if rng.random() < 0.3 else tuple(int(rng.integers(1, 4)) for _ in range(n))
    dilation = tuple(int(rng.integers(1, 3)) for _ in range(n)) if kind == "max" else (1,) * n
    f_eff = [d * (f - 1) + 1 for f, d in zip(window, dilation)]
    # PyTorch's 2-D/3-D kernels allow padding up to half the UNdilated window (convjax, like
    # torch's 1-D max pool, allows half the dilated one); stay inside what torch accepts.
    padding = tuple(int(rng.integers(0, f // 2 + 1)) for f in window)
    # torch's avg_pool needs the unpadded input to hold the window; max_pool only the padded.
    spatial = tuple(
        (fe if kind == "avg" else max(fe - 2 * p, 1)) + int(rng.integers(0, 5))
        for fe, p in zip(f_eff, padding)
    )
    # torch's avg_pool1d has no divisor_override.
    divisor = int(rng.integers(1, 6)) if kind == "avg" and n > 1 and rng.random() < 0.3 else None
    return Cfg(
        kind=kind,
        spatial=spatial,
        window=window,
        stride=stride,
        padding=padding,
        dilation=dilation,
        ceil_mode=bool(rng.random() < 0.5),
        count_include_pad=bool(rng.random() < 0.5),
        divisor_override=divisor,
        channels_last=bool(rng.random() < 0.5),
        batched=bool(rng.random() < 0.7),
    )


def _all_taps_in_padding(cfg: Cfg) -> bool:
    """A dilated window that steps over the whole input (convjax rejects it; torch gives -inf)."""
    for w, f, s, p, d in zip(
        cfg.spatial, cfg.window, cfg.stride or cfg.window, cfg.padding, cfg.dilation
    ):
        starts = range(-p, w + p - d * (f - 1), s)
        if any(all(not 0 <= st + k * d < w for k in range(f)) for st in starts):
            return True
    return False


def _jit_quick(fn, *args):
    """Compile ``fn`` for ``args`` with LLVM's optimisation level 0 and run it.

    XLA's own graph passes (fusion and so on) still run; only the backend's code
    optimisation is skipped, which cut this suite's compile time by about 40% while the
    values compared are the same IEEE operations.
    """
    compiled = (
        jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})
    )
    return compiled(*args)


def _configs():
    rng = np.random.default_rng(20261122)
    cfgs = []
    while len(cfgs) < CHUNKS * PER_CHUNK:
        cfg = _random_cfg(rng)
        if not _all_taps_in_padding(cfg):
            cfgs.append(cfg)
    return cfgs


CONFIGS = _configs()


def _torch_pool(cfg: Cfg, x_cf: np.ndarray, g_cf: np.ndarray):
    """Run torch on channels-first data; return output, indices (max) and input gradient."""
    n = len(cfg.spatial)
    xt = torch.tensor(x_cf, requires_grad=True)
    stride = cfg.stride if cfg.stride is not None else cfg.window
    if cfg.kind == "max":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        y, idx = fn(
            xt, cfg.window, stride, cfg.padding, cfg.dilation, ceil_mode=cfg.ceil_mode,
            return_indices=True,
        )  # fmt: skip
    else:
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
        kw = {} if n == 1 else {"divisor_override": cfg.divisor_override}
        y = fn(
            xt, cfg.window, stride, cfg.padding, ceil_mode=cfg.ceil_mode,
            count_include_pad=cfg.count_include_pad, **kw,
        )  # fmt: skip
        idx = None
    y.backward(torch.tensor(g_cf))
    return (
        y.detach().numpy(),
        None if idx is None else idx.numpy(),
        xt.grad.numpy(),
    )


def _ours(cfg: Cfg, x):
    common = dict(ceil_mode=cfg.ceil_mode, channels_last=cfg.channels_last)
    if cfg.kind == "max":
        return cf.max_pool(
            x, cfg.window, cfg.stride, cfg.padding, dilation=cfg.dilation, return_indices=True,
            **common,
        )  # fmt: skip
    y = cf.avg_pool(
        x, cfg.window, cfg.stride, cfg.padding, count_include_pad=cfg.count_include_pad,
        divisor_override=cfg.divisor_override, **common,
    )  # fmt: skip
    return y, None


def _to_layout(a_cf, cfg: Cfg):
    """Channels-first batch -> the configuration's layout (and unbatched if asked)."""
    a = np.moveaxis(a_cf, 1, -1) if cfg.channels_last else a_cf
    return a if cfg.batched else a[0]


def _from_layout(a, cfg: Cfg):
    a = np.asarray(a)
    if not cfg.batched:
        a = a[None]
    return np.moveaxis(a, -1, 1) if cfg.channels_last else a


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_max_and_avg_pool_match_torch(chunk):
    cfgs = CONFIGS[chunk * PER_CHUNK : (chunk + 1) * PER_CHUNK]
    rng = np.random.default_rng(chunk)
    xs_cf, gs_cf, want = [], [], []
    for cfg in cfgs:
        x_cf = rng.standard_normal((2, cfg.channels, *cfg.spatial)).astype(np.float32)
        if not cfg.batched:
            x_cf = x_cf[:1]
        # torch gives the output shape; the cotangent is random.
        with torch.no_grad():
            shape = _torch_shape(cfg, torch.tensor(x_cf))
        g_cf = rng.standard_normal(shape).astype(np.float32)
        xs_cf.append(x_cf)
        gs_cf.append(g_cf)
        want.append(_torch_pool(cfg, x_cf, g_cf))

    def run(xs, gs):
        outs = []
        for cfg, x, g in zip(cfgs, xs, gs):
            # The indices ride along as auxiliary output: not differentiated.
            y, pull, idx = jax.vjp(lambda v, cfg=cfg: _ours(cfg, v), x, has_aux=True)
            outs.append((y, idx, pull(g)[0]))
        return outs

    xs = [jnp.asarray(_to_layout(x, c)) for x, c in zip(xs_cf, cfgs)]
    gs = [jnp.asarray(_to_layout(g, c)) for g, c in zip(gs_cf, cfgs)]
    got = _jit_quick(run, xs, gs)
    for cfg, (y, idx, dx), (y_t, idx_t, dx_t) in zip(cfgs, got, want):
        msg = str(cfg)
        np.testing.assert_allclose(_from_layout(y, cfg), y_t, rtol=1e-5, atol=1e-6, err_msg=msg)
        np.testing.assert_allclose(_from_layout(dx, cfg), dx_t, rtol=1e-5, atol=1e-6, err_msg=msg)
        if idx_t is not None:
            np.testing.assert_array_equal(_from_layout(idx, cfg), idx_t, err_msg=msg)


def _torch_shape(cfg: Cfg, xt):
    n = len(cfg.spatial)
    stride = cfg.stride if cfg.stride is not None else cfg.window
    if cfg.kind == "max":
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
        return tuple(fn(xt, cfg.window, stride, cfg.padding, cfg.dilation, cfg.ceil_mode).shape)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    return tuple(fn(xt, cfg.window, stride, cfg.padding, cfg.ceil_mode).shape)


def test_configurations_cover_every_axis_of_the_grid():
    assert len(CONFIGS) >= 300
    seen = {
        "n": {len(c.spatial) for c in CONFIGS},
        "kind": {c.kind for c in CONFIGS},
        "ceil": {c.ceil_mode for c in CONFIGS},
        "layout": {c.channels_last for c in CONFIGS},
        "batched": {c.batched for c in CONFIGS},
        "cip": {c.count_include_pad for c in CONFIGS if c.kind == "avg"},
    }
    assert seen == {
        "n": {1, 2, 3},
        "kind": {"max", "avg"},
        "ceil": {False, True},
        "layout": {False, True},
        "batched": {False, True},
        "cip": {False, True},
    }
    assert any(c.divisor_override for c in CONFIGS)
    assert any(max(c.dilation) > 1 for c in CONFIGS)
    assert any(max(c.padding) > 0 for c in CONFIGS)
    assert any(c.stride is not None and c.stride != c.window for c in CONFIGS)
    # Some ceil_mode configs really round up (otherwise ceil_mode would be untested).
    ups = 0
    for c in CONFIGS:
        s = c.stride or c.window
        for w, f, st, p, d in zip(c.spatial, c.window, s, c.padding, c.dilation):
            ups += c.ceil_mode and (w + 2 * p - d * (f - 1) - 1) % st != 0
    assert ups > 20


# ---------------------------------------------------------------- adaptive pooling


def _adaptive_cases():
    rng = np.random.default_rng(7)
    cases = []
    for i in range(24):
        n = 1 + i % 3
        spatial = tuple(int(rng.integers(1, 10)) for _ in range(n))
        out = tuple(int(rng.integers(1, w + 1)) for w in spatial)
        cases.append((spatial, out, bool(rng.random() < 0.5)))
    return cases


ADAPTIVE = _adaptive_cases()


@pytest.mark.parametrize("kind", ["avg", "max"])
def test_adaptive_pools_match_torch(kind):
    rng = np.random.default_rng(11)
    xs, gs, want = [], [], []
    for spatial, out, _ in ADAPTIVE:
        n = len(spatial)
        x_cf = rng.standard_normal((2, 3, *spatial)).astype(np.float32)
        g_cf = rng.standard_normal((2, 3, *out)).astype(np.float32)
        xt = torch.tensor(x_cf, requires_grad=True)
        if kind == "avg":
            fn = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
            y, idx = fn[n](xt, out), None
        else:
            fn = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}
            y, idx = fn[n](xt, out, return_indices=True)
        y.backward(torch.tensor(g_cf))
        want.append((y.detach().numpy(), None if idx is None else idx.numpy(), xt.grad.numpy()))
        xs.append(x_cf)
        gs.append(g_cf)

    def run(xs, gs):
        res = []
        for (_, out, cl), x, g in zip(ADAPTIVE, xs, gs):
            if cl:
                x, g = jnp.moveaxis(x, 1, -1), jnp.moveaxis(g, 1, -1)
            if kind == "avg":
                f = lambda v, out=out, cl=cl: cf.adaptive_avg_pool(v, out, channels_last=cl)
                idx = None
            else:
                f = lambda v, out=out, cl=cl: cf.adaptive_max_pool(v, out, channels_last=cl)
                _, idx = cf.adaptive_max_pool(x, out, return_indices=True, channels_last=cl)
            y, pull = jax.vjp(f, x)
            dx = pull(g)[0]
            if cl:
                y, dx = jnp.moveaxis(y, -1, 1), jnp.moveaxis(dx, -1, 1)
                idx = None if idx is None else jnp.moveaxis(idx, -1, 1)
            res.append((y, idx, dx))
        return res

    got = _jit_quick(run, xs, gs)
    for case, (y, idx, dx), (y_t, idx_t, dx_t) in zip(ADAPTIVE, got, want):
        np.testing.assert_allclose(np.asarray(y), y_t, rtol=1e-5, atol=1e-6, err_msg=str(case))
        np.testing.assert_allclose(np.asarray(dx), dx_t, rtol=1e-5, atol=1e-6, err_msg=str(case))
        if idx_t is not None:
            np.testing.assert_array_equal(np.asarray(idx), idx_t, err_msg=str(case))


# ---------------------------------------------------------------- Lp pooling


def _lp_cases():
    rng = np.random.default_rng(13)
    cases = []
    for i in range(20):
        n = 1 + i % 2  # torch has lp_pool1d and lp_pool2d
        window = tuple(int(rng.integers(1, 4)) for _ in range(n))
        stride = tuple(int(rng.integers(1, 4)) for _ in range(n))
        spatial = tuple(f + int(rng.integers(0, 5)) for f in window)
        p = [1.0, 2.0, 3.0, 1.5, 4.0][i % 5]
        # Negative inputs only for even p, where torch's x**p equals our |x|**p.
        signed = p in (2.0, 4.0)
        cases.append((spatial, window, stride, p, signed))
    return cases


LP = _lp_cases()


def test_lp_pool_matches_torch():
    rng = np.random.default_rng(17)
    xs, gs, want = [], [], []
    for spatial, window, stride, p, signed in LP:
        n = len(spatial)
        x_cf = rng.standard_normal((2, 3, *spatial)).astype(np.float32)
        if not signed:
            x_cf = np.abs(x_cf) + 0.05
        xt = torch.tensor(x_cf, requires_grad=True)
        fn = {1: F.lp_pool1d, 2: F.lp_pool2d}[n]
        y = fn(xt, p, window if n > 1 else window[0], stride if n > 1 else stride[0])
        g_cf = rng.standard_normal(tuple(y.shape)).astype(np.float32)
        y.backward(torch.tensor(g_cf))
        want.append((y.detach().numpy(), xt.grad.numpy()))
        xs.append(x_cf)
        gs.append(g_cf)

    def run(xs, gs):
        res = []
        for (_, window, stride, p, _), x, g in zip(LP, xs, gs):
            f = lambda v, w=window, s=stride, p=p: cf.lp_pool(v, w, s, p=p, channels_last=False)
            y, pull = jax.vjp(f, x)
            res.append((y, pull(g)[0]))
        return res

    got = _jit_quick(run, xs, gs)
    for case, (y, dx), (y_t, dx_t) in zip(LP, got, want):
        np.testing.assert_allclose(np.asarray(y), y_t, rtol=2e-5, atol=1e-6, err_msg=str(case))
        np.testing.assert_allclose(np.asarray(dx), dx_t, rtol=1e-4, atol=1e-5, err_msg=str(case))
