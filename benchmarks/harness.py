"""One benchmark harness: convolutions, pooling and train steps in convjax, Flax and PyTorch.

Run from the repository root (CPU; PyTorch eager with 2 threads, as issue 8 fixes):

    .venv/bin/python -m benchmarks.harness                      # everything, float32
    .venv/bin/python -m benchmarks.harness --sections train     # train steps only
    .venv/bin/python -m benchmarks.harness --quick              # few repeats, few shapes
    PYTHONPATH=. python3 benchmarks/harness.py --dtype bfloat16 # on a GPU machine

What it does, and why:
  * every framework runs in this one process, and each table's candidates are timed in
    interleaved rounds (one call of each, round after round, each round starting one
    candidate later), so load from other processes on a shared machine hits all of them
    alike; the ratios within one table are what to
    compare across machines and runs;
  * JAX functions are compiled with ``jit(...).lower(...).compile()`` and that time is
    reported apart ("compile s"); the first call of every candidate (PyTorch included) is
    reported apart as "first call s"; neither enters the medians;
  * each reported time is the median over ``--repeats`` rounds of one call (a call is one
    forward, one forward+backward, or one whole train step including the optimiser update);
  * before timing a train step, one step of each JAX variant is compared with the pure
    ``lax`` reference from the same parameters (max |difference| of the loss and of the
    updated parameters is printed), and PyTorch's first loss with the reference's.

Printed first: machine, CPU count, versions, backend, load average (again at the end).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `convjax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convjax import xla_env

# One XLA CPU device per core (as experiments/*.py do) for the "batch split" rows; the other
# JAX rows run on the first device alone, as before. CONVJAX_CPU_DEVICES=1 turns it off.
xla_env.use_cpu_cores()

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

import convjax.functional as cf
from benchmarks import models_jax as mj
from benchmarks._timing import format_table

CONV_SHAPES = [
    # (N, H, W, C_in), C_out: the textbook CNN's convs, then ResNet-20's (CIFAR) stages
    ((128, 28, 28, 1), 32),
    ((128, 28, 28, 32), 32),
    ((128, 14, 14, 32), 64),
    ((128, 14, 14, 64), 64),
    ((128, 32, 32, 16), 16),
    ((128, 16, 16, 32), 32),
    ((128, 8, 8, 64), 64),
]
CONV_IMPLS = ("lax", "matmul_grad", "winograd", "im2col", "direct")
POOL_SHAPES = [(128, 28, 28, 32), (128, 14, 14, 64)]


# --------------------------------------------------------------------------- environment


def _torch():
    import torch

    return torch


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The vector-ISA flags of this CPU that matter for XLA's kernels (from /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16")
                    have = [w for w in wanted if w in flags]
                    return " ".join(have) if have else "no avx2/avx512"
    except OSError:
        pass
    return "unknown"


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def short_header() -> list[str]:
    """Two lines for reports of benchmarks that run in child processes: CPU and load."""
    return [
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs; vector ISA: {cpu_isa()}",
        f"load average (1/5/15 min) at start: {_load()}",
    ]


def finish_report(report: list[str], out: str | None) -> str:
    """Append the load average at the end, print that line, write the report to ``out``."""
    tail = f"\nload average at end: {_load()}"
    print(tail)
    text = "\n".join([*report, tail + "\n"])
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def environment(torch_device: str) -> str:
    import flax
    import jaxlib

    torch = _torch()
    dev = jax.devices()[0]
    lines = [
        f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"machine: {_cpu_model()}, {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}",
        f"vector ISA: {cpu_isa()}",
        f"jax {jax.__version__} (jaxlib {jaxlib.__version__}, backend {jax.default_backend()}, "
        f"device {getattr(dev, 'device_kind', dev.platform)} x {jax.device_count()}), "
        f"flax {flax.__version__}, "
        f"torch {torch.__version__} (device {torch_device}, threads {torch.get_num_threads()}"
        + (
            f", {torch.cuda.get_device_name(0)}, cudnn {torch.backends.cudnn.version()}"
            if torch_device == "cuda"
            else ""
        )
        + f"), numpy {np.__version__}, python {platform.python_version()}",
        f"load average (1/5/15 min) at start: {_load()}",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- timing


class Candidate:
    """A zero-argument callable that runs (and waits for) one call, plus its setup costs.

    ``steps``: train steps one call runs (the per-step columns divide by it).
    """

    def __init__(self, name, call: Callable[[], object], compile_s=float("nan"), steps=1):
        self.name = name
        self.call = call
        self.compile_s = compile_s
        self.steps = steps
        start = time.perf_counter()
        call()
        self.first_s = time.perf_counter() - start
        self.samples: list[float] = []

    @property
    def median(self) -> float:
        """Median seconds per train step (per call for steps=1)."""
        return statistics.median(self.samples) / self.steps


def jax_candidate(name, fn, *args, steps=1) -> Candidate:
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return Candidate(name, lambda: jax.block_until_ready(compiled(*args)), compile_s, steps)


def unrolled_steps(step, k: int):
    """``k`` applications of ``step(params, velocity, x, y)`` on the same batch in one
    program, written out (``lax.scan`` with ``unroll=k``): the loop form the trainer picks
    on CPU (``convjax.train.loops``). Returns the last step's outputs."""

    def multi(params, velocity, x, y):
        def body(carry, _):
            p, v, _ = carry
            return step(p, v, x, y), None

        first = step(params, velocity, x, y)
        out, _ = lax.scan(body, first, None, length=k - 1, unroll=k - 1)
        return out

    return multi


