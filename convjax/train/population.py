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
``unrolled``   the N member steps written out one after another    1.16x - 1.25x
               inside ONE jit (XLA schedules them together)
``sequential`` N separate calls of the jitted member step          1.00x (the reference)
=============  ==================================================  ====================

A rolled ``lax.map`` over the members ran at 0.03x and is not offered. ``strategy="auto"`` takes
:data:`AUTO_STRATEGY`'s entry for the backend (unrolled on CPU, where vmap's grouped
convolutions are slow; vmap on GPU/TPU, where one wide kernel wins);
``benchmarks/bench_population.py`` prints the full table for the machine it runs on.

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

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec

from convjax.train import sharding

PyTree = Any
MemberStep = Callable[[PyTree, PyTree, jax.Array, Mapping[str, jax.Array]], tuple[PyTree, PyTree]]

STRATEGIES = ("auto", "vmap", "unrolled", "sequential")

#: The strategy ``auto`` takes per backend: on CPU vmap ran at 0.15x of separate calls (its
#: grouped convolutions are slow there) and the unrolled jit at 1.16-1.25x; on accelerators one
#: wide vmapped kernel is the usual winner (benchmarks/results/population_gpu.md).
AUTO_STRATEGY = {"cpu": "unrolled", "gpu": "vmap", "tpu": "vmap"}

#: Strategies that accept a different member step per member (closures over per-member constants).
PER_MEMBER_STRATEGIES = ("unrolled", "sequential")


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
            '("auto" takes the backend\'s usual winner).'
        )


def _member_steps(step) -> tuple[MemberStep, ...] | None:
    """A tuple of per-member steps, or None for one step shared by every member."""
    if callable(step):
        return None
    return tuple(step)


def resolve_strategy(strategy: str, step=None, backend: str | None = None) -> str:
    """The concrete strategy for ``strategy`` ("auto" -> :data:`AUTO_STRATEGY`); per-member
    steps (a sequence) can only run unrolled or sequentially."""
    _check_strategy(strategy)
    per_member = step is not None and _member_steps(step) is not None
    if strategy == "auto":
        strategy = AUTO_STRATEGY.get(backend or jax.default_backend(), "unrolled")
        if per_member and strategy not in PER_MEMBER_STRATEGIES:
            strategy = "unrolled"
    if per_member and strategy not in PER_MEMBER_STRATEGIES:
        raise ValueError(
            f"population_step: strategy={strategy!r} runs one traced function for every "
            f"member, but {len(_member_steps(step))} different member steps were given; use one "
            f"of {PER_MEMBER_STRATEGIES} (or make the members share one step)."
        )
    return strategy


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


