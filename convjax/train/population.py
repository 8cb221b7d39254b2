"""Populations: N models trained as one, with parameters and optimizer states stacked.

A *population* is any pytree whose every leaf has a leading member axis of size N: the
``(params, opt_state)`` of N networks of the same structure, stacked with :func:`stack`.
Numeric hyperparameters become arrays of shape ``(N,)``: optimizer ones live inside the
optimizer state when the optimizer is built with ``optax.inject_hyperparams`` (see
:func:`set_hyperparams`), the others (label smoothing, dropout rate ...) are passed to the step
as a dict of ``(N,)`` arrays.

:func:`population_step` turns a *member step* -- a pure function
``step(state, batch, key, hparams) -> (state, metrics)`` for ONE member -- into a step for the
whole population. How the N members execute is a choice per backend (measured on
the 2-core CPU with jax 0.10.2, textbook CNN, 8 members, batch 128):

=============  ==================================================  ====================
strategy       what runs                                           CPU speed vs 8 calls
=============  ==================================================  ====================
``vmap``       ``jax.vmap`` of the step inside one jit             0.15x (grouped convs)
``unrolled``   the N member steps written out one after another    1.16x
               inside ONE jit (XLA schedules them together)
``map``        ``lax.map`` (a rolled loop) inside one jit          0.03x
``sequential`` N separate calls of the jitted member step          1.00x (the reference)
=============  ==================================================  ====================

``strategy="auto"`` measures the backend's candidates on the first call's real arguments
(:func:`choose_strategy`) and keeps the fastest, so a population is never slower than its
members one by one; ``sequential`` is always a candidate. ``benchmarks/bench_population.py``
prints the full table for the machine it runs on.

Example (a tiny linear model; any step with this signature works)::

    def step(state, batch, key, hparams):
        params, opt_state = state
        ...
        return (params, opt_state), {"loss": loss}

    states = stack([(p_i, opt.init(p_i)) for p_i in member_params])   # leaves (N, ...)
    pop_step = population_step(step, strategy="unrolled")
    states, metrics = pop_step(states, batch, keys, {"label_smoothing": jnp.zeros(N)})
    # metrics["loss"].shape == (N,)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from convjax.train import sharding

PyTree = Any
MemberStep = Callable[[PyTree, PyTree, jax.Array, Mapping[str, jax.Array]], tuple[PyTree, PyTree]]

STRATEGIES = ("auto", "vmap", "unrolled", "map", "sequential")

# Candidates ``auto`` times on each backend, in order of expected speed. On CPU vmap and lax.map
# lost badly to separate calls (0.15x / 0.03x measured), so only the unrolled jit is raced
# against sequential calls there; on accelerators vmap is expected to win (one wide kernel).
AUTO_CANDIDATES = {
    "cpu": ("unrolled", "sequential"),
    "gpu": ("vmap", "unrolled", "sequential"),
    "tpu": ("vmap", "unrolled", "sequential"),
}


# ---------------------------------------------------------------------------- stacking helpers


def stack(trees: Sequence[PyTree]) -> PyTree:
    """Stack N pytrees of identical structure into one population (leaves get axis 0 = N).

    Args:
      trees: a non-empty sequence of pytrees with the same structure and leaf shapes, e.g. the
        ``(params, opt_state)`` of N members.

    Returns:
      One pytree whose leaves have shape ``(N, *leaf.shape)``.
    """
    trees = list(trees)
    if not trees:
        raise ValueError("stack: trees=[] is empty; pass at least one member pytree.")
    first = jax.tree.structure(trees[0])
    for i, t in enumerate(trees[1:], start=1):
        if jax.tree.structure(t) != first:
            raise ValueError(
                f"stack: trees[{i}] has structure {jax.tree.structure(t)} but trees[0] has "
                f"{first}; every member must have the same pytree structure (same model and "
                "optimizer); put structurally different members in different populations."
            )
        for a, b in zip(jax.tree.leaves(trees[0]), jax.tree.leaves(t)):
            if np.shape(a) != np.shape(b):
                raise ValueError(
                    f"stack: trees[{i}] has a leaf of shape {np.shape(b)} where trees[0] has "
                    f"{np.shape(a)}; members of one population need identical shapes (split a "
                    "sweep over widths or kernel sizes into groups)."
                )
    return jax.tree.map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *trees)


def population_size(population: PyTree) -> int:
    """Number of members N: the common leading dimension of every leaf."""
    leaves = jax.tree.leaves(population)
    if not leaves:
        raise ValueError("population_size: population has no array leaves; nothing to count.")
    sizes = {int(np.shape(x)[0]) if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        shapes = sorted({str(np.shape(x)) for x in leaves})
        raise ValueError(
            f"population_size: leaves have leading dimensions {sorted(map(str, sizes))} "
            f"(shapes {shapes[:6]}); every leaf of a population needs the same member axis 0. "
            "Build it with convjax.train.population.stack."
        )
    return sizes.pop()


def member(population: PyTree, index: int) -> PyTree:
    """Member ``index`` of a population (leaves lose the member axis)."""
    n = population_size(population)
    if not -n <= index < n:
        raise ValueError(f"member: index={index} is out of range for a population of {n}.")
    return jax.tree.map(lambda x: x[index], population)


def unstack(population: PyTree) -> list[PyTree]:
    """Inverse of :func:`stack`: a list of the N member pytrees."""
    return [member(population, i) for i in range(population_size(population))]


def set_hyperparams(opt_state: PyTree, **values: Any) -> PyTree:
    """Return ``opt_state`` with the named ``optax.inject_hyperparams`` entries replaced.

    Works for one member or a stacked population (values then have shape ``(N,)``). The
    optimizer must be built with ``optax.inject_hyperparams``; its state (possibly nested in
    a tuple/chain) carries a ``hyperparams`` dict.
    """
    found = set()

    def replace(node):
        if hasattr(node, "hyperparams") and isinstance(node.hyperparams, dict):
            hp = dict(node.hyperparams)
            for name, v in values.items():
                if name in hp:
                    old = hp[name]
                    hp[name] = jnp.asarray(v, dtype=jnp.result_type(old)).reshape(jnp.shape(old))
                    found.add(name)
            return node._replace(hyperparams=hp)
        if isinstance(node, tuple) and not hasattr(node, "_fields"):
            return tuple(replace(c) for c in node)
        return node

    new_state = replace(opt_state)
    missing = set(values) - found
    if missing:
        raise ValueError(
            f"set_hyperparams: {sorted(missing)} not found in the optimizer state's "
            f"hyperparams (have {sorted(get_hyperparams(opt_state))}); build the optimizer "
            "with optax.inject_hyperparams and pass those names as its arguments."
        )
    return new_state


def get_hyperparams(opt_state: PyTree) -> dict[str, jax.Array]:
    """The ``optax.inject_hyperparams`` values inside ``opt_state`` (first found wins)."""
    out: dict[str, jax.Array] = {}

    def visit(node):
        if hasattr(node, "hyperparams") and isinstance(node.hyperparams, dict):
            for k, v in node.hyperparams.items():
                out.setdefault(k, v)
        elif isinstance(node, tuple) and not hasattr(node, "_fields"):
            for c in node:
                visit(c)

    visit(opt_state)
    return out


# ---------------------------------------------------------------------------- the population step


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(
            f"population_step: strategy={strategy!r} is not one of {STRATEGIES}; pick one "
            '("auto" measures the candidates for this backend).'
        )


def _member_steps(step) -> tuple[MemberStep, ...] | None:
    """A tuple of per-member steps, or None for one step shared by every member."""
    if callable(step):
        return None
    return tuple(step)


PER_MEMBER_STRATEGIES = ("unrolled", "sequential")


def _members_split(mesh, steps) -> bool:
    """Run ``unrolled`` under ``shard_map`` on ``mesh``: each device steps its own members.

    Only for a mesh whose members axis spans devices and whose data axis is 1 (a split batch
    needs the gradient all-reduce that only the SPMD partitioner inserts), and one shared
    member step (per-member closures cannot be picked per device inside shard_map).
    """
    return (
        mesh is not None
        and steps is None
        and mesh.shape[sharding.MEMBERS] > 1
        and mesh.shape[sharding.DATA] == 1
    )


def _build(step, strategy: str, batch_per_member: bool, donate: bool, mesh=None):
    """Compile-ready population step for one concrete strategy."""
    steps = _member_steps(step)
    if steps is not None and strategy not in PER_MEMBER_STRATEGIES:
        raise ValueError(
            f"population_step: strategy={strategy!r} runs one traced function for every "
            f"member, but {len(steps)} different member steps were given; use one of "
            f"{PER_MEMBER_STRATEGIES} (or make the members share one step)."
        )
    step_of = (lambda i: step) if steps is None else (lambda i: steps[i])
    batch_axis = 0 if batch_per_member else None
    donate_argnums = (0,) if donate else ()

    if strategy == "vmap":
        return jax.jit(jax.vmap(step, in_axes=(0, batch_axis, 0, 0)), donate_argnums=donate_argnums)

    if strategy == "unrolled":

        def unrolled(states, batch, keys, hparams):
            n = population_size(states)
            outs = []
            # A Python loop at trace time: N copies of the member step in one XLA program, so
            # each member keeps its own dense convolutions (no grouped conv as under vmap)
            # and XLA may overlap them; nothing is stacked on the batch dimension.
            for i in range(n):
                take = lambda x, i=i: x[i]
                b = jax.tree.map(take, batch) if batch_per_member else batch
                outs.append(
                    step_of(i)(jax.tree.map(take, states), b, keys[i], jax.tree.map(take, hparams))
                )
            return jax.tree.map(lambda *xs: jnp.stack(xs), *outs)

        if _members_split(mesh, steps):
            # Measured (benchmarks/bench_population.py, 2 CPU devices, 8 members): the same
            # program on members-sharded arrays left to the SPMD partitioner ran at 0.63x of
            # separate runs (it moves the members' slices between devices); under shard_map
            # each device unrolls only its own members: 1.6x.
            per_device = PartitionSpec(sharding.MEMBERS)
            unrolled = jax.shard_map(
                unrolled,
                mesh=mesh,
                in_specs=(
                    per_device,
                    per_device if batch_per_member else PartitionSpec(),
                    per_device,
                    per_device,
                ),
                out_specs=per_device,
            )
        return jax.jit(unrolled, donate_argnums=donate_argnums)

    if strategy == "map":

        def mapped(states, batch, keys, hparams):
            if batch_per_member:
                return jax.lax.map(lambda a: step(*a), (states, batch, keys, hparams))
            return jax.lax.map(lambda a: step(a[0], batch, a[1], a[2]), (states, keys, hparams))

        return jax.jit(mapped, donate_argnums=donate_argnums)

    if strategy == "sequential":
        jitted = {}

        def jstep_of(i):
            f = step_of(i)
            if id(f) not in jitted:
                jitted[id(f)] = jax.jit(f)
            return jitted[id(f)]

        # One jitted call cuts the population into its N members and one stacks the results,
        # so the only per-member work is the member step itself (slicing leaf by leaf from
        # Python would cost N x leaves tiny dispatches per step).
        @jax.jit
        def split(states, batch, keys, hparams):
            n = population_size(states)
            take = lambda i: lambda x: x[i]
            return [
                (
                    jax.tree.map(take(i), states),
                    jax.tree.map(take(i), batch) if batch_per_member else batch,
                    keys[i],
                    jax.tree.map(take(i), hparams),
                )
                for i in range(n)
            ]

        join = jax.jit(lambda outs: jax.tree.map(lambda *xs: jnp.stack(xs), *outs))

        def sequential(states, batch, keys, hparams):
            parts = split(states, batch, keys, hparams)
            return join([jstep_of(i)(*args) for i, args in enumerate(parts)])

        return sequential

    raise AssertionError(strategy)  # _check_strategy ran first


def _block(tree: PyTree) -> PyTree:
    return jax.tree.map(
        lambda x: x.block_until_ready() if hasattr(x, "block_until_ready") else x, tree
    )


def time_strategies(
    step: MemberStep,
    args: tuple,
    candidates: Sequence[str],
    *,
    batch_per_member: bool = False,
    repeats: int = 3,
    mesh=None,
) -> dict[str, dict[str, float]]:
    """Compile and time each strategy on the real arguments ``args = (states, batch, keys, hp)``.

    Returns ``{strategy: {"compile_s": first call incl. compile, "step_s": best of repeats}}``.
    Nothing is donated, so ``args`` stay valid.
    """
    for c in candidates:
        _check_strategy(c)
        if c == "auto":
            raise ValueError("time_strategies: candidates must be concrete, got 'auto'.")
    out = {}
    for c in candidates:
        fn = _build(step, c, batch_per_member, donate=False, mesh=mesh)
        t0 = time.perf_counter()
        _block(fn(*args))
        compile_s = time.perf_counter() - t0
        best = float("inf")
        for _ in range(max(1, repeats)):
            t0 = time.perf_counter()
            _block(fn(*args))
            best = min(best, time.perf_counter() - t0)
        out[c] = {"compile_s": compile_s, "step_s": best}
    return out


def choose_strategy(
    step: MemberStep,
    args: tuple,
    *,
    backend: str | None = None,
    candidates: Sequence[str] | None = None,
    batch_per_member: bool = False,
    repeats: int = 3,
    mesh=None,
) -> tuple[str, dict[str, dict[str, float]]]:
    """Pick the fastest strategy for this backend by measuring it (see AUTO_CANDIDATES).

    ``sequential`` is always raced, so the choice is never slower than running the members
    one by one (up to timing noise). Returns ``(strategy, timings)``.
    """
    backend = backend or jax.default_backend()
    if candidates is None:
        candidates = AUTO_CANDIDATES.get(backend, ("vmap", "unrolled", "sequential"))
    candidates = list(dict.fromkeys([*candidates, "sequential"]))
    if _member_steps(step) is not None:
        candidates = [c for c in candidates if c in PER_MEMBER_STRATEGIES]
    timings = time_strategies(
        step, args, candidates, batch_per_member=batch_per_member, repeats=repeats, mesh=mesh
    )
    best = min(timings, key=lambda c: timings[c]["step_s"])
    return best, timings


class PopulationStep:
    """Callable ``(states, batch, keys, hparams) -> (states, metrics)`` for N members.

    Created by :func:`population_step`. ``states`` leaves have shape ``(N, ...)``; ``batch`` is
    shared by all members (``batch_per_member=False``) or has a leading member axis; ``keys`` is
    an ``(N,)`` key array (or ``(N, 2)`` raw uint32 keys); ``hparams`` a dict of ``(N,)`` arrays
    (may be empty). ``metrics`` leaves gain the member axis. After the first call
    ``.strategy`` is the concrete strategy used and ``.timings`` what ``auto`` measured.
    """

    def __init__(self, step, strategy, batch_per_member, donate, candidates, mesh=None):
        _check_strategy(strategy)
        self._step = step
        self.mesh = mesh
        self.requested = strategy
        self.strategy = None if strategy == "auto" else strategy
        self.batch_per_member = batch_per_member
        self.donate = donate
        self.candidates = candidates
        self.timings: dict[str, dict[str, float]] = {}
        self._fn = None

    def __call__(self, states, batch, keys, hparams=None):
        hparams = {} if hparams is None else dict(hparams)
        n = population_size(states)
        steps = _member_steps(self._step)
        if steps is not None and len(steps) != n:
            raise ValueError(
                f"PopulationStep: {len(steps)} member steps were given for a population of "
                f"{n}; pass one step per member (or one shared step)."
            )
        if len(keys) != n:
            raise ValueError(
                f"PopulationStep: keys has {len(keys)} entries for a population of {n}; "
                "pass one key per member, e.g. jax.random.split(key, N)."
            )
        for name, v in hparams.items():
            if np.shape(v)[:1] != (n,):
                raise ValueError(
                    f"PopulationStep: hparams[{name!r}] has shape {np.shape(v)}; it needs a "
                    f"leading member axis of {n} (one value per member)."
                )
        if self.batch_per_member:
            for x in jax.tree.leaves(batch):
                if np.shape(x)[:1] != (n,):
                    raise ValueError(
                        f"PopulationStep: batch leaf of shape {np.shape(x)} has no member axis "
                        f"of {n}; with batch_per_member=True every batch leaf is (N, B, ...)."
                    )
        if self._fn is None:
            if self.strategy is None:
                self.strategy, self.timings = choose_strategy(
                    self._step,
                    (states, batch, keys, hparams),
                    candidates=self.candidates,
                    batch_per_member=self.batch_per_member,
                    mesh=self.mesh,
                )
            self._fn = _build(
                self._step, self.strategy, self.batch_per_member, self.donate, self.mesh
            )
        return self._fn(states, batch, keys, hparams)


def population_step(
    step: MemberStep,
    *,
    strategy: str = "auto",
    batch_per_member: bool = False,
    donate: bool = False,
    candidates: Sequence[str] | None = None,
    mesh=None,
) -> PopulationStep:
    """Turn a member step into one step for a whole population.

    Args:
      step: pure ``step(state, batch, key, hparams) -> (state, metrics)`` for ONE member; it
        must be jit-traceable. Per-member values belong in ``state`` or ``hparams``; when a
        per-member value can only be a Python constant (a closure), pass a sequence of N
        member steps instead: then only the ``unrolled`` and ``sequential`` strategies apply
        (``auto`` races just those).
      strategy: one of ``STRATEGIES``; ``"auto"`` measures AUTO_CANDIDATES[backend] plus
        ``"sequential"`` on the first call and keeps the fastest.
      batch_per_member: True when each member gets its own batch (leaves ``(N, B, ...)``), e.g.
        when members differ in seed and so in data order; False shares one ``(B, ...)`` batch.
      donate: donate the population state buffers to the step (saves memory in long loops; the
        caller must not reuse the passed-in state).
      candidates: override the strategies ``auto`` races.
      mesh: the ``("members", "data")`` mesh the population is sharded over
        (``convjax.train.sharding``), or None. With a members axis over several devices and a
        data axis of 1, ``unrolled`` runs under ``shard_map`` so each device steps only its own
        members (one shared member step only); other strategies leave the placement to XLA.

    Returns:
      A :class:`PopulationStep`.
    """
    return PopulationStep(step, strategy, batch_per_member, donate, candidates, mesh)
