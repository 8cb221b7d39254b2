"""Gradients checked against finite differences: :func:`gradcheck`.

What it compares
----------------
``fn`` maps a pytree of arguments to a pytree of outputs. Every checked input leaf is
flattened into one vector ``x`` (n entries) and every floating output leaf into one vector
``f(x)`` (m entries), so the Jacobian ``J`` is ``m x n``. A *probe* is an input direction
``v``: in ``mode="full"`` every coordinate basis vector ``e_i`` (element by element), in
``mode="directional"`` ``num_directions`` random Gaussian directions. For each probe:

* numeric: ``D = d/dt f(x + t v)`` by central differences at steps ``h`` and ``h/2``,
  combined by Richardson extrapolation, ``D = (4 c_{h/2} - c_h) / 3`` (error O(h^4));
* forward mode: ``jvp(f, x, v)`` against ``D``, element by element over the outputs;
* reverse mode: ``vjp(f, x)(q) . v`` against ``q . D`` for output cotangents ``q``: every
  output basis vector when ``m <= max_output_size`` (the full Jacobian), otherwise
  ``num_output_projections`` random Gaussian cotangents.

A value passes when ``|analytic - numeric| <= atol + rtol * |numeric| + 3 * noise``, where
``noise = 8 * eps_machine * sum|f| / h`` (the sum over the five evaluations) bounds the
rounding error of the differences: it grows with the size of the function's values, not
with the derivative, so a loss of 1e6 is checked less tightly than a loss of 1.

Kinks
-----
At a point where ``fn`` is not differentiable (ReLU at 0, tied maxima, ``abs``, clipping)
the central difference is meaningless. With ``F(t) = <q, f(x + t v)>`` the one-sided
differences disagree there: ``fwd - bwd = (F(h) - 2F(0) + F(-h)) / h``. For a smooth
function this is ``h F''``, so it halves when ``h`` halves; a kink within a step of ``x``
makes it jump by a step-independent amount instead. A compared value whose
``|d_{h/2} - d_h / 2|`` exceeds the tolerance is a *kink*: it is reported in
``report.kinks`` (with both one-sided values) instead of being compared with the central
difference. It still fails if the analytic value is not between the two one-sided values
(a sign error at a kink is still an error); ``kinks="fail"`` fails every kink. NaN or inf
on either side always fails.

Precision
---------
By default every floating leaf of ``args`` is cast to float64 and the check runs inside
``jax.enable_x64(True)``, a context manager that restores the caller's setting afterwards:
the global ``jax_enable_x64`` flag is never changed. Arrays that ``fn`` closes over keep
their dtype; pass them as (unchecked) arguments to have them cast too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["gradcheck", "GradcheckError", "GradcheckReport", "Mismatch", "default_tolerances"]

_MODES = ("auto", "full", "directional")
_ADS = ("reverse", "forward", "both")
_KINKS = ("report", "fail")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One compared value: a failure, a kink, or the worst passing value.

    Attributes:
      order: 1 for the gradient, 2 for the gradient of the gradient.
      ad: ``"reverse"`` or ``"forward"``.
      path: input leaf path (``"args[0]['kernel']"``), or ``"direction k"``.
      index: index inside that leaf (``()`` for a scalar or a direction).
      output: which output value: ``"out['loss'][0, 2]"`` or ``"output projection j"``.
      analytic, numeric: the two derivative values.
      abs_err, rel_err: ``|analytic - numeric|`` and that divided by ``|numeric|``.
      allowed: the tolerance this value had to meet.
      forward, backward: one-sided differences (at step h/2); they differ at a kink.
      at_kink: the value sits on a kink. It fails only if ``analytic`` is not between the
        one-sided values (or with ``kinks="fail"``).
    """

    order: int
    ad: str
    path: str
    index: tuple
    output: str
    analytic: float
    numeric: float
    abs_err: float
    rel_err: float
    allowed: float
    forward: float
    backward: float
    at_kink: bool = False

    def describe(self) -> str:
        where = self.path if not self.index else f"{self.path} index {self.index}"
        text = (
            f"{where} -> {self.output} ({self.ad} mode, order {self.order}): "
            f"analytic={self.analytic:.10g}, numeric={self.numeric:.10g}, "
            f"abs err={self.abs_err:.3g}, rel err={self.rel_err:.3g} "
            f"(allowed abs err {self.allowed:.3g})"
        )
        if self.at_kink:
            text += (
                f"; at a kink, one-sided forward={self.forward:.6g}, backward={self.backward:.6g}"
            )
        return text


