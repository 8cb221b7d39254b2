"""PyTorch parity (torch==2.13.0, CPU, float64) for conv and conv_transpose: 312 configurations.

Seeded random configurations of conv1d/2d/3d (stride, every padding kind and mode, dilation,
groups incl. depthwise, layout, batched or not, flip, bias) and of conv_transpose (stride,
padding, output_padding, dilation, groups, layout, batched, bias). The PyTorch side gets
its padding computed here, independently of convjax.shapes: padding names become explicit
``F.pad`` amounts by their definitions, PyTorch's own ``padding=`` is used for symmetric
zero padding and ``"same"``/``"valid"`` where PyTorch accepts them, and ``flip`` is a
``torch.flip`` of the weight.

Speed: each test jits ONE program over a chunk of configurations, so XLA compiles 13
programs instead of 312 (per-configuration eager calls cost about a compile each).
"""

import dataclasses

import jax
import numpy as np
import pytest
import torch

import convjax.functional as cf
from convjax import interop

F = torch.nn.functional

CONV_CHUNKS, TRANSPOSE_CHUNKS, PER_CHUNK = 10, 3, 24  # 240 conv + 72 transposed = 312
PADDINGS = ("VALID", "SAME", "SAME_LOWER", "FULL", "CAUSAL", "int", "ints", "pairs", "torch")
TORCH_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate"}
TORCH_MODE["circular"] = "circular"


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@dataclasses.dataclass(frozen=True)
class ConvCfg:
    spatial: tuple
    kernel: tuple
    stride: tuple
    dilation: tuple
    groups: int
    cin: int
    cout: int
    padding: object  # what convjax gets
    pads: tuple  # explicit (lo, hi) pairs, computed here from the definitions
    mode: str
    channels_last: bool
    batched: bool
    flip: bool
    bias: bool


