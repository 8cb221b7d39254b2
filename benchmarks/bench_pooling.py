"""Forward+backward of convjax pooling vs ``lax.reduce_window`` as Flax uses it.

Run from the repository root:

    .venv/bin/python -m benchmarks.bench_pooling            # full table
    .venv/bin/python -m benchmarks.bench_pooling --quick    # one small shape, few repeats

For each op and shape it times ``(y, dx) = (pool(x), vjp(pool)(g))`` jitted, for convjax
and for the Flax path (``flax.linen.max_pool`` / ``avg_pool`` / ``pool``, which call
``lax.reduce_window``; its max-pool gradient is XLA's select-and-scatter), interleaved in
the same run, and prints a Markdown table of median times and the speedup
(Flax time / convjax time). Before timing it asserts identical outputs and gradients.
"""

from __future__ import annotations

import argparse
import datetime
import sys

import flax
import flax.linen as fnn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

try:
    from benchmarks._timing import compare, environment, format_table, speedup
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _timing import compare, environment, format_table, speedup

import convjax.functional as cf

SHAPES = [(128, 28, 28, 32), (128, 14, 14, 64), (64, 56, 56, 64)]


def _ops():
    """name -> (convjax fn, flax fn, exact?) on NHWC input."""

    def flax_l2(x, window, strides):
        return jnp.sqrt(fnn.pool(x * x, 0.0, lax.add, window, strides, "VALID"))

    return {
        "max 2x2/2": (
            lambda x: cf.max_pool(x, (2, 2)),
            lambda x: fnn.max_pool(x, (2, 2), strides=(2, 2)),
            True,
        ),
        # Overlapping windows: an input element collects gradient from several windows, and
        # the two paths add those in different orders (equal up to float32 rounding).
        "max 3x3/2 (overlapping)": (
            lambda x: cf.max_pool(x, (3, 3), 2),
            lambda x: fnn.max_pool(x, (3, 3), strides=(2, 2)),
            False,
        ),
        "avg 2x2/2": (
            lambda x: cf.avg_pool(x, (2, 2)),
            lambda x: fnn.avg_pool(x, (2, 2), strides=(2, 2)),
            False,
        ),
        "L2 2x2/2": (
            lambda x: cf.lp_pool(x, (2, 2), p=2),
            lambda x: flax_l2(x, (2, 2), (2, 2)),
            False,
        ),
    }


def _fwd_bwd(pool):
    def run(x, g):
        y, vjp = jax.vjp(pool, x)
        return y, vjp(g)[0]

    return run


def _check_same(name, ours, ref, x, g, exact):
    y1, d1 = jax.jit(_fwd_bwd(ours))(x, g)
    y2, d2 = jax.jit(_fwd_bwd(ref))(x, g)
    if exact:
        np.testing.assert_array_equal(np.asarray(y1), np.asarray(y2), err_msg=f"{name} output")
        np.testing.assert_array_equal(np.asarray(d1), np.asarray(d2), err_msg=f"{name} grad")
    else:
        # Sums may be added in another order: equal to float32 rounding.
        np.testing.assert_allclose(y1, y2, rtol=2e-6, atol=2e-6, err_msg=f"{name} output")
        np.testing.assert_allclose(d1, d2, rtol=2e-6, atol=2e-6, err_msg=f"{name} grad")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, few repeats")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--ops", default="", help="comma-separated substrings of op names")
    args = parser.parse_args(argv)

    shapes = [(16, 28, 28, 32)] if args.quick else SHAPES
    repeats = 5 if args.quick else args.repeats
    wanted = [s.strip() for s in args.ops.split(",") if s.strip()]
    key = jax.random.key(0)
    rows = []
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# {environment()}, flax {flax.__version__}")
    print(f"# command: {' '.join(['python -m benchmarks.bench_pooling', *sys.argv[1:]])}")
    for name, (ours, ref, exact) in _ops().items():
        if wanted and not any(w in name for w in wanted):
            continue
        for shape in shapes:
            kx, kg, key = jax.random.split(key, 3)
            x = jax.random.normal(kx, shape, jnp.float32)
            y_shape = jax.eval_shape(ours, x).shape
            g = jax.random.normal(kg, y_shape, jnp.float32)
            _check_same(name, ours, ref, x, g, exact)
            t = compare({"convjax": _fwd_bwd(ours), "flax": _fwd_bwd(ref)}, (x, g), repeats=repeats)
            rows.append(
                {
                    "op (fwd+bwd)": name,
                    "shape NHWC": "x".join(map(str, shape)),
                    "convjax ms": t["convjax"].ms(),
                    "flax reduce_window ms": t["flax"].ms(),
                    "speedup": speedup(t["flax"], t["convjax"]),
                    "compile s (ours/flax)": (
                        f"{t['convjax'].compile_s:.2f}/{t['flax'].compile_s:.2f}"
                    ),
                }
            )
            print(f"  done {name} {shape}: {rows[-1]['speedup']:.2f}x", file=sys.stderr, flush=True)
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