@dataclasses.dataclass
class GradcheckReport:
    """What :func:`gradcheck` compared and found.

    Attributes:
      passed: no failures (kinks do not count unless ``kinks="fail"``).
      dtype: the dtype the check ran in.
      mode: ``"full"`` or ``"directional"`` (``"auto"`` resolved).
      ad: the AD modes checked.
      orders: the derivative orders checked (``(1,)`` or ``(1, 2)``).
      step: the base finite-difference step ``h``.
      rtol, atol: tolerances used.
      leaves: paths of the checked input leaves and their shapes.
      num_inputs, num_outputs: ``n`` and ``m`` of the flattened Jacobian.
      num_probes: input directions per order.
      num_compared: values compared (all orders and AD modes).
      max_abs_err, max_rel_err: over compared values that are not kinks.
      worst: the value closest to (or furthest past) its tolerance.
      num_failed: how many compared values are outside tolerance.
      failures: values outside tolerance, worst first (the 50 worst per order and AD mode
        when there are more; ``num_failed`` counts them all).
      kinks: values at non-differentiable points, reported separately.
      notes: what was skipped and why (forward mode of a ``custom_vjp`` function).
    """

    passed: bool
    dtype: str
    mode: str
    ad: tuple[str, ...]
    orders: tuple[int, ...]
    step: float
    rtol: float
    atol: float
    leaves: list[tuple[str, tuple]]
    num_inputs: int
    num_outputs: int
    num_probes: int
    num_compared: int = 0
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    worst: Mismatch | None = None
    num_failed: int = 0
    failures: list[Mismatch] = dataclasses.field(default_factory=list)
    kinks: list[Mismatch] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)

    def __str__(self) -> str:
        status = "passed" if self.passed else f"FAILED ({self.num_failed} values)"
        lines = [
            f"gradcheck {status}: {self.num_compared} values compared in {self.dtype}, "
            f"mode={self.mode}, ad={'+'.join(self.ad)}, orders={self.orders}, "
            f"step={self.step:.3g}, "
            f"rtol={self.rtol:g}, atol={self.atol:g}; n={self.num_inputs} inputs, "
            f"m={self.num_outputs} outputs; max abs err {self.max_abs_err:.3g}, "
            f"max rel err {self.max_rel_err:.3g}; {len(self.kinks)} kink value(s)."
        ]
        if self.worst is not None:
            lines.append(f"  worst: {self.worst.describe()}")
        for k in self.kinks[:5]:
            lines.append(
                f"  kink: {k.path} index {k.index} -> {k.output} ({k.ad}): one-sided "
                f"forward={k.forward:.6g}, backward={k.backward:.6g}, analytic={k.analytic:.6g}"
            )
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)


class GradcheckError(AssertionError):
    """Raised by :func:`gradcheck` when an analytic derivative disagrees with the numeric one.

    The message names the worst value (input path and index, output, analytic and numeric
    values, absolute and relative errors); ``.report`` holds the full
    :class:`GradcheckReport`.
    """

    def __init__(self, message: str, report: GradcheckReport):
        super().__init__(message)
        self.report = report


def default_tolerances(dtype) -> tuple[float, float, float]:
    """``(step, rtol, atol)`` used for a floating dtype.

    The step is ``eps_machine ** (1/3)`` (the classical optimum for central differences;
    Richardson extrapolation then leaves a truncation error far below rounding). Tolerances
    leave room for the rounding of the analytic side: float64 ``rtol=1e-6, atol=1e-9``;
    float32 ``1e-3, 1e-5``; 16-bit types ``5e-2, 1e-2``. (In 16-bit types the rounding
    term ``noise`` dominates: such a check only catches gross errors; use float64.)
    """
    dtype = jnp.dtype(dtype)
    eps = float(jnp.finfo(dtype).eps)
    step = eps ** (1.0 / 3.0)
    if dtype.itemsize >= 8:
        return step, 1e-6, 1e-9
    if dtype.itemsize == 4:
        return step, 1e-3, 1e-5
    return step, 5e-2, 1e-2


def _is_float_array(leaf) -> bool:
    return isinstance(leaf, (np.ndarray, jax.Array, np.generic)) and jnp.issubdtype(
        leaf.dtype, jnp.floating
    )


