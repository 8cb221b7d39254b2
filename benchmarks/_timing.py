"""Small shared timing helper for convjax benchmarks.

What it does, and why:
  * compiles each function once with ``jax.jit(...).lower(...).compile()`` and reports that
    time apart, so compile cost never leaks into the steady-state numbers;
  * warms each compiled function up, then times ``repeats`` rounds, each round calling the
    candidates one after another (interleaved) so that load from other processes on a
    shared machine hits all of them alike; ratios from one run are what to compare;
  * reports the median (robust to the odd slow round) and the minimum per call;
  * prints a Markdown table with each candidate's speed relative to a baseline.

Usage::

    from benchmarks._timing import compare, format_table
    timings = compare({"ours": f, "flax": g}, args, repeats=30)
    print(format_table([row_dict, ...], columns=[...]))
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence

import jax

__all__ = ["Timing", "compare", "speedup", "format_table", "environment"]


@dataclasses.dataclass(frozen=True)
class Timing:
    """Timing of one compiled function (seconds)."""

    name: str
    compile_s: float
    median_s: float
    min_s: float
    repeats: int
    number: int

    def ms(self) -> float:
        return self.median_s * 1e3


def _block(out):
    return jax.block_until_ready(out)


def _calls_per_round(fn, args, target_s: float) -> int:
    """How many calls make one round last about ``target_s`` (at least 1)."""
    start = time.perf_counter()
    _block(fn(*args))
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(target_s / once))


def compare(
    fns: dict[str, Callable],
    args: Sequence,
    *,
    repeats: int = 20,
    warmup: int = 2,
    round_s: float = 0.05,
) -> dict[str, Timing]:
    """Compile, warm up and time several functions of the same arguments, interleaved.

    Args:
      fns: name -> function (jitted here; pass plain functions).
      args: positional arguments, the same for every function.
      repeats: timed rounds; the median over rounds is reported.
      warmup: untimed calls per function after compiling.
      round_s: target length of one round per function; short calls are repeated
        ``number`` times within a round so timer resolution does not matter.

    Returns:
      name -> :class:`Timing` with per-call seconds.
    """
    compiled, compile_s, number = {}, {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        compiled[name] = jax.jit(fn).lower(*args).compile()
        compile_s[name] = time.perf_counter() - start
        for _ in range(warmup):
            _block(compiled[name](*args))
        number[name] = _calls_per_round(compiled[name], args, round_s)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in compiled.items():
            start = time.perf_counter()
            for _ in range(number[name]):
                out = fn(*args)
            _block(out)
            samples[name].append((time.perf_counter() - start) / number[name])
    return {
        name: Timing(
            name=name,
            compile_s=compile_s[name],
            median_s=statistics.median(samples[name]),
            min_s=min(samples[name]),
            repeats=repeats,
            number=number[name],
        )
        for name in fns
    }


def speedup(baseline: Timing, candidate: Timing) -> float:
    """How many times faster ``candidate`` is than ``baseline`` (median over median)."""
    return baseline.median_s / candidate.median_s


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Render rows (dicts) as a Markdown table; floats get 3 significant decimals."""
    if not rows:
        return ""
    columns = list(columns or rows[0].keys())

    def cell(v):
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) for i, c in enumerate(columns)]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(v.ljust(w) for v, w in zip(b, widths)) + " |" for b in body]
    return "\n".join(lines)


def environment() -> str:
    """One line naming the versions and the device, for result files."""
    import platform

    import jaxlib

    parts = [
        f"python {platform.python_version()}",
        f"jax {jax.__version__}",
        f"jaxlib {jaxlib.__version__}",
        f"backend {jax.default_backend()}",
        f"devices {jax.device_count()}",
        f"machine {platform.machine()}",
    ]
    try:
        import os

        parts.append(f"cpus {os.cpu_count()}")
    except Exception:  # pragma: no cover
        pass
    return ", ".join(parts)
