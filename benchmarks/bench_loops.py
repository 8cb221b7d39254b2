r"""Which loop form runs the default network's train steps fastest on this backend?

Compares, on the real train step of ``configs/default.py`` (PatternCNN, batch 128, real
Fashion-MNIST images on the device):

- ``step``: k separate calls of the jitted single step (Python dispatches each);
- ``scan``: one jitted call running the k steps in a rolled ``lax.scan``;
- ``unrolled``: one jitted call with the k steps unrolled (``lax.scan(..., unroll=k)``).

Compile time (first call) is reported apart from run time (median over repeats of k steps,
after the compile). The fastest form per backend goes into ``convjax.train.loops.BEST_FORM``.

Usage::

    .venv/bin/python benchmarks/bench_loops.py                     # prints the table
    .venv/bin/python benchmarks/bench_loops.py --write             # also writes results/loops.md
    .venv/bin/python benchmarks/bench_loops.py --smoke             # tiny model, seconds
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_default_config():
    from convjax.train import load_config, prepare

    return prepare(load_config(f"{ROOT}/configs/default.py")).unlock()


def cpu_load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def run(ks=(4, 8), repeats=5, batch_size=128, smoke=False):
    from convjax import data as cdata
    from convjax.train import loops, make_model, optim
    from convjax.train.state import create_train_state, rng_stream_names
    from convjax.train.steps import make_train_step

    cfg = load_default_config()
    cfg.batch_size = batch_size
    if smoke:
        cfg.model.widths = (4, 8)
        cfg.model.fc_widths = (16,)
    ds = cdata.load_dataset("fashion_mnist")
    n = batch_size * max(ks) * 2
    images = jax.device_put(ds.train_images[:n])
    labels = jax.device_put(ds.train_labels[:n])
    order = cdata.epoch_permutation(jax.random.key(0), n, batch_size)
    model = make_model(cfg, ds.image_shape, ds.num_classes)
    tx = optim.make_optimizer(cfg, 100)
    model_def, state0 = create_train_state(model, tx)
    mean, std = ds.train_mean_std
    step = make_train_step(model_def, tx, mean=mean, std=std, rng_streams=rng_stream_names(model))
    hp = {"label_smoothing": 0.1}
    key = jax.random.key(1)
    rows = []
    for k in ks:
        for form in ("step", "scan", "unrolled"):
            fn = loops.make_multi_step(
                step, form, 1 if form == "step" else k, single=True, donate=False
            )
            calls = k if form == "step" else 1

            def k_steps(st, fn=fn, calls=calls):
                for i in range(calls):
                    st, m = fn(st, images, labels, order, i, key, hp)
                return jax.block_until_ready(st)

            t0 = time.perf_counter()
            k_steps(state0)
            compile_s = time.perf_counter() - t0
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                k_steps(state0)
                times.append(time.perf_counter() - t0)
            t = statistics.median(times)
            rows.append(
                {
                    "form": form,
                    "k": k,
                    "compile_s": compile_s,
                    "run_s": t,
                    "images_per_s": k * batch_size / t,
                }
            )
            print(
                f"{form:9s} k={k:2d} compile {compile_s:6.2f} s  run {t:6.3f} s  "
                f"{k * batch_size / t:7.1f} img/s",
                flush=True,
            )
    return rows


def to_markdown(rows, header: str) -> str:
    lines = [header, ""]
    lines += [
        "| form | k | compile (s) | run of k steps (s, median) | images/s | vs step |",
        "|---|---|---|---|---|---|",
    ]
    base = {r["k"]: r["images_per_s"] for r in rows if r["form"] == "step"}
    for r in rows:
        lines.append(
            f"| {r['form']} | {r['k']} | {r['compile_s']:.2f} | {r['run_s']:.3f} | "
            f"{r['images_per_s']:.1f} | {r['images_per_s'] / base[r['k']]:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="+", default=[4, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--smoke", action="store_true", help="tiny model, 1 repeat")
    p.add_argument("--write", action="store_true", help="write benchmarks/results/loops.md")
    a = p.parse_args(argv)
    if a.smoke:
        a.k, a.repeats = [2], 1
    load_before = cpu_load()
    rows = run(tuple(a.k), a.repeats, a.batch_size, a.smoke)
    header = (
        f"# Loop forms: default network train step (batch {a.batch_size})\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_loops.py "
        f"{' '.join(sys.argv[1:])}`  \n"
        f"Backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), jax "
        f"{jax.__version__}, {os.cpu_count()} CPUs; {load_before} before, {cpu_load()} after "
        f"(the machine is shared: absolute numbers are pessimistic, ratios are what count)."
    )
    md = to_markdown(rows, header)
    print(md)
    if a.write:
        path = os.path.join(ROOT, "benchmarks", "results", "loops.md")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(md)
    return rows


if __name__ == "__main__":
    main()