def torch_candidate(name, fn, device) -> Candidate:
    torch = _torch()
    if device == "cuda":

        def call():
            out = fn()
            torch.cuda.synchronize()
            return out

        return Candidate(name, call)
    return Candidate(name, fn)


def run_interleaved(cands: list[Candidate], repeats: int, warmup: int = 2) -> None:
    """Time one call of each candidate per round; each round starts one candidate later.

    The rotation matters: a call right after PyTorch's ran measurably slower (PyTorch's
    OpenMP threads keep spinning after a call and compete for the cores). With a fixed order
    the same candidate always paid that: two identical XLA programs, first and second in the
    round, differed by up to 1.7x at load 7 on the 2-core machine. Rotating spreads it evenly.
    """
    for _ in range(warmup):
        for c in cands:
            c.call()
    for r in range(repeats):
        shift = r % len(cands)
        for c in cands[shift:] + cands[:shift]:
            start = time.perf_counter()
            c.call()
            c.samples.append(time.perf_counter() - start)


def _try(name, make, failures):
    try:
        return make()
    except Exception as e:  # noqa: BLE001  one broken candidate must not sink the run
        failures.append(f"{name}: {type(e).__name__}: {str(e).splitlines()[0][:160]}")
        return None


# --------------------------------------------------------------------------- conv, pool


def _jnp_dtype(name):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _torch_dtype(name):
    torch = _torch()
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[name]


def bench_conv(args, device) -> str:
    dtype = _jnp_dtype(args.dtype)
    shapes = CONV_SHAPES[1:2] + CONV_SHAPES[5:6] if args.quick else CONV_SHAPES
    out = ["## Convolutions: 3x3, stride 1, SAME, NHWC (PyTorch: NCHW)\n"]
    out.append(
        "ms = median per call; `vs lax` = lax time / this time (higher is faster); "
        "`vs torch` likewise against PyTorch's F.conv2d on the same shape.\n"
    )
    for shape, cout in shapes:
        shape = (args.batch, *shape[1:])
        out.append(_conv_shape(shape, cout, dtype, args, device))
        print(out[-1], flush=True)
    return "\n".join(out)