def _index_label(shape: tuple, flat: int) -> tuple:
    return tuple(int(i) for i in np.unravel_index(flat, shape)) if shape else ()


_COUNT_DEFAULTS = {"batch_size": 1024, "max_output_size": 64, "num_output_projections": 4}


def _check_options(mode, ad, order, kinks, num_directions, max_full_size, dtype):
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not known; use one of {', '.join(map(repr, _MODES))}.")
    if ad not in _ADS:
        raise ValueError(f"ad={ad!r} is not known; use one of {', '.join(map(repr, _ADS))}.")
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(
            f"order={order!r} is not supported; use 1 (gradient) or 2 (also the gradient "
            f"of the gradient)."
        )
    if kinks not in _KINKS:
        raise ValueError(f"kinks={kinks!r} is not known; use 'report' or 'fail'.")
    if (
        isinstance(num_directions, bool)
        or not isinstance(num_directions, int)
        or num_directions < 1
    ):
        raise ValueError(f"num_directions={num_directions!r} must be a positive int, e.g. 16.")
    if isinstance(max_full_size, bool) or not isinstance(max_full_size, int) or max_full_size < 0:
        raise ValueError(f"max_full_size={max_full_size!r} must be an int >= 0, e.g. 512.")
    if dtype is not None:
        try:
            dt = jnp.dtype(dtype)
        except TypeError as err:
            raise ValueError(
                f"dtype={dtype!r} is not a dtype; use 'float64' (default), 'float32' or None."
            ) from err
        if not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(
                f"dtype={dtype!r} must be a floating dtype; use 'float64' (default), "
                f"'float32', or None to keep the inputs' dtypes."
            )


def _select(args, argnums, wrt):
    """Paths and positions of the checked leaves of ``args``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(args)
    if argnums is None:
        argnums = tuple(range(len(args)))
    elif isinstance(argnums, int) and not isinstance(argnums, bool):
        argnums = (argnums,)
    for a in argnums:
        if isinstance(a, bool) or not isinstance(a, int) or not -len(args) <= a < len(args):
            raise ValueError(
                f"argnums={argnums!r} names argument {a!r} but fn gets {len(args)} positional "
                f"argument(s); use indices in [0, {len(args) - 1}]."
            )
    argnums = {a % len(args) for a in argnums}
    if wrt is not None and not callable(wrt):
        if isinstance(wrt, str):
            wrt = (wrt,)
        if not isinstance(wrt, Sequence) or not all(isinstance(w, str) for w in wrt):
            raise ValueError(
                f"wrt={wrt!r} must be None, a path substring, a list of them, or a callable "
                f"(path, leaf) -> bool; e.g. wrt=['kernel']."
            )
    selected, paths = [], []
    for pos, (path, leaf) in enumerate(flat):
        pstr = "args" + jax.tree_util.keystr(path)
        if path[0].idx not in argnums or not _is_float_array(leaf):
            continue
        if wrt is not None:
            keep = wrt(pstr, leaf) if callable(wrt) else any(w in pstr for w in wrt)
            if not keep:
                continue
        selected.append(pos)
        paths.append(pstr)
    if not selected:
        all_paths = ["args" + jax.tree_util.keystr(p) for p, leaf in flat if _is_float_array(leaf)]
        raise ValueError(
            f"no floating-point array leaf to check (argnums={sorted(argnums)}, wrt={wrt!r}); "
            f"floating leaves are: {all_paths or 'none'}. Pass the inputs as float arrays or "
            f"adjust argnums/wrt."
        )
    return flat, treedef, selected, paths


def _numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded by the bits of a ``jax.random`` key (typed or raw uint32)."""
    if not (hasattr(key, "dtype") and hasattr(key, "shape")) or isinstance(key, np.generic):
        raise ValueError(
            f"key={key!r} must be a jax.random key, e.g. key=jax.random.key(0) (not a seed int)."
        )
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    bits = np.asarray(key).ravel()
    if not jnp.issubdtype(bits.dtype, jnp.integer):
        raise ValueError(f"key={key!r} must be a jax.random key, e.g. jax.random.key(0).")
    return np.random.default_rng([int(b) for b in bits])


