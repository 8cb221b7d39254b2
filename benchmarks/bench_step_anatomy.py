"""Where a one-device train step's time goes: convolutions alone and in the step, XLA vs PyTorch.

Run from the repository root (CPU):

    .venv/bin/python -m benchmarks.bench_step_anatomy                 # 3 rounds
    .venv/bin/python -m benchmarks.bench_step_anatomy --out benchmarks/results/step_anatomy.md

Each framework runs in its own fresh child process (JAX on one XLA device; PyTorch eager with
2 threads, NCHW), the children taking turns round after round, so neither framework's threads
compete with the other's and outside load hits both alike. Each child measures, medians over
its own repeats:
  * every convolution of the textbook CNN (``benchmarks.models_jax.CNN_CONVS``, batch 128,
    3x3 SAME) alone: the forward, and forward + backward (input and kernel gradient against a
    fixed output gradient);
  * the textbook CNN's whole SGD-momentum train step, and the same step of a network that is
    the four convolutions only (no bias, no ReLU, pooling replaced by a strided slice, no FC
    layers): the convolutions' share of the step.
The JAX child runs twice per round: on every core, and pinned to one core
(``os.sched_setaffinity``), which shows how many cores XLA's convolutions use. It also counts
the transposes XLA put into the compiled step (fusions named
``transpose*``) and their bytes. Tables: median over rounds of the children's medians.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make `benchmarks` and `convjax` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SHAPES = [((128, 28, 28, 1), 32), ((128, 28, 28, 32), 32), ((128, 14, 14, 32), 64),
          ((128, 14, 14, 64), 64)]  # fmt: skip


def _median_ms(fn, repeats: int) -> float:
    for _ in range(2):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _jax_child(repeats: int) -> dict:
    os.environ["CONVJAX_CPU_DEVICES"] = "1"
    import re

    import jax
    import jax.numpy as jnp
    from jax import lax

    import convjax.functional as cf
    from benchmarks import models_jax as mj

    def time_conv(shape, cout) -> tuple[float, float]:
        x = jax.random.normal(jax.random.key(0), shape)
        k = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], cout))

        def conv(x, k):
            dn = ("NHWC", "HWIO", "NHWC")
            return lax.conv_general_dilated(x, k, (1, 1), "SAME", dimension_numbers=dn)

        g = jax.random.normal(jax.random.key(2), conv(x, k).shape)
        fwd = jax.jit(conv)
        both = jax.jit(lambda x, k: jax.vjp(conv, x, k)[1](g))
        return (
            _median_ms(lambda: fwd(x, k).block_until_ready(), repeats),
            _median_ms(lambda: jax.block_until_ready(both(x, k)), repeats),
        )

    out = {}
    for shape, cout in SHAPES:
        name = f"{shape} -> {cout}"
        out[f"conv {name}, forward"], out[f"conv {name}, forward + backward"] = time_conv(
            shape, cout
        )

    def convs_only(params, x):
        for i in range(len(mj.CNN_CONVS)):
            x = cf.conv(x, params[f"conv{i}"]["kernel"], padding="SAME")
            if i in mj.CNN_POOL_AFTER:
                x = x[:, ::2, ::2, :]
        return x.reshape(x.shape[0], -1)[:, :10]

    params = mj.cnn_params(jax.random.key(0))
    vel = jax.tree.map(jnp.zeros_like, params)
    x, y = mj.cnn_batch(jax.random.key(1), 128)
    for label, forward in (("textbook CNN", mj.convjax_cnn), ("convolutions only", convs_only)):
        step = jax.jit(mj.make_train_step(forward)).lower(params, vel, x, y).compile()
        out[f"train step, {label}"] = _median_ms(
            lambda step=step: jax.block_until_ready(step(params, vel, x, y)), repeats
        )
        if label == "textbook CNN":
            text = step.as_text()
            entry = text[text.index("ENTRY") :]
            sizes = re.findall(r"%transpose\S* = f32\[([0-9,]+)\]", entry)
            out["transposes in the compiled step"] = len(sizes)
            total = sum(4 * math.prod(int(d) for d in s.split(",")) for s in sizes)
            out["bytes they write (MB)"] = total / 1e6
    return out


def _torch_child(repeats: int, threads: int) -> dict:
    import jax
    import numpy as np
    import torch
    import torch.nn.functional as F

    from benchmarks import models_jax as mj
    from benchmarks import models_torch

    torch.set_num_threads(threads)
    out = {}
    for shape, cout in SHAPES:
        n, h, w, c = shape
        x = torch.randn(n, c, h, w, requires_grad=True)
        k = torch.randn(cout, c, 3, 3, requires_grad=True)
        g = torch.randn(n, cout, h, w)

        def fwd(x=x, k=k):
            with torch.no_grad():
                return F.conv2d(x, k, padding=1)

        def both(x=x, k=k, g=g):
            return torch.autograd.grad(F.conv2d(x, k, padding=1), (x, k), g)

        name = f"{shape} -> {cout}"
        out[f"conv {name}, forward"] = _median_ms(fwd, repeats)
        out[f"conv {name}, forward + backward"] = _median_ms(both, repeats)
    model = models_torch.cnn_from_jax(mj.cnn_params(jax.random.key(0)))
    step = models_torch.make_train_step(model)
    x, y = mj.cnn_batch(jax.random.key(1), 128)
    tx = torch.from_numpy(np.moveaxis(np.asarray(x), -1, 1).copy())
    ty = torch.from_numpy(np.asarray(y)).long()
    out["train step, textbook CNN"] = _median_ms(lambda: step(tx, ty), repeats)
    return out


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10, help="timed calls per child")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--child", choices=("jax", "jax1", "torch"), help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.child == "jax1":  # before JAX starts its threads
            os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        if args.child == "torch":
            res = _torch_child(args.repeats, args.threads)
        else:
            res = _jax_child(args.repeats)
        with open(args.child_out, "w") as f:
            json.dump(res, f)
        return ""

    from benchmarks._timing import format_table
    from benchmarks.harness import finish_report, short_header

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    header = short_header()
    print("\n".join(header), flush=True)
    runs = {"jax": [], "jax1": [], "torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for who in runs:
                path = os.path.join(tmp, f"{who}{r}.json")
                cmd = [sys.executable, "-m", "benchmarks.bench_step_anatomy", "--child", who]
                cmd += ["--child-out", path, "--repeats", str(args.repeats)]
                cmd += ["--threads", str(args.threads)]
                env = dict(os.environ, PYTHONPATH=root)
                subprocess.run(cmd, cwd=root, env=env, check=True, capture_output=True)
                with open(path) as f:
                    runs[who].append(json.load(f))
                print(f"round {r + 1}: {who} done", flush=True)

    def med(who, key):
        values = [run[key] for run in runs[who] if key in run]
        return statistics.median(values) if values else float("nan")

    keys = [k for k in runs["jax"][0] if k.startswith(("conv", "train"))]
    rows = []
    for key in keys:
        jx, j1, th = med("jax", key), med("jax1", key), med("torch", key)
        rows.append(
            {"what": key, "XLA ms": jx, "XLA on one core ms": j1, "PyTorch ms": th,
             "XLA / PyTorch": jx / th}
        )  # fmt: skip
    both = [k for k in keys if k.endswith("forward + backward")]
    sums = {who: sum(med(who, k) for k in both) for who in runs}
    rows.append(
        {"what": "sum of the four convolutions' forward + backward", "XLA ms": sums["jax"],
         "XLA on one core ms": sums["jax1"], "PyTorch ms": sums["torch"],
         "XLA / PyTorch": sums["jax"] / sums["torch"]}
    )  # fmt: skip
    text = ["```", *header, "```", "", f"command: `{' '.join(sys.argv)}`", ""]
    text += [format_table(rows), ""]
    text.append(
        f"XLA's compiled textbook step holds {int(med('jax', 'transposes in the compiled step'))} "
        f"transposes writing {med('jax', 'bytes they write (MB)'):.1f} MB per step."
    )
    report = "\n".join(text)
    print(report, flush=True)
    return finish_report([report], args.out)


if __name__ == "__main__":
    main()
