"""Shard a population's member axis (and the batch axis) over every device.

A 2-D ``jax.sharding.Mesh`` with axes ``("members", "data")`` covers all devices (of all
processes, after ``jax.distributed.initialize``). Population leaves ``(N, ...)`` are split
along ``members``; batches ``(B, ...)`` along ``data`` (and ``(N, B, ...)`` per-member batches
along both). Under ``jax.jit`` XLA's SPMD partitioner then runs each device's members on its
slice of the batch and inserts the gradient all-reduce over ``data`` itself, so the population
step needs no change: the numbers equal the single-device run up to float summation order.

Example, 8 devices, 8 members::

    mesh = make_mesh(num_members=8)                 # members=8, data=1
    states = shard_population(stack(member_states), mesh)
    batch = shard_batch(batch, mesh)                # replicated over members, split over data
    states, metrics = population_step(step, strategy="vmap")(states, batch, keys, hp)

On one host, ``XLA_FLAGS=--xla_force_host_platform_device_count=8`` gives 8 CPU devices (the
tests use it); on a TPU pod slice each host runs the same program after
``convjax.train.distributed.initialize()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

PyTree = Any
MEMBERS = "members"
DATA = "data"


def make_mesh(
    num_members: int | None = None,
    *,
    devices: Sequence[jax.Device] | None = None,
    members_axis: int | None = None,
) -> Mesh:
    """A ``("members", "data")`` mesh over ``devices`` (default: every device of every process).

    Args:
      num_members: population size N. The members axis gets ``gcd(N, D)`` devices for D devices
        (it must divide N so every device holds whole members); the rest form the data axis.
        None puts every device on the members axis.
      devices: the devices to use (default ``jax.devices()``).
      members_axis: force the members-axis size (must divide both D and N).

    Returns:
      ``Mesh`` of shape ``(members, data)`` with ``members * data == D``.
    """
    devs = list(jax.devices() if devices is None else devices)
    d = len(devs)
    if d == 0:
        raise ValueError("make_mesh: devices=[] is empty; pass at least one device.")
    if num_members is not None and (not isinstance(num_members, int) or num_members < 1):
        raise ValueError(f"make_mesh: num_members={num_members!r} must be a positive int.")
    if members_axis is None:
        members_axis = d if num_members is None else math.gcd(num_members, d)
    if members_axis < 1 or d % members_axis:
        raise ValueError(
            f"make_mesh: members_axis={members_axis} does not divide the {d} devices; pick a "
            f"divisor of {d}."
        )
    if num_members is not None and num_members % members_axis:
        raise ValueError(
            f"make_mesh: members_axis={members_axis} does not divide num_members={num_members}; "
            "every device must hold whole members - pick a divisor of both."
        )
    grid = np.array(devs, dtype=object).reshape(members_axis, d // members_axis)
    return Mesh(grid, (MEMBERS, DATA))


def _put(tree: PyTree, mesh: Mesh, spec_for) -> PyTree:
    def put(x):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            # Typed PRNG keys: place the raw uint32 data (one extra trailing dim), re-wrap.
            raw = put(jax.random.key_data(x))
            return jax.random.wrap_key_data(raw, impl=jax.random.key_impl(x))
        sharding = NamedSharding(mesh, spec_for(np.ndim(x)))
        if sharding.is_fully_addressable:
            return jax.device_put(x, sharding)
        # Multi-process: every process holds the same full value (same seed, same data) and
        # contributes the shards its own devices hold.
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])

    return jax.tree.map(put, tree)


def _batch_spec(ndim: int) -> P:
    """Leading (batch) axis split over the data axis, the others whole."""
    return P(DATA, *([None] * (ndim - 1)))


def _check_divisible(tree: PyTree, axis: int, size: int, what: str, fix: str) -> None:
    for x in jax.tree.leaves(tree):
        n = np.shape(x)[axis] if np.ndim(x) > axis else None
        if n is None or n % size:
            raise ValueError(
                f"{what}: a leaf of shape {np.shape(x)} has dimension {axis} = {n}, which the "
                f"mesh axis of {size} devices does not divide; {fix}"
            )


def shard_population(population: PyTree, mesh: Mesh) -> PyTree:
    """Place a population (leaves ``(N, ...)``) split along the mesh's members axis.

    Each leaf is replicated over the data axis. N must be a multiple of the members axis.
    """
    m = mesh.shape[MEMBERS]
    _check_divisible(
        population,
        0,
        m,
        "shard_population",
        "use make_mesh(num_members=N) so the members axis divides N.",
    )
    return _put(population, mesh, lambda nd: P(MEMBERS, *([None] * (nd - 1))))


def shard_batch(batch: PyTree, mesh: Mesh, *, per_member: bool = False) -> PyTree:
    """Place a batch split along the data axis.

    ``per_member=False``: leaves ``(B, ...)``, replicated over members, B split over data.
    ``per_member=True``: leaves ``(N, B, ...)``, N split over members and B over data.
    """
    dsize = mesh.shape[DATA]
    axis = 1 if per_member else 0
    _check_divisible(
        batch, axis, dsize, "shard_batch", f"use a batch size that is a multiple of {dsize}."
    )
    if per_member:
        _check_divisible(
            batch, 0, mesh.shape[MEMBERS], "shard_batch", "the member axis must divide N."
        )
        return _put(batch, mesh, lambda nd: P(MEMBERS, DATA, *([None] * (nd - 2))))
    return _put(batch, mesh, _batch_spec)


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place every leaf whole on every device of the mesh (e.g. a dataset, a scalar)."""
    return _put(tree, mesh, lambda nd: P())