def _output_labeler(out_paths, out_shapes):
    """A function from a flat output position to its label (lazy: outputs can be large)."""
    offsets = np.cumsum([0] + [math.prod(shape) for shape in out_shapes])

    def label(o):
        j = int(np.searchsorted(offsets, o, side="right") - 1)
        shape = out_shapes[j]
        return (
            f"{out_paths[j]}{list(_index_label(shape, o - offsets[j]))}" if shape else out_paths[j]
        )

    return label


class _Problem:
    """``fn`` seen as a map ``R^n -> R^m`` between flat vectors."""

    def __init__(self, fn, args, flat, treedef, selected, cast):
        self.fn = fn
        self.treedef = treedef
        leaves = [leaf for _, leaf in flat]
        if cast is not None:
            leaves = [jnp.asarray(leaf, cast) if _is_float_array(leaf) else leaf for leaf in leaves]
        self.leaves = leaves
        self.selected = selected
        self.shapes = [tuple(np.shape(leaves[i])) for i in selected]
        self.sizes = [math.prod(s) for s in self.shapes]
        self.leaf_dtypes = [np.dtype(leaves[i].dtype) for i in selected]
        # The check runs in the least precise checked dtype (the numeric step and tolerance
        # must suit the noisiest leaf).
        self.dtype = max(self.leaf_dtypes, key=lambda d: float(jnp.finfo(d).eps))
        # NumPy, not jnp: eager jnp ops would each compile a tiny XLA program.
        self.x0 = np.concatenate(
            [np.ravel(np.asarray(leaves[i])).astype(self.dtype) for i in selected]
        )
        # eval_shape traces abstractly: the output structure without compiling anything.
        out = jax.eval_shape(
            lambda x: fn(*self._args(x)), jax.ShapeDtypeStruct(self.x0.shape, self.dtype)
        )
        out_flat, _ = jax.tree_util.tree_flatten_with_path(out)
        self.out_keep = [
            j for j, (_, o) in enumerate(out_flat) if jnp.issubdtype(o.dtype, jnp.floating)
        ]
        if not self.out_keep:
            raise ValueError(
                "fn returned no floating-point output to differentiate; return the loss or "
                "the op's output (integer outputs are ignored)."
            )
        self.out_paths = ["out" + jax.tree_util.keystr(out_flat[j][0]) for j in self.out_keep]
        self.out_shapes = [tuple(out_flat[j][1].shape) for j in self.out_keep]
        self.m = sum(math.prod(s) for s in self.out_shapes)

    def _args(self, x):
        leaves = list(self.leaves)
        offset = 0
        for pos, shape, size, dt in zip(self.selected, self.shapes, self.sizes, self.leaf_dtypes):
            leaves[pos] = jnp.reshape(x[offset : offset + size], shape).astype(dt)
            offset += size
        return jax.tree_util.tree_unflatten(self.treedef, leaves)

    def f(self, x):
        out = jax.tree_util.tree_leaves(self.fn(*self._args(x)))
        return jnp.concatenate([jnp.ravel(out[j]).astype(self.dtype) for j in self.out_keep])


def _evaluate(f, x0, X, V, Q, *, batch_size, vectorize, use_jit):
    """``f`` on every row of ``X``, ``jvp`` along every row of ``V`` (or None) and ``vjp``
    with every row of ``Q`` (or None), as float64 NumPy arrays.

    Vectorised, everything goes through one ``jit(vmap(...))`` program when it fits in
    ``batch_size`` rows (one compile instead of three); otherwise fixed-size padded chunks
    (one compile per kind, no recompiles for the last chunk).
    """
    x0 = jnp.asarray(x0)
    fwd = lambda v: jax.jvp(f, (x0,), (v,))[1]
    rev = lambda q: jax.vjp(f, x0)[1](q)[0]
    jobs = [(f, X), (fwd, V), (rev, Q)]
    if not vectorize:
        outs = []
        for fun, rows in jobs:
            if rows is None:
                outs.append(None)
                continue
            g = jax.jit(fun) if use_jit else fun
            outs.append(np.stack([np.asarray(g(jnp.asarray(r)), np.float64) for r in rows]))
        return outs
    if all(rows is None or rows.shape[0] <= batch_size for _, rows in jobs):

        def fused(*blocks):
            return [jax.vmap(fun)(b) for (fun, _), b in zip(jobs, blocks) if b is not None]

        present = [rows for _, rows in jobs]
        g = jax.jit(fused) if use_jit else fused
        res = iter(g(*[None if r is None else jnp.asarray(r) for r in present]))
        return [None if r is None else np.asarray(next(res), np.float64) for r in present]
    outs = []
    for fun, rows in jobs:
        if rows is None:
            outs.append(None)
            continue
        g = jax.vmap(fun)
        g = jax.jit(g) if use_jit else g
        p = rows.shape[0]
        pad = (-p) % batch_size if p > batch_size else 0
        if pad:
            rows = np.concatenate([rows, np.repeat(rows[:1], pad, axis=0)])
        step = min(batch_size, rows.shape[0])
        parts = [np.asarray(g(jnp.asarray(rows[i : i + step]))) for i in range(0, len(rows), step)]
        outs.append(np.concatenate(parts)[:p].astype(np.float64))
    return outs