def _conv_shape(shape, cout, dtype, args, device) -> str:
    torch = _torch()
    out = []
    failures = []
    key = jax.random.key(0)
    x = jax.random.normal(key, shape, dtype)
    k = (jax.random.normal(jax.random.key(1), (3, 3, shape[-1], cout)) / 3).astype(dtype)
    g = jax.random.normal(jax.random.key(2), (*shape[:3], cout), dtype)
    fwd, bwd = [], []
    for impl in CONV_IMPLS:

        def f(x, k, impl=impl):
            return cf.conv(x, k, padding="SAME", impl=impl)

        def fb(x, k, g, f=f):
            y, vjp = jax.vjp(f, x, k)
            return y, *vjp(g)

        c = _try(impl, lambda f=f, impl=impl: jax_candidate(impl, f, x, k), failures)
        if c:
            fwd.append(c)
        c = _try(impl, lambda fb=fb, impl=impl: jax_candidate(impl, fb, x, k, g), failures)
        if c:
            bwd.append(c)
    tdt = _torch_dtype(args.dtype)
    tx = torch.randn(shape[0], shape[3], shape[1], shape[2], device=device, dtype=tdt)
    tw = torch.randn(cout, shape[3], 3, 3, device=device, dtype=tdt) / 3
    tg = torch.randn(shape[0], cout, shape[1], shape[2], device=device, dtype=tdt)
    txr, twr = tx.clone().requires_grad_(), tw.clone().requires_grad_()

    def t_fwd():
        with torch.no_grad():
            return torch.nn.functional.conv2d(tx, tw, padding=1)

    def t_fb():
        y = torch.nn.functional.conv2d(txr, twr, padding=1)
        return torch.autograd.grad(y, (txr, twr), tg)

    tf = torch_candidate("torch", t_fwd, device)
    tb = torch_candidate("torch", t_fb, device)
    run_interleaved(fwd + [tf], args.repeats)
    run_interleaved(bwd + [tb], args.repeats)
    base_f = next((c for c in fwd if c.name == "lax"), None)
    base_b = next((c for c in bwd if c.name == "lax"), None)
    rows = []
    by_name = {c.name: c for c in bwd}
    for c in fwd + [tf]:
        b = tb if c is tf else by_name.get(c.name)
        row = {
            "impl": c.name,
            "fwd ms": c.median * 1e3,
            "fwd vs lax": base_f.median / c.median if base_f else float("nan"),
            "fwd vs torch": tf.median / c.median,
        }
        if b is not None:
            row.update(
                {
                    "fwd+bwd ms": b.median * 1e3,
                    "f+b vs lax": base_b.median / b.median if base_b else float("nan"),
                    "f+b vs torch": tb.median / b.median,
                    "compile s (f+b)": b.compile_s,
                }
            )
        rows.append(row)
    out.append(f"\n### x {shape} -> {cout} channels, {args.dtype}\n")
    out.append(format_table(rows))
    if failures:
        out.append("\nnot timed: " + "; ".join(failures))
    return "\n".join(out)


def bench_pool(args, device) -> str:
    dtype = _jnp_dtype(args.dtype)
    out = ["\n## Pooling 2x2/2, forward+backward (NHWC; PyTorch NCHW)\n"]
    out.append("`vs lax` = lax.reduce_window time / this time.\n")
    for shape in POOL_SHAPES[:1] if args.quick else POOL_SHAPES:
        out.append(_pool_shape((args.batch, *shape[1:]), dtype, args, device))
        print(out[-1], flush=True)
    return "\n".join(out)


