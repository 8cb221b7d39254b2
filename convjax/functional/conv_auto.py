"""``conv(..., impl="auto")``: the fastest correct implementation, chosen by measurement.

For each key ``(x shape, kernel shape, dtype, ConvSpec, backend, device kind, objective)``
the first call (at trace time, on static shapes) times every registered implementation
whose ``check`` accepts the key, on random inputs of those shapes, and keeps the fastest one
whose result (and, for the default ``"train"`` objective, whose gradients) match
``impl="lax"`` to float tolerance. The choice is cached in memory and in a JSON file
(``$CONVJAX_CACHE_DIR/conv_auto.json``, default ``~/.cache/convjax/conv_auto.json``), so a
later process with the same key traces straight to the chosen implementation. If nothing
can be measured (an error, no candidate passes), the choice is ``"lax"``.

Because every candidate is checked against ``"lax"`` on the key's own shapes before it can
be chosen, ``"auto"`` changes numbers at most by float re-association (the tolerance of
:func:`allclose_tolerance`), never by a different formula.

The choice is made when ``conv`` is traced; a function jitted earlier keeps the
implementation it was traced with until JAX retraces it (``jax.clear_caches()``).

Knobs (:func:`configure_auto`): the candidate list, the objective (``"train"``: forward plus
both gradients, the cost in a train step; ``"forward"``: inference), repeats, and an
injectable ``timer(name, fn, args) -> seconds`` (tests use a fake timer, so they never
depend on which implementation is really faster).
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from convjax.functional import conv_winograd  # noqa: F401  (registers "winograd")
from convjax.functional.conv_impls import (
    CONV_IMPLS,
    ConvImpl,
    ConvSpec,
    get_conv_impl,
    register_conv_impl,
)

__all__ = [
    "AUTO_IMPL",
    "auto_cache_path",
    "auto_choice",
    "auto_key",
    "clear_auto_cache",
    "configure_auto",
    "allclose_tolerance",
    "default_timer",
]

#: Implementations ``"auto"`` considers, in order of preference on ties. "direct" and "fft"
#: are left out by default: their compile times are long (one matmul per tap; FFTs) and on
#: 3x3 kernels they were never the fastest in benchmarks/harness.py; add them with
#: ``configure_auto(candidates=...)``.
DEFAULT_CANDIDATES = ("lax", "winograd", "im2col")
OBJECTIVES = ("train", "forward")


def default_timer(name: str, fn: Callable, args: Sequence, *, repeats: int = 5) -> float:
    """Median wall time (seconds) of a compiled ``fn(*args)`` over ``repeats`` calls.

    ``fn`` is already compiled and has been called once (warm-up); ``name`` is unused here
    and exists so a replacement timer can key on it.
    """
    del name
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


@dataclasses.dataclass
class _Options:
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    objective: str = "train"
    repeats: int = 5
    timer: Callable | None = None  # None: default_timer with ``repeats``
    use_disk: bool = True


_OPTIONS = _Options()
_MEMORY: dict[str, str] = {}


def configure_auto(
    *,
    candidates: Sequence[str] | None = None,
    objective: str | None = None,
    repeats: int | None = None,
    timer: Callable | None = None,
    use_disk: bool | None = None,
) -> dict:
    """Set how ``"auto"`` measures; arguments left as None keep their value.

    Args:
      candidates: implementation names to consider (``"lax"`` is always added: it is the
        reference and the fallback).
      objective: ``"train"`` (forward + gradients w.r.t. input and kernel) or ``"forward"``.
      repeats: timed calls per candidate for the default timer (median taken).
      timer: ``timer(name, compiled_fn, args) -> seconds``; pass :func:`default_timer` to
        restore real timing.
      use_disk: read and write the JSON cache file.

    Returns:
      The previous settings as a dict (pass it back as keyword arguments to restore them).

    Changing options does not clear cached choices; call :func:`clear_auto_cache`.
    """
    previous = dataclasses.asdict(_OPTIONS)
    if candidates is not None:
        if isinstance(candidates, str) or not all(isinstance(c, str) for c in candidates):
            raise ValueError(
                f"candidates={candidates!r} must be a sequence of implementation names, "
                f"e.g. ('lax', 'winograd')."
            )
        for c in candidates:
            if c == "auto":
                raise ValueError(
                    "candidates=... contains 'auto'; auto chooses among the other "
                    "implementations, so list concrete ones such as 'lax' or 'winograd'."
                )
            get_conv_impl(c)  # unknown names raise here, listing the choices
        names = tuple(candidates)
        _OPTIONS.candidates = names if "lax" in names else ("lax", *names)
    if objective is not None:
        if objective not in OBJECTIVES:
            raise ValueError(
                f"objective={objective!r} must be one of {OBJECTIVES}: 'train' times forward "
                f"plus gradients, 'forward' the forward pass only."
            )
        _OPTIONS.objective = objective
    if repeats is not None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats={repeats!r} must be an int >= 1 (timed calls per impl).")
        _OPTIONS.repeats = repeats
    if timer is not None:
        if not callable(timer):
            raise ValueError(
                f"timer={timer!r} must be callable as timer(name, fn, args) -> seconds."
            )
        _OPTIONS.timer = None if timer is default_timer else timer
    if use_disk is not None:
        _OPTIONS.use_disk = bool(use_disk)
    return previous


def auto_cache_path() -> str:
    """The JSON cache file: ``$CONVJAX_CACHE_DIR/conv_auto.json`` or under ``~/.cache/convjax``."""
    root = os.environ.get("CONVJAX_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "convjax"
    )
    return os.path.join(root, "conv_auto.json")


def clear_auto_cache(*, disk: bool = False) -> None:
    """Forget the in-memory choices (and delete the JSON file if ``disk``)."""
    _MEMORY.clear()
    if disk:
        try:
            os.remove(auto_cache_path())
        except FileNotFoundError:
            pass


def _device_kind() -> tuple[str, str]:
    device = jax.devices()[0]
    return jax.default_backend(), str(getattr(device, "device_kind", device.platform))


def auto_key(x_shape, kernel_shape, dtype, spec: ConvSpec, objective: str | None = None) -> str:
    """The cache key (a string, so it can be a JSON object key) of one measurement."""
    backend, kind = _device_kind()
    return json.dumps(
        {
            "x": list(x_shape),
            "kernel": list(kernel_shape),
            "dtype": jnp.dtype(dtype).name,
            "stride": list(spec.stride),
            "padding": [list(p) for p in spec.padding],
            "dilation": list(spec.dilation),
            "groups": spec.groups,
            "channels_last": spec.channels_last,
            "precision": str(spec.precision),
            "preferred_element_type": None
            if spec.preferred_element_type is None
            else jnp.dtype(spec.preferred_element_type).name,
            "backend": backend,
            "device_kind": kind,
            "objective": objective or _OPTIONS.objective,
        },
        sort_keys=True,
    )


def _read_disk() -> dict:
    try:
        with open(auto_cache_path()) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_disk(key: str, choice: str) -> None:
    # Merge with what other processes wrote meanwhile, then replace atomically.
    path = auto_cache_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = _read_disk()
        data[key] = choice
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home must not break convolution; the memory cache still works


def allclose_tolerance(dtype) -> tuple[float, float]:
    """``(rtol, atol)`` relative to the reference's largest magnitude, per dtype."""
    bits = jnp.finfo(dtype).bits if jnp.issubdtype(dtype, jnp.floating) else 64
    if bits <= 16:
        return 5e-2, 5e-2
    if bits == 32:
        return 1e-4, 1e-4
    return 1e-10, 1e-10