def _compare(
    *,
    order,
    ad,
    analytic,
    numeric,
    fwd,
    bwd,
    d1,
    d2,
    noise,
    rtol,
    atol,
    probe_label,
    out_label,
    kinks_fail,
):
    """Classify compared values (arrays of shape (probes, outputs)); return records."""
    a = np.asarray(analytic, np.float64)
    n = np.asarray(numeric, np.float64)
    err = np.abs(a - n)
    allowed = atol + rtol * np.abs(n) + 3.0 * noise
    # Kink: the one-sided disagreement does not scale with the step (see module docstring).
    kink_allowed = 2.0 * (atol + rtol * np.maximum(np.abs(fwd), np.abs(bwd))) + 16.0 * noise
    kink = np.abs(d2 - d1 / 2.0) > kink_allowed
    # NaN or inf on either side is a failure, never a silent pass (NaN > x is False).
    finite = np.isfinite(a) & np.isfinite(n)
    kink &= finite
    smooth_fail = ~(err <= allowed)
    # At a kink the analytic value must still be a valid one-sided derivative: inside
    # [min(fwd, bwd), max(fwd, bwd)] up to a slack (5% of the jump absorbs the O(h)
    # curvature in the one-sided differences). A sign error at a kink lands outside.
    lo, hi = np.minimum(fwd, bwd), np.maximum(fwd, bwd)
    slack = kink_allowed + 0.05 * (hi - lo)
    outside = (a < lo - slack) | (a > hi + slack)
    if kinks_fail:
        fail = smooth_fail | kink
    else:
        fail = np.where(kink, outside, smooth_fail)
    ratio = np.where(kink & ~fail, -np.inf, err / allowed)
    ratio = np.where(finite, ratio, np.inf)

    def record(p, o):
        return Mismatch(
            order=order,
            ad=ad,
            path=probe_label(p)[0],
            index=probe_label(p)[1],
            output=out_label(o),
            analytic=float(a[p, o]),
            numeric=float(n[p, o]),
            abs_err=float(err[p, o]),
            rel_err=float(err[p, o] / abs(n[p, o])) if n[p, o] != 0 else math.inf,
            allowed=float(allowed[p, o]),
            forward=float(fwd[p, o]),
            backward=float(bwd[p, o]),
            at_kink=bool(kink[p, o]),
        )

    smooth = ~kink
    big = np.abs(n) > 10 * atol
    stats = {
        "compared": int(a.size),
        "max_abs": float(err[smooth].max()) if smooth.any() else 0.0,
        # Relative errors of values that are zero up to atol say nothing; leave them out.
        "max_rel": float((err / np.maximum(np.abs(n), 1e-300))[smooth & big].max())
        if (smooth & big).any()
        else 0.0,
    }
    worst = None
    if np.isfinite(ratio).any():
        p, o = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
        worst = (float(ratio[p, o]), record(p, o))
    fail_idx = np.argwhere(fail)
    fail_idx = sorted(fail_idx.tolist(), key=lambda po: -ratio[po[0], po[1]])
    failures = [record(p, o) for p, o in fail_idx[:50]]
    kink_idx = np.argwhere(kink)[:50]
    kink_records = [record(p, o) for p, o in kink_idx.tolist()]
    return stats, worst, failures, kink_records, int(fail.sum())