def _pool_shape(shape, dtype, args, device) -> str:
    torch = _torch()
    out = []
    x = jax.random.normal(jax.random.key(0), shape, dtype)
    g = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
    g = g.astype(dtype)
    w = (1, 2, 2, 1)
    kinds = {
        "max convjax": lambda x: cf.max_pool(x, (2, 2)),
        "max lax.reduce_window": lambda x: lax.reduce_window(x, -jnp.inf, lax.max, w, w, "VALID"),
        "avg convjax": lambda x: cf.avg_pool(x, (2, 2)),
        "avg lax.reduce_window": lambda x: lax.reduce_window(x, 0.0, lax.add, w, w, "VALID") / 4,
    }
    cands = []
    for name, f in kinds.items():

        def fb(x, g, f=f):
            y, vjp = jax.vjp(f, x)
            return y, vjp(g)[0]

        cands.append(jax_candidate(name, fb, x, g))
    tdt = _torch_dtype(args.dtype)
    tx = torch.randn(shape[0], shape[3], shape[1], shape[2], device=device, dtype=tdt)
    tx.requires_grad_()
    tg = torch.randn(shape[0], shape[3], shape[1] // 2, shape[2] // 2, device=device, dtype=tdt)
    F = torch.nn.functional
    cands.append(
        torch_candidate(
            "max torch",
            lambda: torch.autograd.grad(F.max_pool2d(tx, 2), tx, tg),
            device,
        )
    )
    cands.append(
        torch_candidate(
            "avg torch",
            lambda: torch.autograd.grad(F.avg_pool2d(tx, 2), tx, tg),
            device,
        )
    )
    run_interleaved(cands, args.repeats)
    by = {c.name: c for c in cands}
    rows = []
    for c in cands:
        kind = c.name.split()[0]
        rows.append(
            {
                "pool": c.name,
                "fwd+bwd ms": c.median * 1e3,
                "vs lax": by[f"{kind} lax.reduce_window"].median / c.median,
                "vs torch": by[f"{kind} torch"].median / c.median,
            }
        )
    out.append(f"\n### x {shape}, {args.dtype}\n")
    out.append(format_table(rows))
    return "\n".join(out)


# --------------------------------------------------------------------------- train steps


def _max_diff(a, b) -> float:
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b))
    return max(
        float(jnp.max(jnp.abs(x.astype(jnp.float32) - y.astype(jnp.float32)))) for x, y in leaves
    )


def _train_table(title, cands, batch, args, notes) -> str:
    run_interleaved(cands, args.repeats)
    torch_c = next((c for c in cands if c.name.startswith("PyTorch")), None)
    ref = cands[0]
    rows = [
        {
            "variant": c.name,
            "step ms": c.median * 1e3,
            "images/s": batch / c.median,
            "vs torch": torch_c.median / c.median if torch_c else float("nan"),
            f"vs {ref.name.split()[0]}": ref.median / c.median,
            "compile s": c.compile_s,
            "first call s": c.first_s,
        }
        for c in cands
    ]
    text = [f"\n### {title}\n", format_table(rows), ""]
    text += [f"- {n}" for n in notes]
    print("\n".join(text), flush=True)
    return "\n".join(text)