def _explicit_pads(kind, value, spatial, kernel, stride, dilation):
    """Padding names by definition (independent of convjax.shapes.resolve_padding)."""
    f_eff = [d * (k - 1) + 1 for k, d in zip(kernel, dilation)]
    if kind in ("SAME", "SAME_LOWER"):
        pairs = []
        for w, f, s in zip(spatial, f_eff, stride):
            total = max((-(-w // s) - 1) * s + f - w, 0)
            small, big = total // 2, total - total // 2
            pairs.append((small, big) if kind == "SAME" else (big, small))
        return tuple(pairs)
    if kind == "VALID":
        return ((0, 0),) * len(spatial)
    if kind == "FULL":
        return tuple((f - 1, f - 1) for f in f_eff)
    if kind == "CAUSAL":
        return tuple((f - 1, 0) for f in f_eff)
    if kind == "int":
        return ((value, value),) * len(spatial)
    if kind in ("ints", "torch"):
        return tuple((v, v) for v in value)
    return tuple(value)  # pairs


def _random_conv_cfg(rng, i) -> ConvCfg:
    while True:
        n = 1 + i % 3
        groups = int(rng.choice([1, 1, 2, 3]))
        depthwise = rng.random() < 0.15
        cin = groups * int(rng.integers(1, 3))
        if depthwise:
            groups = cin
        cout = groups * int(rng.integers(1, 3))
        kernel = tuple(int(v) for v in rng.integers(1, 4, n))
        stride = tuple(int(v) for v in rng.integers(1, 4, n))
        dilation = tuple(int(v) for v in rng.integers(1, 3, n))
        spatial = tuple(int(v) for v in rng.integers(3, 9 if n < 3 else 6, n))
        kind = PADDINGS[(i // 3) % len(PADDINGS)]
        value = {
            "int": int(rng.integers(0, 3)),
            "ints": tuple(int(v) for v in rng.integers(0, 3, n)),
            "torch": tuple(int(v) for v in rng.integers(0, 3, n)),
            "pairs": tuple((int(a), int(b)) for a, b in rng.integers(0, 3, (n, 2))),
        }.get(kind)
        pads = _explicit_pads(kind, value, spatial, kernel, stride, dilation)
        mode = ["zeros", "reflect", "replicate", "circular"][int(rng.integers(4))]
        if kind == "torch":
            mode = "zeros"  # exercised through PyTorch's own padding= argument
        if mode == "reflect" and any(max(p) > w - 1 for p, w in zip(pads, spatial)):
            mode = "replicate"
        if mode == "circular" and any(max(p) > w for p, w in zip(pads, spatial)):
            mode = "zeros"  # PyTorch refuses to wrap more than once (tested in test_padding)
        fits = all(
            w + lo + hi >= d * (k - 1) + 1
            for w, (lo, hi), k, d in zip(spatial, pads, kernel, dilation)
        )
        if fits:
            break
    padding = {"int": value, "ints": value, "torch": value, "pairs": value}.get(kind, kind)
    if kind in PADDINGS[:5] and rng.random() < 0.3:
        padding = kind.lower()  # names are case-insensitive
    return ConvCfg(
        spatial,
        kernel,
        stride,
        dilation,
        groups,
        cin,
        cout,
        padding,
        pads,
        mode,
        bool(rng.integers(2)),
        bool(rng.random() < 0.8),
        bool(rng.integers(2)),
        bool(rng.integers(2)),
    )


def _torch_conv(cfg: ConvCfg, x, w, b):
    """Reference: x (N, C, *spatial) float64, w (out, in/groups, *k) as PyTorch stores it."""
    n = len(cfg.spatial)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n]
    if cfg.flip:
        w = torch.flip(w, dims=tuple(range(2, n + 2)))
    kw = dict(stride=cfg.stride, dilation=cfg.dilation, groups=cfg.groups)
    if isinstance(cfg.padding, tuple) and not isinstance(cfg.padding[0], tuple):
        if cfg.mode == "zeros":  # PyTorch's own symmetric padding
            return conv(x, w, b, padding=cfg.padding, **kw)
    if cfg.padding == "valid" or (cfg.padding == "same" and set(cfg.stride) == {1}):
        if cfg.mode == "zeros":
            return conv(x, w, b, padding=cfg.padding, **kw)
    flat = [p for pair in reversed(cfg.pads) for p in pair]  # F.pad: last dim first
    if any(flat):
        if cfg.mode == "zeros":
            x = F.pad(x, flat)
        else:
            x = F.pad(x, flat, mode=TORCH_MODE[cfg.mode])
    return conv(x, w, b, padding=0, **kw)


def _conv_chunk(chunk):
    rng = np.random.default_rng(1000 + chunk)
    cases = []
    for j in range(PER_CHUNK):
        cfg = _random_conv_cfg(rng, chunk * PER_CHUNK + j)
        x = torch.randn((2, cfg.cin, *cfg.spatial), dtype=torch.float64)
        w = torch.randn((cfg.cout, cfg.cin // cfg.groups, *cfg.kernel), dtype=torch.float64)
        b = torch.randn(cfg.cout, dtype=torch.float64) if cfg.bias else None
        want = _torch_conv(cfg, x, w, b).numpy()
        xin = x.numpy()
        if cfg.channels_last:
            xin, want = np.moveaxis(xin, 1, -1), np.moveaxis(want, 1, -1)
        if not cfg.batched:
            xin, want = xin[0], want[0]
        kernel = interop.conv_weight_from_torch(w)
        assert kernel.shape == (*cfg.kernel, cfg.cin // cfg.groups, cfg.cout)
        cases.append((cfg, xin, kernel, None if b is None else b.numpy(), want))
    return cases


@pytest.mark.parametrize("chunk", range(CONV_CHUNKS))
def test_conv_matches_torch(chunk, x64):
    torch.manual_seed(chunk)
    cases = _conv_chunk(chunk)

    @jax.jit
    def run(arrays):
        return [
            cf.conv(
                x,
                k,
                b,
                stride=cfg.stride,
                padding=cfg.padding,
                dilation=cfg.dilation,
                groups=cfg.groups,
                padding_mode=cfg.mode,
                channels_last=cfg.channels_last,
                flip=cfg.flip,
            )
            for (cfg, *_), (x, k, b) in zip(cases, arrays)
        ]

    outs = run([(x, k, b) for _, x, k, b, _ in cases])
    for (cfg, _, _, _, want), got in zip(cases, outs):
        assert got.shape == want.shape, cfg
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-9, err_msg=str(cfg))


def test_conv_configurations_cover_every_option():
    cfgs = [c for chunk in range(CONV_CHUNKS) for c, *_ in _conv_chunk_cfgs(chunk)]
    assert len(cfgs) == CONV_CHUNKS * PER_CHUNK
    assert {len(c.spatial) for c in cfgs} == {1, 2, 3}
    assert {c.mode for c in cfgs} == {"zeros", "reflect", "replicate", "circular"}
    kinds = {c.padding if isinstance(c.padding, str) else type(c.padding).__name__ for c in cfgs}
    assert {"VALID", "SAME", "SAME_LOWER", "FULL", "CAUSAL", "same", "int", "tuple"} <= kinds
    assert any(max(c.stride) > 1 and max(c.dilation) > 1 for c in cfgs)
    assert any(c.groups == c.cin > 1 and c.cout > c.cin for c in cfgs)  # depthwise multiplier
    for attr in ("channels_last", "batched", "flip", "bias"):
        assert {getattr(c, attr) for c in cfgs} == {True, False}


def _conv_chunk_cfgs(chunk):
    rng = np.random.default_rng(1000 + chunk)
    return [(_random_conv_cfg(rng, chunk * PER_CHUNK + j),) for j in range(PER_CHUNK)]


# --------------------------------------------------------------------------- transposed


@dataclasses.dataclass(frozen=True)
class TransposeCfg:
    spatial: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    output_padding: tuple
    dilation: tuple
    groups: int
    cin: int
    cout: int
    channels_last: bool
    batched: bool
    bias: bool


def _random_transpose_cfg(rng, i) -> TransposeCfg:
    n = 1 + i % 3
    groups = int(rng.choice([1, 2, 3]))
    kernel = tuple(int(v) for v in rng.integers(1, 4, n))
    stride = tuple(int(v) for v in rng.integers(1, 4, n))
    dilation = tuple(int(v) for v in rng.integers(1, 3, n))
    padding = tuple(int(rng.integers(0, d * (k - 1) // 2 + 1)) for k, d in zip(kernel, dilation))
    output_padding = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(stride, dilation))
    return TransposeCfg(
        tuple(int(v) for v in rng.integers(2, 6 if n < 3 else 4, n)),
        kernel,
        stride,
        padding,
        output_padding,
        dilation,
        groups,
        groups * int(rng.integers(1, 3)),
        groups * int(rng.integers(1, 3)),
        bool(rng.integers(2)),
        bool(rng.random() < 0.8),
        bool(rng.integers(2)),
    )


@pytest.mark.parametrize("chunk", range(TRANSPOSE_CHUNKS))
def test_conv_transpose_matches_torch(chunk, x64):
    torch.manual_seed(100 + chunk)
    rng = np.random.default_rng(2000 + chunk)
    cases = []
    for j in range(PER_CHUNK):
        cfg = _random_transpose_cfg(rng, j)
        n = len(cfg.spatial)
        x = torch.randn((2, cfg.cin, *cfg.spatial), dtype=torch.float64)
        w = torch.randn((cfg.cin, cfg.cout // cfg.groups, *cfg.kernel), dtype=torch.float64)
        b = torch.randn(cfg.cout, dtype=torch.float64) if cfg.bias else None
        op = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[n]
        want = op(
            x,
            w,
            b,
            stride=cfg.stride,
            padding=cfg.padding,
            output_padding=cfg.output_padding,
            groups=cfg.groups,
            dilation=cfg.dilation,
        ).numpy()
        xin = x.numpy()
        if cfg.channels_last:
            xin, want = np.moveaxis(xin, 1, -1), np.moveaxis(want, 1, -1)
        if not cfg.batched:
            xin, want = xin[0], want[0]
        kernel = interop.conv_transpose_weight_from_torch(w, cfg.groups)
        cases.append((cfg, xin, kernel, None if b is None else b.numpy(), want))

    @jax.jit
    def run(arrays):
        return [
            cf.conv_transpose(
                x,
                k,
                b,
                stride=cfg.stride,
                padding=cfg.padding,
                output_padding=cfg.output_padding,
                dilation=cfg.dilation,
                groups=cfg.groups,
                channels_last=cfg.channels_last,
            )
            for (cfg, *_), (x, k, b) in zip(cases, arrays)
        ]

    outs = run([(x, k, b) for _, x, k, b, _ in cases])
    for (cfg, _, _, _, want), got in zip(cases, outs):
        assert got.shape == want.shape, cfg
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-9, atol=1e-9, err_msg=str(cfg))