def population_fn(step, strategy: str, *, batch_per_member: bool = False, mesh=None):
    """The traceable population step ``f(states, batch, keys, hparams) -> outputs`` (not jitted).

    ``step`` is one member step (or a sequence of N, one per member) whose outputs may be any
    pytree; every output leaf gains the member axis. ``strategy`` is ``"vmap"`` or
    ``"unrolled"`` (``"auto"`` resolves per backend; ``"sequential"`` is not traceable, see
    :func:`population_step`). Callers put ``f`` inside their own jit, e.g. a k-step loop
    (:func:`convjax.train.loops.make_multi_step`).
    """
    strategy = resolve_strategy(strategy, step)
    steps = _member_steps(step)
    step_of = (lambda i: step) if steps is None else (lambda i: steps[i])
    batch_axis = 0 if batch_per_member else None
    if strategy == "vmap":
        return jax.vmap(step, in_axes=(0, batch_axis, 0, 0))
    if strategy != "unrolled":
        raise ValueError(
            f"population_fn: strategy={strategy!r} is not traceable; use 'unrolled' or 'vmap' "
            "(population_step runs 'sequential')."
        )

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

    if not _members_split(mesh, steps):
        return unrolled
    # Measured (benchmarks/bench_population.py, 2 CPU devices, 8 members): the same program
    # on members-sharded arrays left to the SPMD partitioner ran at 0.63x of separate runs
    # (it moves the members' slices between devices); under shard_map each device unrolls
    # only its own members: 1.6x.
    per_device = PartitionSpec(sharding.MEMBERS)
    return jax.shard_map(
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


def _sequential(step, batch_per_member: bool):
    """N separate jitted member calls (the reference a population is measured against)."""
    steps = _member_steps(step)
    step_of = (lambda i: step) if steps is None else (lambda i: steps[i])
    jitted = {}

    def jstep_of(i):
        f = step_of(i)
        if id(f) not in jitted:
            jitted[id(f)] = jax.jit(f)
        return jitted[id(f)]

    # One jitted call cuts the population into its N members and one stacks the results, so
    # the only per-member work is the member step itself (slicing leaf by leaf from Python
    # would cost N x leaves tiny dispatches per step).
    @jax.jit
    def split(states, batch, keys, hparams):
        take = lambda i: lambda x: x[i]
        return [
            (
                jax.tree.map(take(i), states),
                jax.tree.map(take(i), batch) if batch_per_member else batch,
                keys[i],
                jax.tree.map(take(i), hparams),
            )
            for i in range(population_size(states))
        ]

    join = jax.jit(lambda outs: jax.tree.map(lambda *xs: jnp.stack(xs), *outs))

    def sequential(states, batch, keys, hparams):
        parts = split(states, batch, keys, hparams)
        return join([jstep_of(i)(*args) for i, args in enumerate(parts)])

    return sequential


def _check_call(step, states, batch, keys, hparams, batch_per_member: bool) -> None:
    n = population_size(states)
    steps = _member_steps(step)
    if steps is not None and len(steps) != n:
        raise ValueError(
            f"PopulationStep: {len(steps)} member steps were given for a population of {n}; "
            "pass one step per member (or one shared step)."
        )
    if len(keys) != n:
        raise ValueError(
            f"PopulationStep: keys has {len(keys)} entries for a population of {n}; pass one "
            "key per member, e.g. jax.random.split(key, N)."
        )
    for name, v in hparams.items():
        if np.shape(v)[:1] != (n,):
            raise ValueError(
                f"PopulationStep: hparams[{name!r}] has shape {np.shape(v)}; it needs a leading "
                f"member axis of {n} (one value per member)."
            )
    if batch_per_member:
        for x in jax.tree.leaves(batch):
            if np.shape(x)[:1] != (n,):
                raise ValueError(
                    f"PopulationStep: batch leaf of shape {np.shape(x)} has no member axis of "
                    f"{n}; with batch_per_member=True every batch leaf is (N, B, ...)."
                )


class PopulationStep:
    """Callable ``(states, batch, keys, hparams) -> (states, metrics)`` for N members.

    Created by :func:`population_step`. ``states`` leaves have shape ``(N, ...)``; ``batch`` is
    shared by all members (``batch_per_member=False``) or has a leading member axis; ``keys`` is
    an ``(N,)`` key array (or ``(N, 2)`` raw uint32 keys); ``hparams`` a dict of ``(N,)`` arrays
    (may be empty). ``metrics`` leaves gain the member axis. ``.strategy`` is the concrete
    strategy used.
    """

    def __init__(self, step, strategy, batch_per_member, donate, mesh=None):
        self._step = step
        self.mesh = mesh
        self.strategy = resolve_strategy(strategy, step)
        self.batch_per_member = batch_per_member
        if self.strategy == "sequential":
            self._fn = _sequential(step, batch_per_member)
        else:
            fn = population_fn(step, self.strategy, batch_per_member=batch_per_member, mesh=mesh)
            self._fn = jax.jit(fn, donate_argnums=(0,) if donate else ())

    def __call__(self, states, batch, keys, hparams=None):
        hparams = {} if hparams is None else dict(hparams)
        _check_call(self._step, states, batch, keys, hparams, self.batch_per_member)
        return self._fn(states, batch, keys, hparams)


def population_step(
    step: MemberStep,
    *,
    strategy: str = "auto",
    batch_per_member: bool = False,
    donate: bool = False,
    mesh=None,
) -> PopulationStep:
    """Turn a member step into one jitted step for a whole population.

    Args:
      step: pure ``step(state, batch, key, hparams) -> (state, metrics)`` for ONE member; it
        must be jit-traceable. Per-member values belong in ``state`` or ``hparams``; when a
        per-member value can only be a Python constant (a closure), pass a sequence of N
        member steps instead: then only the ``unrolled`` and ``sequential`` strategies apply.
      strategy: one of ``STRATEGIES``; ``"auto"`` takes :data:`AUTO_STRATEGY` for the backend.
      batch_per_member: True when each member gets its own batch (leaves ``(N, B, ...)``), e.g.
        when members differ in seed and so in data order; False shares one ``(B, ...)`` batch.
      donate: donate the population state buffers to the step (saves memory in long loops; the
        caller must not reuse the passed-in state).
      mesh: the ``("members", "data")`` mesh the population is sharded over
        (``convjax.train.sharding``), or None. With a members axis over several devices and a
        data axis of 1, ``unrolled`` runs under ``shard_map`` so each device steps only its own
        members (one shared member step only); other strategies leave the placement to XLA.

    Returns:
      A :class:`PopulationStep`.
    """
    return PopulationStep(step, strategy, batch_per_member, donate, mesh)