def bench_textbook(args, device) -> str:
    torch = _torch()
    from benchmarks import models_flax, models_torch

    dtype = _jnp_dtype(args.dtype)
    batch = args.batch
    params = jax.tree.map(lambda a: a.astype(dtype), mj.cnn_params(jax.random.key(0)))
    vel = jax.tree.map(jnp.zeros_like, params)
    x, y = mj.cnn_batch(jax.random.key(1), batch, dtype)
    xc = jnp.moveaxis(x, -1, 1)
    failures, notes = [], []
    variants = {
        "lax reference (NHWC)": (mj.lax_cnn, x),
        "convjax impl=lax NHWC": (lambda p, x: mj.convjax_cnn(p, x), x),
        "convjax impl=lax NCHW": (lambda p, x: mj.convjax_cnn(p, x, channels_last=False), xc),
        "convjax impl=winograd": (lambda p, x: mj.convjax_cnn(p, x, impl="winograd"), x),
        "convjax impl=matmul_grad": (lambda p, x: mj.convjax_cnn(p, x, impl="matmul_grad"), x),
    }
    tuned = _tuned_textbook_impls(batch, dtype, notes)
    variants["convjax tuned per layer"] = (lambda p, x: mj.convjax_cnn(p, x, impl=tuned), x)
    split = _split_over_devices(batch)
    cands = []
    ref_out = None
    for name, (fwd, xx) in variants.items():
        step = mj.make_train_step(fwd)
        c = _try(
            name,
            lambda step=step, xx=xx, name=name: jax_candidate(name, step, params, vel, xx, y),
            failures,
        )
        if c is None:
            continue
        cands.append(c)
        out = jax.jit(step)(params, vel, xx, y)
        if name in SPLIT_VARIANTS and split is not None:
            # The same step, parameters replicated and the batch split over every device
            # (the trainer's config.data_parallel): XLA adds the gradient all-reduce.
            ndev, rep, shard = split
            sname = f"{name}, batch split over {ndev} devices"
            sargs = (rep(params), rep(vel), shard(xx), shard(y))
            sc = _try(
                sname,
                lambda sname=sname, step=step, sargs=sargs: jax_candidate(sname, step, *sargs),
                failures,
            )
            k = 4
            uname = f"{sname}, {k} steps per call (unrolled)"
            uc = _try(
                uname,
                lambda uname=uname, step=step, sargs=sargs, k=k: jax_candidate(
                    uname, unrolled_steps(step, k), *sargs, steps=k
                ),
                failures,
            )
            if sc is not None:
                cands.append(sc)
                if uc is not None:
                    cands.append(uc)
                sout = jax.jit(step)(*sargs)
                notes.append(
                    f"{sname}: |loss - ref| = {abs(float(sout[2]) - float(out[2])):.2e}, "
                    f"max |params - ref| after one step = {_max_diff(sout[0], out[0]):.2e}"
                )
        if ref_out is None:
            ref_out = out
        else:
            notes.append(
                f"{name}: |loss - ref| = {abs(float(out[2]) - float(ref_out[2])):.2e}, "
                f"max |params - ref| after one step = {_max_diff(out[0], ref_out[0]):.2e}"
            )
    # Flax linen, from its own initialisation (same architecture and optimiser).
    fmodel = models_flax.TextbookCNN(dtype=dtype)
    fvars = fmodel.init(jax.random.key(0), x)
    fvars = jax.tree.map(lambda a: a.astype(dtype), fvars)
    fvel = jax.tree.map(jnp.zeros_like, fvars["params"])
    c = _try(
        "flax",
        lambda: jax_candidate("Flax linen", models_flax.make_train_step(fmodel), fvars, fvel, x, y),
        failures,
    )
    if c:
        cands.append(c)
    # PyTorch eager from the same parameters as the lax reference.
    tmodel = models_torch.cnn_from_jax(jax.tree.map(lambda a: a.astype(jnp.float32), params))
    tmodel = tmodel.to(device=device, dtype=_torch_dtype(args.dtype))
    tstep = models_torch.make_train_step(tmodel)
    tx = torch.from_numpy(np.asarray(xc, np.float32)).to(device, _torch_dtype(args.dtype))
    ty = torch.from_numpy(np.asarray(y)).long().to(device)
    with torch.no_grad():
        tloss = float(models_torch.F.cross_entropy(tmodel(tx).float(), ty))
    notes.append(
        f"PyTorch: |first loss - ref loss| = {abs(tloss - float(ref_out[2])):.2e} (same params)"
    )
    cands.append(torch_candidate("PyTorch eager", lambda: tstep(tx, ty), device))
    if failures:
        notes.append("not timed: " + "; ".join(failures))
    title = (
        f"Train step: textbook CNN (28x28x1, batch {batch}, {args.dtype}, SGD momentum), "
        "~115 MFLOP/image"
    )
    return _train_table(title, cands, batch, args, notes)


#: Textbook-CNN variants also timed with the batch split over every device.
SPLIT_VARIANTS = ("convjax impl=lax NHWC", "convjax impl=matmul_grad")


def _tuned_textbook_impls(batch, dtype, notes):
    """``convjax.tuning``'s choice for each of the textbook CNN's four convolutions."""
    from convjax import tuning

    cache = tuning.ConvTuningCache(candidates=("lax", "matmul_grad", "im2col"), repeats=5)
    impls = []
    for i, ((cin, cout), size) in enumerate(zip(mj.CNN_CONVS, (28, 28, 14, 14))):
        # The first layer's input (the data) needs no gradient.
        objective = "first_layer" if i == 0 else "train"
        x_shape, k_shape = (batch, size, size, cin), (3, 3, cin, cout)
        impls.append(
            cache.choose(x_shape, k_shape, dtype=dtype, objective=objective, padding="SAME")
        )
    results = "; ".join(
        f"{json.loads(key)['x']} -> "
        + ", ".join(f"{n} {t * 1e3:.1f} ms" for n, t in r.seconds.items())
        for key, r in cache.results.items()
    )
    notes.append(f"convjax tuned per layer: chose {impls} (measured: {results})")
    return tuple(impls)