def _close(ref, out, dtype) -> bool:
    ref = np.asarray(ref, np.float64)
    out = np.asarray(out, np.float64)
    if ref.shape != out.shape or not np.all(np.isfinite(out)):
        return False
    rtol, atol = allclose_tolerance(dtype)
    scale = max(float(np.max(np.abs(ref))), 1.0) if ref.size else 1.0
    return bool(np.all(np.abs(out - ref) <= atol * scale + rtol * np.abs(ref)))


def _program(name: str, spec: ConvSpec, objective: str):
    apply = get_conv_impl(name).apply
    if objective == "forward":
        return lambda x, k, g: apply(x, k, spec)

    def fwd_bwd(x, k, g):
        # Forward plus both gradients: what one conv costs in a train step.
        y, vjp = jax.vjp(lambda x, k: apply(x, k, spec), x, k)
        return (y, *vjp(g.astype(y.dtype)))

    return fwd_bwd


def _measure(x_shape, kernel_shape, dtype, spec: ConvSpec) -> str:
    objective = _OPTIONS.objective
    timer = _OPTIONS.timer or (
        lambda name, fn, args: default_timer(name, fn, args, repeats=_OPTIONS.repeats)
    )
    # Fixed-seed NumPy inputs: deterministic, and NumPy keeps them out of any trace.
    rng = np.random.default_rng(0)
    x = rng.standard_normal(x_shape).astype(dtype)
    k = (rng.standard_normal(kernel_shape) / np.sqrt(np.prod(kernel_shape[:-1]))).astype(dtype)
    abstract_x = jax.ShapeDtypeStruct(x_shape, dtype)
    abstract_k = jax.ShapeDtypeStruct(kernel_shape, dtype)
    with jax.ensure_compile_time_eval():  # run now, even when called while tracing
        y_shape = jax.eval_shape(lambda a, b: get_conv_impl("lax").apply(a, b, spec), x, k)
        g = rng.standard_normal(y_shape.shape).astype(y_shape.dtype)
        args = (x, k, g)
        reference = None
        best, best_time = "lax", float("inf")
        for name in _OPTIONS.candidates:
            if name not in CONV_IMPLS or name == "auto":
                continue
            try:
                get_conv_impl(name).check(abstract_x, abstract_k, spec)
            except ValueError:
                continue  # the implementation does not support this key
            try:
                compiled = jax.jit(_program(name, spec, objective)).lower(*args).compile()
                out = jax.block_until_ready(compiled(*args))
            except Exception:  # noqa: BLE001  a failing candidate is skipped, not fatal
                continue
            if name == "lax":
                reference = out
            elif reference is None or not all(
                _close(r, o, dtype)
                for r, o in zip(jax.tree.leaves(reference), jax.tree.leaves(out))
            ):
                continue  # wrong numbers: never chosen, whatever its speed
            seconds = float(timer(name, compiled, args))
            if seconds < best_time:
                best, best_time = name, seconds
    return best