def constrain_batch(batch: PyTree, mesh: Mesh, *, per_member: bool = False) -> PyTree:
    """Inside ``jax.jit``: ask XLA to split every leaf ``(B, ...)`` along the data axis
    (``per_member=True``: leaves ``(N, B, ...)``, N along the members axis too).

    Leaves whose batch dimension the data axis does not divide are left to XLA (an eval tail
    batch, say); the numbers never depend on the placement, only the speed does.
    """
    dsize = mesh.shape[DATA]
    axis = 1 if per_member else 0

    def constrain(x):
        if np.ndim(x) <= axis or np.shape(x)[axis] % dsize:
            return x
        lead = (MEMBERS,) if per_member else ()
        spec = P(*lead, DATA, *([None] * (np.ndim(x) - axis - 1)))
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))

    return jax.tree.map(constrain, batch)


def data_parallel_devices(
    requested: int, batch_sizes: Sequence[int], devices: Sequence[jax.Device] | None = None
) -> list[jax.Device]:
    """The devices one model's batches are split over (``config.data_parallel``).

    Args:
      requested: 0 = automatic: the most local devices whose count divides every batch size;
        1 = one device (no splitting); N = exactly N devices.
      batch_sizes: the batch sizes that will be split (train and eval).
      devices: candidates (default ``jax.local_devices()``).

    Returns:
      The first ``d`` candidate devices.

    Raises:
      ValueError: ``requested`` is negative, more than the devices there are, or does not
        divide a batch size; the message names the fix.
    """
    devs = list(jax.local_devices() if devices is None else devices)
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 0:
        raise ValueError(
            f"config.data_parallel={requested!r} must be an int >= 0: 0 = every local device "
            "that divides the batch size, 1 = one device, N = exactly N devices."
        )
    if requested == 0:
        d = max(n for n in range(1, len(devs) + 1) if all(b % n == 0 for b in batch_sizes))
        return devs[:d]
    if requested > len(devs):
        raise ValueError(
            f"config.data_parallel={requested} asks for more devices than the {len(devs)} this "
            f"process has; on a CPU start the process with XLA_FLAGS="
            f"--xla_force_host_platform_device_count={requested} (experiments/*.py set one "
            "device per core themselves), or use data_parallel=0."
        )
    bad = [b for b in batch_sizes if b % requested]
    if bad:
        raise ValueError(
            f"config.data_parallel={requested} does not divide the batch size(s) {bad}; use a "
            f"batch size that is a multiple of {requested}, or data_parallel=0."
        )
    return devs[:requested]


def population_mesh(
    num_members: int,
    batch_sizes: Sequence[int],
    data_parallel: int = 0,
    *,
    shared_step: bool = True,
    devices: Sequence[jax.Device] | None = None,
) -> Mesh | None:
    """The ``("members", "data")`` mesh a population of ``num_members`` trains on, or None for
    one device.

    The members axis gets ``gcd(N, D)`` of the D devices (whole members per device; 1 when the
    members run different step functions, which ``shard_map`` cannot pick per device); the data
    axis splits every batch over the rest, as many devices as ``data_parallel`` allows and
    every batch size divides (:func:`data_parallel_devices`). A single run (N = 1) on a CPU
    with one XLA device per core thus splits its batches over the cores.
    """
    devs = list(jax.devices() if devices is None else devices)
    members = math.gcd(num_members, len(devs)) if shared_step else 1
    rest = devs[: len(devs) // members]
    data = len(data_parallel_devices(data_parallel, batch_sizes, rest))
    if members * data == 1:
        return None
    grid = np.array(devs[: members * data], dtype=object).reshape(members, data)
    return Mesh(grid, (MEMBERS, DATA))