def _split_over_devices(batch):
    """``(count, replicate, shard)`` placing arrays over every local device, or None when
    there is one device or the batch does not divide evenly."""
    from convjax.train import sharding

    devs = sharding.data_parallel_devices(0, (batch,))
    if len(devs) < 2:
        return None
    mesh = sharding.make_mesh(1, devices=devs)
    return (
        len(devs),
        lambda t: sharding.replicate(t, mesh),
        lambda t: sharding.shard_batch(t, mesh),
    )


def _set_conv_impl(model, impl):
    from flax import nnx

    from convjax import nn as cnn

    for _, m in nnx.iter_graph(model):
        if isinstance(m, cnn.Conv):
            m.impl = impl


def bench_resnet(args, device) -> str:
    torch = _torch()
    from flax import nnx

    from benchmarks import models_flax, models_torch

    dtype = _jnp_dtype(args.dtype)
    batch = args.batch
    kx, ky = jax.random.split(jax.random.key(1))
    x = jax.random.normal(kx, (batch, 32, 32, 3), dtype)
    y = jax.random.randint(ky, (batch,), 0, 10)
    failures, notes, cands = [], [], []

    def nnx_candidate(name, impl):
        from convjax.models import ResNet20

        model = ResNet20(rngs=nnx.Rngs(0))
        _set_conv_impl(model, impl)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)
        params = jax.tree.map(lambda a: a.astype(dtype), params)
        vel = jax.tree.map(jnp.zeros_like, params)
        step = mj.make_nnx_train_step(graphdef)
        return jax_candidate(name, step, params, rest, vel, x, y)

    for name, impl in (
        ("convjax ResNet20 impl=lax", "lax"),
        ("convjax ResNet20 impl=matmul_grad", "matmul_grad"),
    ):
        c = _try(name, lambda name=name, impl=impl: nnx_candidate(name, impl), failures)
        if c:
            cands.append(c)
    fmodel = models_flax.ResNet20(dtype=dtype)
    fvars = fmodel.init(jax.random.key(0), x)
    fvel = jax.tree.map(jnp.zeros_like, fvars["params"])
    c = _try(
        "flax",
        lambda: jax_candidate(
            "Flax linen ResNet20", models_flax.make_train_step(fmodel), fvars, fvel, x, y
        ),
        failures,
    )
    if c:
        cands.append(c)
    tmodel = models_torch.ResNet20().to(device=device, dtype=_torch_dtype(args.dtype))
    tstep = models_torch.make_train_step(tmodel)
    tx = torch.from_numpy(np.asarray(jnp.moveaxis(x, -1, 1), np.float32))
    tx = tx.to(device, _torch_dtype(args.dtype))
    ty = torch.from_numpy(np.asarray(y)).long().to(device)
    cands.append(torch_candidate("PyTorch eager ResNet20", lambda: tstep(tx, ty), device))
    if failures:
        notes.append("not timed: " + "; ".join(failures))
    notes.append("each framework from its own initialisation; BatchNorm in training mode")
    title = f"Train step: ResNet-20 (CIFAR 32x32x3, batch {batch}, {args.dtype}, SGD momentum)"
    return _train_table(title, cands, batch, args, notes)


# --------------------------------------------------------------------------- main


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections", default="conv,pool,train,resnet", help="comma list of conv,pool,train,resnet"
    )
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--batch", type=int, default=128, help="batch of every section")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--quick", action="store_true", help="2 conv shapes, 1 pool shape")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = min(args.repeats, 5)
    torch = _torch()
    device = "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"
    if device == "cpu":
        torch.set_num_threads(args.threads)
    else:
        torch.backends.cudnn.benchmark = True
    header = environment(device)
    print(header, flush=True)
    report = [f"```\n{header}\n```\n", f"command: `{' '.join(sys.argv)}`\n"]
    sections = {
        "conv": bench_conv,
        "pool": bench_pool,
        "train": bench_textbook,
        "resnet": bench_resnet,
    }
    for name in args.sections.split(","):
        if name not in sections:
            raise ValueError(
                f"--sections contains {name!r}; use a comma list of {', '.join(sections)}."
            )
        report.append(sections[name](args, device))
    return finish_report(report, args.out)


if __name__ == "__main__":
    main()