def auto_choice(x_shape, kernel_shape, dtype, spec: ConvSpec) -> str:
    """The implementation ``"auto"`` uses for a batched input of ``x_shape`` (measured once).

    Args:
      x_shape: batched input shape in ``spec``'s layout (after any non-zero padding mode).
      kernel_shape: HWIO kernel shape.
      dtype: the common dtype of input and kernel.
      spec: the :class:`ConvSpec`.

    Returns:
      A key of :data:`CONV_IMPLS` other than ``"auto"`` (``"lax"`` if nothing else wins).
    """
    key = auto_key(x_shape, kernel_shape, dtype, spec)
    choice = _MEMORY.get(key)
    if choice is None and _OPTIONS.use_disk:
        choice = _read_disk().get(key)
        if choice not in CONV_IMPLS or choice == "auto":
            choice = None  # a stale file naming an impl this process lacks
    if choice is None:
        try:
            choice = _measure(tuple(x_shape), tuple(kernel_shape), jnp.dtype(dtype), spec)
        except Exception:  # noqa: BLE001  measuring must never break a convolution
            choice = "lax"
        if _OPTIONS.use_disk:
            _write_disk(key, choice)
    _MEMORY[key] = choice
    return choice


def _auto_check(x, kernel, spec: ConvSpec) -> None:
    # "lax" supports every option, and auto falls back to it.
    del x, kernel, spec


def _auto_apply(x, kernel, spec: ConvSpec):
    choice = auto_choice(x.shape, kernel.shape, x.dtype, spec)
    return get_conv_impl(choice).apply(x, kernel, spec)


#: The registered table entry (``conv(..., impl="auto")``).
AUTO_IMPL = register_conv_impl(
    ConvImpl("auto", _auto_apply, _auto_check, "fastest correct impl by cached measurement"),
    overwrite=True,
)
