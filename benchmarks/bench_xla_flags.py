"""XLA CPU flags, each in a fresh process: conv forward/gradients and the train step, checked.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench_xla_flags                  # every flag set, 3 rounds
    .venv/bin/python -m benchmarks.bench_xla_flags --rounds 5 --out benchmarks/results/xla_flags.md

XLA reads ``XLA_FLAGS`` once, when its CPU backend starts, so every flag set runs in its own
child process. The flag sets take turns (round 1: every set once, round 2: every set again,
...), so load from other processes on a shared machine hits them alike; a child's figures are
medians over its own repeats, and the table shows the median over rounds. Each child measures,
on one XLA device:
  * forward, input gradient and kernel gradient of the 3x3 SAME convolutions of issue 15,
    x (128, 28, 28, 32) -> 32 and x (128, 14, 14, 64) -> 64 (``lax.conv_general_dilated``);
  * one train step of the textbook CNN (``benchmarks.models_jax.convjax_cnn``, batch 128).
Numerics: every child also writes its outputs on fixed inputs; each flag set's are compared
with the default set's (max |difference| / max |value| over the conv outputs and gradients,
and the loss and parameters after one train step). A flag that changes numbers beyond float
round-off is reported, whatever its speed.

Flags tried (jaxlib 0.10.2): ``--xla_cpu_experimental_ynn_fusion_type`` (XLA hands
convolutions and dots to YNNPACK; ``individual_convolution`` and ``individual_dot`` are on by
default in this jaxlib, so the sets switch them off or add ``eltwise``/``reduce``),
``--xla_cpu_experimental_xnn_fusion_type`` (XNNPACK fusions), and
``--xla_cpu_experimental_onednn_custom_call``, ``--xla_cpu_use_onednn`` and
``--xla_cpu_experimental_onednn_fusion_type`` (oneDNN; its fusion types are dot, eltwise and
reduce, no convolution), ``--xla_cpu_prefer_vector_width=512`` (this machine has AVX-512) and
``--xla_cpu_enable_concurrency_optimized_scheduler``. ``--sets`` runs a subset (the default
set always runs, as the reference).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

FLAG_SETS = {
    "default": "",
    "ynn: no convolution": "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",
    "ynn: nothing": "--xla_cpu_experimental_ynn_fusion_type=invalid",
    "ynn: + eltwise, reduce": "--xla_cpu_experimental_ynn_fusion_type=+eltwise,+reduce",
    "xnn: dot": "--xla_cpu_experimental_xnn_fusion_type=dot",
    "xnn: dot, eltwise, reduce": "--xla_cpu_experimental_xnn_fusion_type=dot,eltwise,reduce",
    "onednn custom call": "--xla_cpu_experimental_onednn_custom_call=true",
    "onednn: use": "--xla_cpu_use_onednn=true",
    "onednn: dot, eltwise, reduce": "--xla_cpu_experimental_onednn_fusion_type=dot,eltwise,reduce",
    "vector width 512": "--xla_cpu_prefer_vector_width=512",
    "concurrency scheduler": "--xla_cpu_enable_concurrency_optimized_scheduler=true",
}
SHAPES = [((128, 28, 28, 32), 32), ((128, 14, 14, 64), 64)]


def child(out_prefix: str, repeats: int) -> None:
    """Runs in the fresh process: measure, write ``{out_prefix}.json`` and ``.npz``."""
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax import lax

    from benchmarks import models_jax as mj

    def median_ms(fn, *args):
        jax.block_until_ready(fn(*args))
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            samples.append(time.perf_counter() - start)
        return statistics.median(samples) * 1e3

    def conv(x, k):
        return lax.conv_general_dilated(
            x, k, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    times, arrays = {}, {}
    for shape, cout in SHAPES:
        x = jax.random.normal(jax.random.key(0), shape)
        k = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], cout)) / 9
        g = jax.random.normal(jax.random.key(2), (*shape[:3], cout))
        progs = {
            "forward": jax.jit(lambda x, k, g: conv(x, k)),
            "input grad": jax.jit(lambda x, k, g: jax.vjp(lambda a: conv(a, k), x)[1](g)[0]),
            "kernel grad": jax.jit(lambda x, k, g: jax.vjp(lambda b: conv(x, b), k)[1](g)[0]),
        }
        for name, fn in progs.items():
            key = f"{name} {shape[1]}x{shape[2]}x{shape[3]}->{cout}"
            times[key] = median_ms(fn, x, k, g)
            arrays[key] = np.asarray(fn(x, k, g))
    params = mj.cnn_params(jax.random.key(0))
    vel = jax.tree.map(jnp.zeros_like, params)
    xb, yb = mj.cnn_batch(jax.random.key(1), 128, jnp.float32)
    step = jax.jit(mj.make_train_step(lambda p, x: mj.convjax_cnn(p, x)))
    times["textbook train step"] = median_ms(step, params, vel, xb, yb)
    new_params, _, loss = step(params, vel, xb, yb)
    arrays["train step loss"] = np.asarray(loss)
    for i, leaf in enumerate(jax.tree.leaves(new_params)):
        arrays[f"train step param {i}"] = np.asarray(leaf)
    with open(f"{out_prefix}.json", "w") as f:
        json.dump({"times_ms": times, "flags": os.environ.get("XLA_FLAGS", "")}, f)
    np.savez(f"{out_prefix}.npz", **arrays)


def _rel(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per child")
    parser.add_argument("--out", help="also write the Markdown report to this file")
    parser.add_argument("--sets", default="", help="flag-set names separated by ; (default: all)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    wanted = [n.strip() for n in args.sets.split(";") if n.strip()]
    unknown = [n for n in wanted if n not in FLAG_SETS]
    if unknown:
        parser.error(f"--sets: unknown {unknown}; choose from {list(FLAG_SETS)}")
    flag_sets = {n: f for n, f in FLAG_SETS.items() if not wanted or n == "default" or n in wanted}
    if args.child:
        child(args.child, args.repeats)
        return ""

    import numpy as np

    from benchmarks._timing import format_table
    from benchmarks.harness import _load, short_header

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    header = short_header()
    print("\n".join(header), flush=True)
    results = {name: [] for name in flag_sets}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, (name, flags) in enumerate(flag_sets.items()):
                prefix = os.path.join(tmp, f"r{r}_{i}")
                env = dict(os.environ, XLA_FLAGS=flags, PYTHONPATH=root)
                env.pop("CONVJAX_CPU_DEVICES", None)
                cmd = [sys.executable, "-m", "benchmarks.bench_xla_flags", "--child", prefix]
                cmd += ["--repeats", str(args.repeats)]
                proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
                    results[name].append({"error": f"exit {proc.returncode}: {tail}"})
                    print(f"round {r + 1}: {name}: failed {tail}", flush=True)
                    continue
                with open(f"{prefix}.json") as f:
                    entry = json.load(f)
                entry["arrays"] = dict(np.load(f"{prefix}.npz"))
                results[name].append(entry)
                print(f"round {r + 1}: {name}: {entry['times_ms']}", flush=True)
    base = [e for e in results["default"] if "error" not in e]
    quantities = list(base[0]["times_ms"]) if base else []
    rows, notes = [], []
    for name, entries in results.items():
        ok = [e for e in entries if "error" not in e]
        if not ok:
            notes.append(f"{name}: {entries[0]['error'] if entries else 'not run'}")
            continue
        row = {"flag set": name}
        for q in quantities:
            ms = statistics.median(e["times_ms"][q] for e in ok)
            ref = statistics.median(e["times_ms"][q] for e in base)
            row[f"{q} ms"] = ms
            row[f"{q} vs default"] = ref / ms
        ref_arrays, arrays = base[0]["arrays"], ok[0]["arrays"]
        # Convolutions: relative to each array's largest value. Train step: absolute, since
        # the biases after one step from zero are tiny and a relative figure would blow up.
        conv = max(_rel(arrays[a], ref_arrays[a]) for a in ref_arrays if not a.startswith("train"))
        step = max(
            float(np.max(np.abs(arrays[a].astype(np.float64) - ref_arrays[a])))
            for a in ref_arrays
            if a.startswith("train")
        )
        row["conv outputs/grads, max rel diff"] = f"{conv:.1e}"
        row["train step loss/params, max abs diff"] = f"{step:.1e}"
        rows.append(row)
    # One table per quantity group keeps the columns readable.
    text = ["```", *header, "```", "", f"command: `{' '.join(sys.argv)}`", ""]
    text.append("flags: " + "; ".join(f"{n}: `{f or '(none)'}`" for n, f in flag_sets.items()))
    for q in quantities:
        sub = [
            {
                "flag set": r["flag set"],
                "ms": r[f"{q} ms"],
                "vs default": r[f"{q} vs default"],
            }
            for r in rows
        ]
        text += ["", f"#### {q}", "", format_table(sub)]
    text += ["", "#### numerics", ""]
    text.append("Against the default flags' outputs on the same inputs:\n")
    keys = ("flag set", "conv outputs/grads, max rel diff", "train step loss/params, max abs diff")
    text.append(format_table([{k: r[k] for k in keys} for r in rows]))
    text += [f"- {n}" for n in notes]
    text.append(f"\nload average at end: {_load()}")
    report = "\n".join(text)
    print(report)
    if args.out:
        with open(args.out, "w") as f:
            f.write(report + "\n")
    return report


if __name__ == "__main__":
    main()