def _check_map(
    f,
    x0,
    m,
    *,
    order,
    mode,
    ad_modes,
    step,
    rtol,
    atol,
    num_directions,
    max_output_size,
    num_output_projections,
    rng,
    probe_names,
    out_names,
    kinks_fail,
    batch_size,
    vectorize,
    use_jit,
):
    n = x0.shape[0]
    dtype = x0.dtype
    eps_machine = float(jnp.finfo(dtype).eps)
    x64 = x0.astype(np.float64)
    if mode == "full":
        V = np.eye(n)
        # Per-coordinate step relative to the coordinate's size (a step of 6e-6 is lost in
        # the rounding of a value of 1e6).
        h = step * np.maximum(1.0, np.abs(x64))
        probe_label = probe_names
    else:
        V = rng.standard_normal((num_directions, n))
        V = V / np.sqrt(np.mean(V**2, axis=1, keepdims=True))  # unit RMS per coordinate
        h = np.full((num_directions,), step * max(1.0, float(np.sqrt(np.mean(x64**2)))))

        def probe_label(p):
            return (f"direction {p}", ())

    p = V.shape[0]
    hcol = h[:, None]
    shifts = np.concatenate(
        [np.zeros((1, n)), hcol * V, -hcol * V, 0.5 * hcol * V, -0.5 * hcol * V]
    )
    X = (x64[None, :] + shifts).astype(dtype)
    if "reverse" in ad_modes:
        if m <= max_output_size:
            Q = np.eye(m)
            q_label = out_names
        else:
            Q = rng.standard_normal((num_output_projections, m))

            def q_label(j):
                return f"output projection {j}"

    else:
        Q = None
    V_fwd = V.astype(dtype) if "forward" in ad_modes else None
    Q_in = None if Q is None else Q.astype(dtype)
    notes = []
    opts = dict(batch_size=batch_size, vectorize=vectorize, use_jit=use_jit)
    try:
        F, A_fwd, R = _evaluate(f, x0, X, V_fwd, Q_in, **opts)
    except TypeError as err:
        # A custom_vjp rule has no forward mode; with ad="both" the reverse check still
        # runs, with ad="forward" there is nothing left to check.
        if V_fwd is None or "custom_vjp" not in str(err) or Q is None:
            raise
        notes.append(f"order {order}: forward mode skipped ({str(err).splitlines()[0]})")
        F, A_fwd, R = _evaluate(f, x0, X, None, Q_in, **opts)

    F0, F = F[0], F[1:]
    Fp, Fm, Fph, Fmh = F[:p], F[p : 2 * p], F[2 * p : 3 * p], F[3 * p :]
    c1 = (Fp - Fm) / (2 * hcol)
    c2 = (Fph - Fmh) / hcol
    numeric = (4.0 * c2 - c1) / 3.0  # Richardson: the O(h^2) terms cancel
    fwd = (Fph - F0) / (0.5 * hcol)
    bwd = (F0 - Fmh) / (0.5 * hcol)
    d1 = (Fp - 2 * F0 + Fm) / hcol
    d2 = fwd - bwd
    scale = np.abs(Fp) + np.abs(Fm) + np.abs(Fph) + np.abs(Fmh) + np.abs(F0)[None, :]
    noise = 8.0 * eps_machine * scale / hcol

    common = dict(order=order, rtol=rtol, atol=atol, probe_label=probe_label, kinks_fail=kinks_fail)
    results = []
    if A_fwd is not None:
        results.append(
            _compare(
                ad="forward",
                analytic=A_fwd,
                numeric=numeric,
                fwd=fwd,
                bwd=bwd,
                d1=d1,
                d2=d2,
                noise=noise,
                out_label=out_names,
                **common,
            )
        )
    if R is not None:
        # R holds the rows q_j^T J; the analytic <q_j, J v_p> for every probe is V R^T.
        results.append(
            _compare(
                ad="reverse",
                # Full mode: V is the identity; R.T directly keeps a NaN in one column
                # from spreading to every probe through the product (0 * NaN = NaN).
                analytic=R.T if mode == "full" else V @ R.T,
                numeric=numeric @ Q.T,
                fwd=fwd @ Q.T,
                bwd=bwd @ Q.T,
                d1=d1 @ Q.T,
                d2=d2 @ Q.T,
                noise=noise @ np.abs(Q).T,
                out_label=q_label,
                **common,
            )
        )
    return results, p, notes


