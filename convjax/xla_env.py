"""Process set-up before JAX starts: one XLA CPU device per core.

Why: XLA's CPU backend runs the convolutions of a small CNN on about one core. Measured on the
2-core machine (trainer step of ``configs/default.py``, batch 128): 26.5 s for 100 steps with
both cores against 28.6 s pinned to one (``taskset -c 0``), i.e. the second core adds 8%. With
``--xla_force_host_platform_device_count=2`` and the batch split over the two devices
(``config.data_parallel``) the same step ran 1.48-1.54x faster (``benchmarks/harness.py``,
section ``train``). XLA reads the flag once, when its CPU backend starts, so a script must ask
before its first JAX computation; ``experiments/*.py`` call :func:`use_cpu_cores` first thing.

Only the device count is set here. XLA's experimental CPU library flags
(``--xla_cpu_experimental_ynn_fusion_type``, ``--xla_cpu_experimental_xnn_fusion_type``,
``--xla_cpu_experimental_onednn_custom_call``) were measured in fresh processes on the textbook
CNN's train step and its convolutions (``benchmarks/bench_xla_flags.py``,
``benchmarks/results/xla_flags.md``): none won beyond the noise, and jaxlib 0.10.2 already
hands convolutions and dots to YNNPACK by default (turning that off cost 15-22%), so none is
set.

This module imports nothing from JAX (``convjax/__init__.py`` imports no submodules), so
``import convjax.xla_env`` is safe before JAX is configured.
"""

from __future__ import annotations

import os
import sys
import warnings

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
#: Environment variable that overrides the device count (``1`` turns the split off).
ENV_VAR = "CONVJAX_CPU_DEVICES"


def cpu_core_count() -> int:
    """Cores this process may run on (its CPU affinity, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # private API moved: assume the worst
        return True


def use_cpu_cores(count: int | None = None) -> int | None:
    """Ask XLA for ``count`` CPU devices (default: ``$CONVJAX_CPU_DEVICES`` or one per core).

    Appends ``--xla_force_host_platform_device_count=count`` to ``XLA_FLAGS``. Leaves the
    environment alone (and returns None) when ``XLA_FLAGS`` already sets a device count (the
    user's choice wins), when ``count`` is 1, or when JAX's backend has already started (a
    warning says so: the flag would be ignored). Only the CPU platform is affected; GPU and
    TPU devices are not.

    Returns:
      The device count asked for, or None when nothing was changed.

    Raises:
      ValueError: ``count`` (or ``$CONVJAX_CPU_DEVICES``) is not a positive int.
    """
    if count is None:
        env = os.environ.get(ENV_VAR, "").strip()
        try:
            count = int(env) if env else cpu_core_count()
        except ValueError:
            raise ValueError(
                f"{ENV_VAR}={env!r} is not an int; set it to the number of CPU devices (1 turns "
                "the batch split off) or unset it for one per core."
            ) from None
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"use_cpu_cores: count={count!r} must be an int >= 1.")
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICE_COUNT_FLAG in flags or count == 1:
        return None
    if _backend_started():
        warnings.warn(
            "convjax.xla_env.use_cpu_cores: JAX's backend has already started, so XLA_FLAGS "
            "can no longer change the CPU device count; call it before the first JAX "
            "computation.",
            stacklevel=2,
        )
        return None
    os.environ["XLA_FLAGS"] = f"{flags} {DEVICE_COUNT_FLAG}={count}".strip()
    return count
