"""Measure which convolution implementation is fastest on this machine; hand the choice back.

``convjax.functional.conv`` never measures, caches or reads files: its ``impl`` argument is
the whole decision (default ``"lax"``). This module does the measuring, outside any trace, and
returns a name to pass as ``impl``; a :class:`ConvTuningCache` keeps choices in an object the
caller owns and saves where the caller says.

Why it exists: which formulation of a convolution (and of its gradients) XLA runs fastest
depends on the CPU and the library XLA calls there. ``impl="matmul_grad"`` (the kernel
gradient as per-tap matrix multiplies) was 4.9x faster than XLA's kernel gradient on an
AVX2-only EPYC and 4x slower on an AVX-512 one, with the same jaxlib
(``benchmarks/results/conv_grad.md``).

Example::

    from convjax import tuning
    import convjax.functional as cf

    best = tuning.choose_conv_impl((128, 28, 28, 32), (3, 3, 32, 32), padding="SAME")
    y = cf.conv(x, k, padding="SAME", impl=best.impl)

    cache = tuning.ConvTuningCache.load("tuned.json")   # empty if the file is missing
    impl = cache.choose((128, 28, 28, 32), (3, 3, 32, 32), padding="SAME")
    cache.save("tuned.json")

Every candidate is first compared with ``impl="lax"`` on the key's own shapes (output and,
for the ``"train"`` objective, both gradients) and only a candidate within float tolerance can
be chosen; one that raises (unsupported options, a compile failure) is skipped with the reason
recorded. Times are medians of interleaved rounds (one call of each candidate per round), so
load from other processes hits all candidates alike.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import convjax.functional as cf

__all__ = [
    "OBJECTIVES",
    "ConvTuningCache",
    "TuningResult",
    "choose_conv_impl",
    "conv_tuning_key",
    "matches_reference",
    "time_candidates",
]

#: ``"train"``: forward plus the gradients w.r.t. input and kernel (one conv's cost in a train
#: step); ``"first_layer"``: forward plus the kernel gradient (a network's first layer, whose
#: input needs no gradient); ``"forward"``: inference.
OBJECTIVES = ("train", "first_layer", "forward")


@dataclasses.dataclass(frozen=True)
class TuningResult:
    """What a measurement found.

    Attributes:
      impl: the fastest candidate whose numbers matched the reference (``"lax"`` if none).
      seconds: candidate -> median seconds per call, for every candidate that was timed.
      skipped: candidate -> why it was not timed (unsupported, failed, wrong numbers).
    """

    impl: str
    seconds: Mapping[str, float]
    skipped: Mapping[str, str]


def matches_reference(reference, candidate, dtype) -> bool:
    """Whether every array of ``candidate`` is within float tolerance of ``reference``.

    Tolerance, relative to the largest magnitude of each reference array: 1e-10 in float64,
    1e-4 in float32, 5e-2 in 16-bit floats. Two correct formulations sum the same products
    in another order; in float32 their kernel gradients differed by 5.5e-6 of the largest
    magnitude for a sum over 100,352 positions (x (128, 28, 28, 32)), so 1e-4 leaves a
    margin of about 20 while any wrong formula (a missing tap, a misplaced stride) is off
    by O(1). bfloat16 keeps 8 significant bits (eps 7.8e-3), hence 5e-2.
    """
    bits = jnp.finfo(dtype).bits if jnp.issubdtype(dtype, jnp.floating) else 64
    tol = 5e-2 if bits <= 16 else 1e-4 if bits == 32 else 1e-10
    for ref, out in zip(jax.tree.leaves(reference), jax.tree.leaves(candidate), strict=True):
        ref = np.asarray(ref, np.float64)
        out = np.asarray(out, np.float64)
        if ref.shape != out.shape or not np.all(np.isfinite(out)):
            return False
        scale = max(float(np.max(np.abs(ref))), 1.0) if ref.size else 1.0
        if not np.all(np.abs(out - ref) <= tol * scale):
            return False
    return True


def _median_interleaved(compiled: Mapping[str, Callable], args, repeats: int) -> dict:
    samples = {name: [] for name in compiled}
    names = list(compiled)
    for r in range(repeats):
        shift = r % len(names)  # each round starts one candidate later: no fixed position
        for name in names[shift:] + names[:shift]:
            fn = compiled[name]
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(s) for name, s in samples.items()}


def time_candidates(
    functions: Mapping[str, Callable],
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    reference: str,
    dtype="float32",
    objective: str = "train",
    repeats: int = 5,
    timer: Callable | None = None,
    seed: int = 0,
) -> TuningResult:
    """Time functions ``f(x, kernel) -> y`` of the same convolution; choose the fastest correct.

    Args:
      functions: name -> ``f(x, kernel)``; must contain ``reference``.
      x_shape, kernel_shape: shapes of the random inputs (fixed seed, NumPy, so nothing is
        traced while measuring).
      reference: the name whose numbers every other candidate must match
        (:func:`matches_reference`); it is also the fallback choice.
      dtype: input dtype.
      objective: one of :data:`OBJECTIVES`.
      repeats: timed rounds (median taken), candidates interleaved within a round.
      timer: ``timer(compiled: dict[name, fn], args, repeats) -> dict[name, seconds]`` to
        replace the wall-clock timer (tests use a fake one).
      seed: seed of the random inputs.

    Returns:
      A :class:`TuningResult`.

    Raises:
      ValueError: ``objective`` unknown, ``repeats`` < 1, ``reference`` not in
        ``functions``, or the reference itself fails.
    """
    if objective not in OBJECTIVES:
        raise ValueError(
            f"objective={objective!r} is not one of {', '.join(map(repr, OBJECTIVES))}."
        )
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats={repeats!r} must be an int >= 1 (timed rounds per candidate).")
    if timer is not None and not callable(timer):
        raise ValueError(
            f"timer={timer!r} must be callable as timer(compiled, args, repeats), or None for "
            f"the wall clock."
        )
    if reference not in functions:
        raise ValueError(
            f"reference={reference!r} is not among the candidates {list(functions)}; add it."
        )
    dtype = jnp.dtype(dtype)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(tuple(x_shape)).astype(dtype)
    fan_in = math.prod(kernel_shape[:-1]) or 1
    k = (rng.standard_normal(tuple(kernel_shape)) / np.sqrt(fan_in)).astype(dtype)
    try:
        y_shape = jax.eval_shape(functions[reference], x, k)
    except Exception as err:  # noqa: BLE001  re-raised as the reference's failure
        raise ValueError(f"reference={reference!r} failed: {err}") from err
    g = rng.standard_normal(y_shape.shape).astype(y_shape.dtype)
    args = (x, k, g)

    def program(f):
        if objective == "forward":
            return lambda x, k, g: f(x, k)
        if objective == "first_layer":

            def fwd_kernel_grad(x, k, g):
                y, pullback = jax.vjp(lambda k_: f(x, k_), k)
                return (y, *pullback(g))

            return fwd_kernel_grad

        def fwd_bwd(x, k, g):
            y, pullback = jax.vjp(f, x, k)
            return (y, *pullback(g))

        return fwd_bwd

    compiled, skipped, outputs = {}, {}, {}
    # The reference first: its output is what the others must match.
    for name in [reference] + [n for n in functions if n != reference]:
        try:
            fn = jax.jit(program(functions[name])).lower(*args).compile()
            outputs[name] = jax.block_until_ready(fn(*args))
        except Exception as err:  # noqa: BLE001  a failing candidate is skipped, not fatal
            if name == reference:
                raise ValueError(f"reference={reference!r} failed: {err}") from err
            skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"
            continue
        if name != reference and not matches_reference(outputs[reference], outputs[name], dtype):
            skipped[name] = f"numbers differ from {reference!r} beyond float tolerance"
            continue
        compiled[name] = fn
    seconds = (timer or _median_interleaved)(compiled, args, repeats)
    best = min(compiled, key=lambda n: (seconds[n], n != reference))
    return TuningResult(impl=best, seconds=dict(seconds), skipped=skipped)


def _conv_kwargs(kwargs) -> dict:
    allowed = {
        "stride",
        "padding",
        "dilation",
        "groups",
        "padding_mode",
        "channels_last",
        "flip",
        "precision",
        "preferred_element_type",
    }
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(
            f"{unknown[0]}={kwargs[unknown[0]]!r} is not a convolution option the tuner "
            f"measures; pass only {', '.join(sorted(allowed))}."
        )
    return dict(kwargs)


def choose_conv_impl(
    x_shape: Sequence[int],
    kernel_shape: Sequence[int],
    *,
    dtype="float32",
    candidates: Sequence[str] | None = None,
    objective: str = "train",
    repeats: int = 5,
    timer: Callable | None = None,
    **conv_kwargs,
) -> TuningResult:
    """Measure ``convjax.functional.conv`` with each ``impl`` on this machine; return the best.

    Args:
      x_shape: the (batched or unbatched) input shape, as ``conv`` takes it.
      kernel_shape: HWIO kernel shape.
      dtype: input dtype.
      candidates: ``impl`` names (default: every name of ``convjax.functional.CONV_IMPLS``);
        ``"lax"`` is always added, as the reference and the fallback.
      objective, repeats, timer: as for :func:`time_candidates`.
      **conv_kwargs: ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``,
        ``channels_last``, ``flip``, ``precision``, ``preferred_element_type``.

    Returns:
      A :class:`TuningResult`; pass ``result.impl`` as ``conv(..., impl=result.impl)``.
    """
    conv_kwargs = _conv_kwargs(conv_kwargs)
    if isinstance(candidates, str):
        raise ValueError(
            f"candidates={candidates!r} must be a sequence of impl names, e.g. "
            f"({candidates!r}, 'matmul_grad'), or None for all of them."
        )
    names = list(cf.CONV_IMPLS) if candidates is None else list(candidates)
    for name in names:
        if name not in cf.CONV_IMPLS:
            raise ValueError(
                f"candidates contains {name!r}, not a convolution implementation; use names "
                f"from {', '.join(map(repr, cf.CONV_IMPLS))}."
            )
    if "lax" not in names:
        names.insert(0, "lax")
    functions = {
        name: (lambda x, k, name=name: cf.conv(x, k, impl=name, **conv_kwargs)) for name in names
    }
    return time_candidates(
        functions,
        x_shape,
        kernel_shape,
        reference="lax",
        dtype=dtype,
        objective=objective,
        repeats=repeats,
        timer=timer,
    )


def _device() -> tuple[str, str]:
    device = jax.devices()[0]
    return jax.default_backend(), str(getattr(device, "device_kind", device.platform))


def conv_tuning_key(
    x_shape, kernel_shape, *, dtype="float32", objective: str = "train", **conv_kwargs
) -> str:
    """The key a :class:`ConvTuningCache` files a choice under (a JSON string).

    It holds everything the choice depends on: shapes, dtype, convolution options, objective,
    and the backend and device kind of ``jax.devices()[0]``.
    """
    conv_kwargs = _conv_kwargs(conv_kwargs)
    backend, kind = _device()
    options = {
        k: v if isinstance(v, (int, float, bool)) else repr(v) for k, v in conv_kwargs.items()
    }
    return json.dumps(
        {
            "x": list(x_shape),
            "kernel": list(kernel_shape),
            "dtype": jnp.dtype(dtype).name,
            "options": options,
            "objective": objective,
            "backend": backend,
            "device_kind": kind,
        },
        sort_keys=True,
    )


class ConvTuningCache:
    """Choices by key, owned by the caller: measured on a miss, saved only when asked.

    Args:
      entries: key (:func:`conv_tuning_key`) -> impl name, e.g. from a previous :meth:`save`.
      candidates, repeats, timer: passed to :func:`choose_conv_impl` on a miss.
    """

    def __init__(
        self,
        entries: Mapping[str, str] | None = None,
        *,
        candidates: Sequence[str] | None = None,
        repeats: int = 5,
        timer: Callable | None = None,
    ):
        self.entries: dict[str, str] = {}
        for key, impl in (entries or {}).items():
            if impl not in cf.CONV_IMPLS:
                raise ValueError(
                    f"entries[{key!r}]={impl!r} is not a convolution implementation; use names "
                    f"from {', '.join(map(repr, cf.CONV_IMPLS))}."
                )
            self.entries[key] = impl
        self.candidates = candidates
        self.repeats = repeats
        self.timer = timer
        self.results: dict[str, TuningResult] = {}

    def choose(
        self, x_shape, kernel_shape, *, dtype="float32", objective: str = "train", **conv_kwargs
    ) -> str:
        """The impl name for this convolution: from the entries, or measured and stored."""
        key = conv_tuning_key(
            x_shape, kernel_shape, dtype=dtype, objective=objective, **conv_kwargs
        )
        if key not in self.entries:
            result = choose_conv_impl(
                x_shape,
                kernel_shape,
                dtype=dtype,
                candidates=self.candidates,
                objective=objective,
                repeats=self.repeats,
                timer=self.timer,
                **conv_kwargs,
            )
            self.results[key] = result
            self.entries[key] = result.impl
        return self.entries[key]

    def save(self, path: str | os.PathLike) -> None:
        """Write the entries as JSON to ``path`` (replaced atomically)."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(self.entries, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | os.PathLike, **kwargs) -> ConvTuningCache:
        """A cache with the entries saved at ``path`` (none if the file does not exist).

        Raises:
          ValueError: the file is not a JSON object of impl names.
        """
        try:
            with open(path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return cls(**kwargs)
        except ValueError as err:
            raise ValueError(
                f"path={os.fspath(path)!r} is not a JSON file of tuning entries ({err}); "
                f"delete it or pass another path."
            ) from None
        if not isinstance(data, dict):
            raise ValueError(
                f"path={os.fspath(path)!r} holds a JSON {type(data).__name__}, not an object "
                f"of key -> impl name; delete it or pass another path."
            )
        return cls(data, **kwargs)
