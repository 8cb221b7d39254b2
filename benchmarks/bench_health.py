r"""What gradient-health logging costs: the default recipe's train step with and without the
per-layer gradient, update and parameter norms (``config.grad_health_every_steps``).

The trainer's own loop form is timed (``configs/default.py``'s network, batch 128, 4 steps per
unrolled call on one device), interleaved: each round times ``--calls`` calls of one variant,
then of the other, so load from other processes hits both alike. The norms are computed in
every step when logging is on (a few reductions over the 0.87 M parameters) and written at the
configured interval, so the interval does not change the cost measured here.

Usage::

    .venv/bin/python benchmarks/bench_health.py                 # prints the table
    .venv/bin/python benchmarks/bench_health.py --write         # also results/health.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

from benchmarks._timing import environment, format_table  # noqa: E402


def cpu_flags() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown ISA"
    return "avx512" if "avx512f" in flags else ("avx2" if "avx2" in flags else "no avx2")


def build(health: bool, k: int):
    from convjax import data as cdata
    from convjax.train import load_config, loops, make_model, optim, prepare
    from convjax.train.state import create_train_state, rng_stream_names
    from convjax.train.steps import make_train_step

    cfg = prepare(load_config(f"{ROOT}/configs/default.py"))
    ds = cdata.load_dataset("fashion_mnist")
    n = cfg.batch_size * k * 4
    images, labels = jax.device_put(ds.train_images[:n]), jax.device_put(ds.train_labels[:n])
    order = cdata.epoch_permutation(jax.random.key(0), n, cfg.batch_size)
    model = make_model(cfg, ds.image_shape, ds.num_classes)
    tx = optim.make_optimizer(cfg, 100)
    model_def, state = create_train_state(model, tx)
    mean, std = ds.train_mean_std
    step = make_train_step(
        model_def, tx, mean=mean, std=std, rng_streams=rng_stream_names(model), health=health
    )
    multi = loops.make_multi_step(step, "unrolled", k, single=True)
    args = (images, labels, order)
    return multi, state, args, {"label_smoothing": 0.1}


def run(rounds: int, calls: int, k: int = 4):
    variants = {name: build(flag, k) for name, flag in (("off", False), ("on", True))}
    states = {name: v[1] for name, v in variants.items()}
    key = jax.random.key(1)
    samples = {name: [] for name in variants}
    for name, (multi, _, args, hp) in variants.items():  # compile and warm up
        for i in range(2):
            states[name], m = multi(states[name], *args, (i % 4) * k, key, hp)
        jax.block_until_ready(m)
    for _ in range(rounds):
        for name, (multi, _, args, hp) in variants.items():
            t0 = time.perf_counter()
            for i in range(calls):
                states[name], m = multi(states[name], *args, (i % 4) * k, key, hp)
            jax.block_until_ready(m)
            samples[name].append((time.perf_counter() - t0) / (calls * k))
    off, on = (statistics.median(samples[n]) for n in ("off", "on"))
    return [
        {"health norms": "off", "ms per step": 1e3 * off, "relative time": 1.0},
        {"health norms": "on", "ms per step": 1e3 * on, "relative time": on / off},
    ]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=5)
    p.add_argument("--write", action="store_true")
    a = p.parse_args(argv)
    load = "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    rows = run(a.rounds, a.calls)
    after = f"{os.getloadavg()[0]:.2f}"
    table = format_table(rows)
    header = (
        f"Gradient-health norms, default recipe train step (batch 128, 4 steps per unrolled "
        f"call, one device): {environment()}, {cpu_flags()}, {load} before, {after} after; "
        f"median of {a.rounds} interleaved rounds of {a.calls} calls.\n\nCommand: "
        f"`.venv/bin/python benchmarks/bench_health.py --rounds {a.rounds} --calls {a.calls}`"
    )
    print(header + "\n\n" + table)
    if a.write:
        path = os.path.join(ROOT, "benchmarks", "results", "health.md")
        with open(path, "w") as f:
            f.write("# Cost of gradient-health logging\n\n" + header + "\n\n" + table + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
