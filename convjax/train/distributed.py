"""Several processes (hosts) running one population: ``jax.distributed`` set-up and gathers.

Every process runs the same program. After :func:`initialize`, ``jax.devices()`` lists the
devices of all processes, so :func:`convjax.train.sharding.make_mesh` spans all of them and a
population sharded over its members axis trains with each host holding its share of members.
Results come back to every host with :func:`gather` (numpy, the full population).

On a TPU pod slice the coordinator is found from the environment; run the same command on
every host (``gcloud compute tpus tpu-vm ssh NAME --worker=all --command="..."``). On CPU
(e.g. 2 processes on localhost, as the tests do) JAX needs the gloo collectives, which
:func:`initialize` switches on before connecting (checked with jax 0.10.2)::

    # process i of 2, same command with --process_id=0 and 1
    initialize("127.0.0.1:12355", num_processes=2, process_id=i)
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

PyTree = Any


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    cpu_collectives: str = "gloo",
    local_device_ids: Any = None,
) -> None:
    """Join this process to a multi-process JAX run (call once, before any JAX computation).

    Args:
      coordinator_address: ``"host:port"`` of process 0; None lets JAX detect it (TPU pods,
        SLURM, ...).
      num_processes: total processes; None to auto-detect.
      process_id: this process's index in ``[0, num_processes)``; None to auto-detect.
      cpu_collectives: implementation of cross-process collectives on the CPU backend
        (``"gloo"``; without it CPU processes cannot all-reduce).
      local_device_ids: restrict the devices this process uses (passed to JAX).
    """
    if num_processes is not None and (not isinstance(num_processes, int) or num_processes < 1):
        raise ValueError(
            f"initialize: num_processes={num_processes!r} must be a positive int (or None to "
            "auto-detect on a TPU pod)."
        )
    if process_id is not None and (
        not isinstance(process_id, int)
        or process_id < 0
        or (num_processes is not None and process_id >= num_processes)
    ):
        raise ValueError(
            f"initialize: process_id={process_id!r} must be an int in [0, num_processes="
            f"{num_processes}); give each process its own index."
        )
    if coordinator_address is not None and (
        not isinstance(coordinator_address, str) or ":" not in coordinator_address
    ):
        raise ValueError(
            f"initialize: coordinator_address={coordinator_address!r} must look like "
            "'host:port', e.g. '127.0.0.1:12355' (the address of process 0)."
        )
    if cpu_collectives:
        # Only affects the CPU backend; harmless on TPU/GPU, where the runtime has its own.
        jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
    jax.distributed.initialize(
        coordinator_address=coordinator_address,
        num_processes=num_processes,
        process_id=process_id,
        local_device_ids=local_device_ids,
    )


def is_main_process() -> bool:
    """True on process 0 (the one that writes tables, plots and config files)."""
    return jax.process_index() == 0


def gather(tree: PyTree) -> PyTree:
    """Every leaf of a (possibly multi-process sharded) pytree as a full numpy array, on every
    process. Single-process arrays are simply copied to host."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    return jax.tree.map(
        lambda x: np.asarray(multihost_utils.process_allgather(x, tiled=True)), tree
    )


def shutdown() -> None:
    """Leave the multi-process run (no-op when not initialized)."""
    if jax.process_count() > 1:
        jax.distributed.shutdown()
