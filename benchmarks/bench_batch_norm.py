"""Batch norm's derivative on the CPU: the closed form against the op-by-op formula, side by side.

Run from the repository root (CPU; PyTorch with 2 threads):

    .venv/bin/python -m benchmarks.bench_batch_norm                # layers and train steps
    .venv/bin/python -m benchmarks.bench_batch_norm --quick        # 2 layers, 5 rounds
    .venv/bin/python -m benchmarks.bench_batch_norm --out benchmarks/results/batch_norm.md

Layers: training-mode batch norm followed by ReLU, forward and backward (the gradient of
``sum(relu(bn(x)) * w)`` w.r.t. ``x``, ``scale`` and ``bias``), at every batch-norm shape of
the default network (``configs/default.py``: ``(128, 28, 28, 32)``, ``(128, 14, 14, 64)``,
``(128, 256)``, and the 64-image halves each device sees when the batch is split over two)
and of ResNet-20. Candidates:
  * ``op-by-op``: the formula ``(x - mean) / sqrt(var + eps) * scale + bias`` with the
    batch's statistics, differentiated by JAX op by op (what ``cf.batch_norm`` ran before it
    had a closed-form derivative, and what Flax's ``BatchNorm`` runs);
  * ``convjax``: ``cf.batch_norm`` (``jax.custom_jvp`` with the closed-form tangent);
  * ``PyTorch``: ``F.batch_norm`` + ``F.relu`` on NCHW, ``torch.autograd.grad``.

Train steps: the default network (``PatternCNN``, batch norm after every conv and the hidden
FC layer, batch 128, SGD momentum) on one device and with the batch split over every device,
once with ``cf.batch_norm`` and once with the op-by-op formula swapped in for its training
path while the step is traced (the only difference between the two programs).

Each table's candidates are timed in interleaved rounds (median over rounds), so load from
other processes hits them alike: compare the ratios. Numerics: each candidate's input
gradient against the op-by-op one (max |difference| / max |value|).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `convjax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convjax import xla_env

# One XLA CPU device per core, for the "batch split" train-step row (as experiments/*.py do).
xla_env.use_cpu_cores()

import jax
import jax.numpy as jnp
import numpy as np

import convjax.functional as cf
from benchmarks._timing import format_table
from benchmarks.harness import (
    Candidate,
    _split_over_devices,
    _torch,
    environment,
    finish_report,
    jax_candidate,
    run_interleaved,
)
from convjax.functional import normalization

LAYERS = [
    ("default conv1-2 (28x28x32)", (128, 28, 28, 32)),
    ("same, half batch (split)", (64, 28, 28, 32)),
    ("default conv3-4 (14x14x64)", (128, 14, 14, 64)),
    ("same, half batch (split)", (64, 14, 14, 64)),
    ("default fc (256)", (128, 256)),
    ("resnet20 stage 1 (32x32x16)", (128, 32, 32, 16)),
    ("resnet20 stage 2 (16x16x32)", (128, 16, 16, 32)),
    ("resnet20 stage 3 (8x8x64)", (128, 8, 8, 64)),
]


def _op_by_op(x, scale, bias, axis, epsilon):
    """``(y, mu, var)`` of training-mode batch norm, written op by op."""
    axes = tuple(a for a in range(x.ndim) if a != axis)
    mu = jnp.mean(x, axis=axes)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    var = jnp.mean(jnp.square(x - mu.reshape(shape)), axis=axes)
    inv = jax.lax.rsqrt(var + epsilon)
    y = (x - mu.reshape(shape)) * (inv * scale).reshape(shape) + bias.reshape(shape)
    return y, mu, var


@contextlib.contextmanager
def op_by_op_batch_norm():
    """While active, ``cf.batch_norm``'s training path differentiates the formula op by op.
    Only tracing happens inside: a program compiled here keeps that derivative."""
    saved = normalization._normalize_with_batch_stats
    normalization._normalize_with_batch_stats = _op_by_op
    try:
        yield
    finally:
        normalization._normalize_with_batch_stats = saved


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def bench_layer(name, shape, repeats) -> str:
    torch = _torch()
    c = shape[-1]
    x = jax.random.normal(jax.random.key(0), shape) * 2 + 1
    w = jax.random.normal(jax.random.key(1), shape)
    scale, bias = jnp.linspace(0.5, 1.5, c), jnp.full((c,), 0.1)
    zeros, ones = jnp.zeros(c), jnp.ones(c)
    axis = len(shape) - 1

    def convjax_bn(x, s, b):
        return cf.batch_norm(x, s, b, zeros, ones, training=True)[0]

    def op_by_op(x, s, b):
        return _op_by_op(x, s, b, axis, 1e-5)[0]

    def grads(bn):
        loss = lambda x, s, b: jnp.sum(jax.nn.relu(bn(x, s, b)) * w)  # noqa: E731
        return jax.grad(loss, argnums=(0, 1, 2))

    fns = {"op-by-op (JAX autodiff)": grads(op_by_op), "convjax batch_norm": grads(convjax_bn)}
    cands = [jax_candidate(n, f, x, scale, bias) for n, f in fns.items()]
    to_nchw = (lambda a: np.moveaxis(np.asarray(a), -1, 1)) if len(shape) > 2 else np.asarray
    tx = torch.from_numpy(to_nchw(x).copy()).requires_grad_()
    ts = torch.from_numpy(np.asarray(scale)).requires_grad_()
    tb = torch.from_numpy(np.asarray(bias)).requires_grad_()
    tw = torch.from_numpy(to_nchw(w).copy())
    F = torch.nn.functional

    def t_grads():
        y = F.relu(F.batch_norm(tx, None, None, ts, tb, training=True, eps=1e-5))
        return torch.autograd.grad((y * tw).sum(), (tx, ts, tb))

    cands.append(Candidate("PyTorch", t_grads))
    run_interleaved(cands, repeats)
    base = cands[0].median
    torch_s = cands[-1].median
    rows = [
        {
            "candidate": cand.name,
            "ms": cand.median * 1e3,
            "vs op-by-op": base / cand.median,
            "vs torch": torch_s / cand.median,
        }
        for cand in cands
    ]
    ref = jax.jit(fns["op-by-op (JAX autodiff)"])(x, scale, bias)[0]
    ours = jax.jit(fns["convjax batch_norm"])(x, scale, bias)[0]
    dx_torch = t_grads()[0].numpy()
    dx_torch = np.moveaxis(dx_torch, 1, -1) if len(shape) > 2 else dx_torch
    note = (
        f"input gradient vs op-by-op (max |diff| / max |value|): convjax {_rel(ours, ref):.1e}, "
        f"PyTorch {_rel(dx_torch, ref):.1e}"
    )
    out = "\n".join(
        [
            f"\n### {name}: {shape}, batch norm + ReLU, forward and backward\n",
            format_table(rows),
            "",
            note,
        ]
    )
    print(out, flush=True)
    return out


def _default_network_step():
    """``(step, params, rest, velocity, x, y)``: one SGD-momentum step of the default network."""
    from flax import nnx

    from benchmarks import models_jax as mj
    from convjax.models import PatternCNN

    model = PatternCNN(rngs=nnx.Rngs(0), batch_norm=True, dropout=0.0)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    vel = jax.tree.map(jnp.zeros_like, params)
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (128, 28, 28, 1))
    y = jax.random.randint(ky, (128,), 0, 10)
    return mj.make_nnx_train_step(graphdef), params, rest, vel, x, y


def bench_train_step(repeats) -> str:
    step, params, rest, vel, x, y = _default_network_step()
    placements = {"one device": (params, rest, vel, x, y)}
    split = _split_over_devices(128)
    if split is not None:
        ndev, rep, shard = split
        placements[f"batch split over {ndev} devices"] = (
            rep(params),
            rep(rest),
            rep(vel),
            shard(x),
            shard(y),
        )
    cands, notes = [], []

    def fresh(*a):  # a new function object per program: JAX caches traces by function
        return step(*a)

    for where, args in placements.items():
        with op_by_op_batch_norm():
            ref = jax_candidate(f"{where}, op-by-op batch norm", lambda *a: fresh(*a), *args)
        ours = jax_candidate(f"{where}, convjax batch_norm", lambda *a: fresh(*a), *args)
        cands += [ref, ours]
        losses = [float(jax.jit(lambda *a: fresh(*a))(*args)[3])]
        with op_by_op_batch_norm():
            losses.append(float(jax.jit(lambda *a: fresh(*a))(*args)[3]))
        notes.append(f"{where}: |loss difference| = {abs(losses[0] - losses[1]):.1e}")
    run_interleaved(cands, repeats)
    rows = [
        {
            "candidate": c.name,
            "step ms": c.median * 1e3,
            "images/s": 128 / c.median,
            "vs op-by-op": cands[2 * (i // 2)].median / c.median,
        }
        for i, c in enumerate(cands)
    ]
    out = "\n".join(
        [
            "\n### Train step: default network (PatternCNN with batch norm, batch 128)\n",
            format_table(rows),
            "",
            "; ".join(notes),
        ]
    )
    print(out, flush=True)
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 layers, 5 rounds")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    _torch().set_num_threads(args.threads)
    layers = LAYERS
    if args.quick:
        layers, args.repeats = [LAYERS[0], LAYERS[4]], min(args.repeats, 5)
    header = environment("cpu")
    print(header, flush=True)
    report = [f"```\n{header}\n```\n", f"command: `{' '.join(sys.argv)}`\n"]
    for name, shape in layers:
        report.append(bench_layer(name, shape, args.repeats))
    report.append(bench_train_step(args.repeats))
    return finish_report(report, args.out)


if __name__ == "__main__":
    main()