def gradcheck(
    fn: Callable,
    *args,
    argnums: int | Sequence[int] | None = None,
    wrt=None,
    dtype="float64",
    eps: float | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    mode: str = "auto",
    num_directions: int = 16,
    max_full_size: int = 512,
    max_output_size: int = 64,
    num_output_projections: int = 4,
    ad: str = "both",
    order: int = 1,
    kinks: str = "report",
    key=None,
    batch_size: int = 1024,
    vectorize: bool = True,
    jit: bool = True,
    raise_on_failure: bool = True,
) -> GradcheckReport:
    """Check ``fn``'s derivatives against finite differences.

    Args:
      fn: ``fn(*args)`` returns an array or a pytree of arrays (a loss, an op's output, a
        dict of metrics...). Integer outputs are ignored.
      *args: the inputs, any pytrees. Floating-point array leaves are checked; integer
        leaves (labels) and Python scalars are held fixed.
      argnums: which positional arguments to check (default: all).
      wrt: restrict to some leaves: a substring of the leaf path or a list of them
        (``wrt=["kernel"]`` matches ``"args[0]['conv1']['kernel']"``), or a callable
        ``(path, leaf) -> bool``.
      dtype: dtype of the check; every floating leaf of ``args`` is cast to it. Default
        ``"float64"`` (inside ``jax.enable_x64(True)``, the global config is untouched);
        ``None`` keeps the inputs' dtypes.
      eps: base finite-difference step ``h`` (default ``eps_machine ** (1/3)`` of the dtype);
        scaled by ``max(1, |x_i|)`` per coordinate.
      rtol, atol: tolerances (defaults from :func:`default_tolerances`).
      mode: ``"full"`` (every input coordinate), ``"directional"`` (``num_directions``
        random directions) or ``"auto"``: full when there are at most ``max_full_size``
        checked inputs.
      max_output_size: reverse mode checks the whole Jacobian (one cotangent per output)
        up to this many outputs, else ``num_output_projections`` random cotangents.
      ad: ``"reverse"`` (``jax.vjp``), ``"forward"`` (``jax.jvp``) or ``"both"``.
      order: 1, or 2 to also check second derivatives: the gradient of ``<q, fn>`` for a
        random cotangent ``q`` is checked by the same procedure (forward-over-reverse and
        reverse-over-reverse).
      kinks: ``"report"`` (values at non-differentiable points go to ``report.kinks``) or
        ``"fail"`` (they count as failures).
      key: ``jax.random`` key for directions and projections (default ``key(0)``). Its
        bits seed a NumPy generator: drawing with ``jax.random`` would compile a new XLA
        program for every problem size (about 1 s each on a busy 2-core CPU).
      batch_size: perturbed inputs per vectorised call.
      vectorize: evaluate the perturbed inputs with ``jax.vmap`` (fast); ``False`` loops.
      jit: compile the evaluations; ``False`` for functions that cannot be traced by jit.
      raise_on_failure: raise :class:`GradcheckError` on failure (default) or return the
        report with ``passed=False``.

    Returns:
      a :class:`GradcheckReport`.

    Raises:
      GradcheckError: a derivative is outside tolerance; the message names the worst value.
      ValueError: bad options or nothing to check.

    Example::

        report = gradcheck(lambda p, x: jnp.sum(cf.dense(x, p["kernel"], p["bias"]) ** 2),
                           params, x, wrt=["kernel"])
    """
    if not callable(fn):
        raise ValueError(
            f"fn={fn!r} is not callable; gradcheck(fn, *args) checks the derivatives of "
            f"fn(*args), e.g. gradcheck(lambda x: jnp.sum(x ** 2), x)."
        )
    _check_options(mode, ad, order, kinks, num_directions, max_full_size, dtype)
    for name, value, low in (
        ("batch_size", batch_size, 1),
        ("max_output_size", max_output_size, 0),
        ("num_output_projections", num_output_projections, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"{name}={value!r} must be an int >= {low} (the default is "
                f"{_COUNT_DEFAULTS[name]})."
            )
    for name, value in (
        ("vectorize", vectorize),
        ("jit", jit),
        ("raise_on_failure", raise_on_failure),
    ):
        if not isinstance(value, bool):
            raise ValueError(f"{name}={value!r} must be True or False.")
    if not isinstance(args, tuple) or not args:
        raise ValueError(
            "gradcheck needs at least one argument to differentiate: gradcheck(fn, x)."
        )
    flat, treedef, selected, paths = _select(args, argnums, wrt)
    cast = None if dtype is None else jnp.dtype(dtype)
    wants_x64 = cast is not None and cast.itemsize == 8
    scope = jax.enable_x64(True) if wants_x64 else contextlib.nullcontext()
    with scope:
        problem = _Problem(fn, args, flat, treedef, selected, cast)
        dt = problem.dtype
        d_step, d_rtol, d_atol = default_tolerances(dt)
        step = d_step if eps is None else float(eps)
        rtol = d_rtol if rtol is None else float(rtol)
        atol = d_atol if atol is None else float(atol)
        if step <= 0 or rtol < 0 or atol < 0:
            raise ValueError(
                f"eps={eps!r}, rtol={rtol!r}, atol={atol!r}: the step must be > 0 and the "
                f"tolerances >= 0."
            )
        n = int(problem.x0.shape[0])
        resolved = mode if mode != "auto" else ("full" if n <= max_full_size else "directional")
        ad_modes = ("reverse", "forward") if ad == "both" else (ad,)
        rng = _numpy_rng(jax.random.key(0) if key is None else key)

        offsets = np.cumsum([0] + problem.sizes)

        def probe_names(p):
            j = int(np.searchsorted(offsets, p, side="right") - 1)
            return paths[j], _index_label(problem.shapes[j], p - offsets[j])

        out_label = _output_labeler(problem.out_paths, problem.out_shapes)
        common = dict(
            mode=resolved,
            ad_modes=ad_modes,
            step=step,
            rtol=rtol,
            atol=atol,
            num_directions=num_directions,
            max_output_size=max_output_size,
            num_output_projections=num_output_projections,
            kinks_fail=kinks == "fail",
            batch_size=batch_size,
            vectorize=vectorize,
            use_jit=jit,
        )
        results, num_probes, notes = _check_map(
            problem.f,
            problem.x0,
            problem.m,
            order=1,
            rng=rng,
            probe_names=probe_names,
            out_names=out_label,
            **common,
        )
        if order == 2:
            q = jnp.asarray(rng.standard_normal(problem.m), dt)

            def grad_f(x):
                return jax.vjp(problem.f, x)[1](q)[0]

            results2, _, notes2 = _check_map(
                grad_f,
                problem.x0,
                n,
                order=2,
                rng=rng,
                probe_names=probe_names,
                out_names=lambda o: "d<q, out>/d" + "{} {}".format(*probe_names(o)),
                **common,
            )
            results = results + results2
            notes = notes + notes2

    report = GradcheckReport(
        passed=True,
        dtype=str(jnp.dtype(dt)),
        mode=resolved,
        ad=ad_modes,
        orders=(1, 2) if order == 2 else (1,),
        step=step,
        rtol=rtol,
        atol=atol,
        leaves=list(zip(paths, problem.shapes)),
        num_inputs=n,
        num_outputs=problem.m,
        num_probes=num_probes,
        notes=notes,
    )
    best_ratio = -math.inf
    total_failures = 0
    for stats, worst, failures, kink_records, n_fail in results:
        report.num_compared += stats["compared"]
        report.max_abs_err = max(report.max_abs_err, stats["max_abs"])
        report.max_rel_err = max(report.max_rel_err, stats["max_rel"])
        if worst is not None and worst[0] > best_ratio:
            best_ratio, report.worst = worst
        report.failures.extend(failures)
        report.kinks.extend(kink_records)
        total_failures += n_fail
    report.failures.sort(
        key=lambda r: -(r.abs_err / r.allowed if math.isfinite(r.abs_err) else math.inf)
    )
    report.num_failed = total_failures
    report.passed = total_failures == 0
    if not report.passed and raise_on_failure:
        w = report.failures[0]
        where = w.path if not w.index else f"{w.path} at index {w.index}"
        msg = (
            f"gradcheck failed: {total_failures} of {report.num_compared} derivative values are "
            f"outside tolerance (dtype {report.dtype}, mode {report.mode}, step {step:.3g}, "
            f"rtol={rtol:g}, atol={atol:g}). Worst: {where}, output {w.output}, "
            f"{w.ad} mode, order {w.order}: analytic={w.analytic:.10g}, "
            f"numeric={w.numeric:.10g}, abs err={w.abs_err:.3g}, rel err={w.rel_err:.3g}."
        )
        if w.at_kink:
            msg += (
                f" It sits on a kink (one-sided forward={w.forward:.6g}, "
                f"backward={w.backward:.6g}) and the analytic value is "
                + ("not between them." if kinks == "report" else "failed by kinks='fail'.")
            )
        if report.kinks:
            msg += f" ({len(report.kinks)} value(s) at kinks were reported separately.)"
        raise GradcheckError(msg, report)
    return report
