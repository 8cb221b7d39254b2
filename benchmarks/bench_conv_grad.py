"""Forward, input gradient and kernel gradient of every conv layer shape, side by side.

Run from the repository root (CPU; PyTorch with 2 threads):

    .venv/bin/python -m benchmarks.bench_conv_grad                 # every layer shape
    .venv/bin/python -m benchmarks.bench_conv_grad --quick         # 2 shapes, 5 rounds
    .venv/bin/python -m benchmarks.bench_conv_grad --out benchmarks/results/conv_grad.md

Layer shapes (batch 128, float32, NHWC; PyTorch NCHW): the textbook CNN of
``configs/default.py`` (``PatternCNN``: 3x3 SAME convs 1->32, 32->32 at 28x28, 32->64,
64->64 at 14x14) and ResNet-20 (``convjax.models.ResNet20``: 3x3 convs with padding 1, 3->16
and 16->16 at 32x32, 16->32 stride 2, 32->32 at 16x16, 32->64 stride 2, 64->64 at 8x8).

Candidates, per shape and per quantity (forward; input gradient alone; kernel gradient alone,
each a jitted ``jax.vjp`` pull-back with the other argument held fixed):
  * ``XLA``: ``lax.conv_general_dilated`` with JAX's own derivatives (what Flax runs);
  * ``convjax lax``: ``cf.conv(impl="lax")``, the default;
  * ``convjax matmul_grad``: ``cf.conv(impl="matmul_grad")``: the kernel gradient as per-tap
    matrix multiplies on the CPU;
  * ``convjax im2col``: ``cf.conv(impl="im2col")``, whose kernel gradient is one matrix
    multiply of the patch matrix (``patches^T @ dy``), as another formulation;
  * ``PyTorch``: ``F.conv2d`` and ``torch.autograd.grad`` w.r.t. the one argument.

All candidates of one quantity are timed in interleaved rounds (one call of each per round,
median over rounds), so load from other processes hits them alike: compare the ratios. The
header records the date, CPU model and vector ISA (avx2 / avx512 flags from /proc/cpuinfo),
versions and the load average at the start and end. Numerics: the kernel gradients of every
JAX candidate and of PyTorch are compared with ``XLA``'s (max |difference| / max |value|).
"""

from __future__ import annotations

import argparse
import os
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `convjax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import convjax.functional as cf
from benchmarks._timing import format_table
from benchmarks.harness import (
    Candidate,
    _torch,
    environment,
    finish_report,
    jax_candidate,
    run_interleaved,
)

# (name, (N, H, W, C_in), C_out, stride, padding): padding as the model passes it.
TEXTBOOK = [
    ("textbook conv1", (128, 28, 28, 1), 32, 1, "SAME"),
    ("textbook conv2", (128, 28, 28, 32), 32, 1, "SAME"),
    ("textbook conv3", (128, 14, 14, 32), 64, 1, "SAME"),
    ("textbook conv4", (128, 14, 14, 64), 64, 1, "SAME"),
]
RESNET20 = [
    ("resnet20 stem", (128, 32, 32, 3), 16, 1, 1),
    ("resnet20 stage1", (128, 32, 32, 16), 16, 1, 1),
    ("resnet20 stage2 down", (128, 32, 32, 16), 32, 2, 1),
    ("resnet20 stage2", (128, 16, 16, 32), 32, 1, 1),
    ("resnet20 stage3 down", (128, 16, 16, 32), 64, 2, 1),
    ("resnet20 stage3", (128, 8, 8, 64), 64, 1, 1),
]
IMPLS = ("lax", "matmul_grad", "im2col")


def _pad_pairs(padding):
    return padding if padding == "SAME" else ((padding, padding), (padding, padding))


def _forward(f):
    return lambda x, k, g: f(x, k)


def _input_grad(f):
    return lambda x, k, g: jax.vjp(lambda x_: f(x_, k), x)[1](g)[0]


def _kernel_grad(f):
    return lambda x, k, g: jax.vjp(lambda k_: f(x, k_), k)[1](g)[0]


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def bench_shape(name, shape, cout, stride, padding, repeats, threads) -> str:
    torch = _torch()
    x = jax.random.normal(jax.random.key(0), shape)
    k = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], cout)) / np.sqrt(9 * shape[-1])
    pads = _pad_pairs(padding)

    def xla(x, k):
        return lax.conv_general_dilated(
            x, k, (stride, stride), pads, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    convs = {"XLA": xla}
    for impl in IMPLS:
        convs[f"convjax {impl}"] = lambda x, k, impl=impl: cf.conv(
            x, k, stride=stride, padding=padding, impl=impl
        )
    y = xla(x, k)
    g = jax.random.normal(jax.random.key(2), y.shape)
    programs = {
        "forward": {n: _forward(f) for n, f in convs.items()},
        "input grad": {n: _input_grad(f) for n, f in convs.items()},
        "kernel grad": {n: _kernel_grad(f) for n, f in convs.items()},
    }
    tx = torch.from_numpy(np.asarray(jnp.moveaxis(x, -1, 1))).contiguous()
    tw = torch.from_numpy(np.asarray(jnp.transpose(k, (3, 2, 0, 1)))).contiguous()
    tg = torch.from_numpy(np.asarray(jnp.moveaxis(g, -1, 1))).contiguous()
    tpad = 1  # every shape here: 3x3 with one pixel of padding (SAME at stride 1)
    F = torch.nn.functional
    txr, twr = tx.clone().requires_grad_(), tw.clone().requires_grad_()

    def t_forward():
        with torch.no_grad():
            return F.conv2d(tx, tw, stride=stride, padding=tpad)

    def t_input_grad():
        return torch.autograd.grad(F.conv2d(txr, tw, stride=stride, padding=tpad), txr, tg)[0]

    def t_kernel_grad():
        return torch.autograd.grad(F.conv2d(tx, twr, stride=stride, padding=tpad), twr, tg)[0]

    torch_calls = {"forward": t_forward, "input grad": t_input_grad, "kernel grad": t_kernel_grad}
    rows, notes = [], []
    flop = 2 * y.shape[0] * y.shape[1] * y.shape[2] * 9 * shape[-1] * cout
    for quantity, fns in programs.items():
        cands = [jax_candidate(n, f, x, k, g) for n, f in fns.items()]
        cands.append(Candidate("PyTorch", torch_calls[quantity]))
        run_interleaved(cands, repeats)
        by = {c.name: c.median for c in cands}
        for c in cands:
            rows.append(
                {
                    "quantity": quantity,
                    "candidate": c.name,
                    "ms": c.median * 1e3,
                    "GFLOP/s": flop / c.median / 1e9,
                    "vs XLA": by["XLA"] / c.median,
                    "vs torch": by["PyTorch"] / c.median,
                }
            )
        if quantity == "kernel grad":
            ref = jax.jit(fns["XLA"])(x, k, g)
            for n, f in fns.items():
                if n != "XLA":
                    notes.append(f"{n}: {_rel(jax.jit(f)(x, k, g), ref):.1e}")
            tdk = t_kernel_grad().numpy().transpose(2, 3, 1, 0)
            notes.append(f"PyTorch: {_rel(tdk, ref):.1e}")
    title = f"\n### {name}: x {shape} -> {cout}, 3x3, stride {stride}, padding {padding!r}\n"
    text = [title, format_table(rows), ""]
    text.append("kernel gradient vs XLA's (max |diff| / max |value|): " + "; ".join(notes))
    out = "\n".join(text)
    print(out, flush=True)
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=11)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 shapes, 5 rounds")
    parser.add_argument("--only", default="", help="comma list of name substrings to run")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    torch = _torch()
    torch.set_num_threads(args.threads)
    shapes = TEXTBOOK + RESNET20
    if args.quick:
        shapes, args.repeats = [TEXTBOOK[1], TEXTBOOK[3]], min(args.repeats, 5)
    if args.only:
        keys = args.only.split(",")
        shapes = [s for s in shapes if any(key in s[0] for key in keys)]
    header = environment("cpu")
    print(header, flush=True)
    report = [f"```\n{header}\n```\n", f"command: `{' '.join(sys.argv)}`\n"]
    for name, shape, cout, stride, padding in shapes:
        report.append(bench_shape(name, shape, cout, stride, padding, args.repeats, args.threads))
    return finish_report(report, args.out)


if __name__ == "__main__":
    main()
