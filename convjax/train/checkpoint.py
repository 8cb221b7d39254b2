"""Orbax checkpoints of the train state plus the loop's bookkeeping.

Each checkpoint is ``WORKDIR/checkpoints/<global step>/`` with two items: ``state`` (the
:class:`~convjax.train.state.TrainState` arrays, Orbax ``StandardSave``) and ``meta`` (JSON:
epoch, batch within the epoch, the epoch's running sums, the per-epoch history, early-stopping
counters). Orbax writes into a temporary folder and renames it when complete, so a SIGKILL
mid-save leaves the previous checkpoint as the latest one; saves are synchronous so "saved"
means on disk.

Restoring needs a template state of the same structure (the freshly initialised one), which
fixes shapes, dtypes and the pytree types (optax's NamedTuples) of the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from convjax.train.state import TrainState


def _to_saveable(state: TrainState) -> dict:
    # Orbax wants a tree of arrays; EMA=None is simply left out.
    out = {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
    }
    if state.ema_params is not None:
        out["ema_params"] = state.ema_params
    return out


class Checkpointer:
    """Save and restore ``(TrainState, meta)`` under ``WORKDIR/checkpoints``.

    Args:
      workdir: the run's folder.
      max_to_keep: checkpoints kept on disk (older ones are deleted after a new save).
    """

    def __init__(self, workdir, *, max_to_keep: int = 2):
        self.directory = Path(workdir).absolute() / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def latest_step(self) -> int | None:
        """Global step of the newest complete checkpoint, or None."""
        return self.manager.latest_step()

    def save(self, state: TrainState, meta: dict[str, Any]) -> int:
        """Save at ``state.step``; returns that step. Overwrites nothing already there."""
        step = int(state.step)
        if step in self.manager.all_steps():
            return step
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(_to_saveable(state)), meta=ocp.args.JsonSave(meta)
            ),
        )
        self.manager.wait_until_finished()
        return step

    def restore(self, template: TrainState, step: int | None = None):
        """``(state, meta)`` of checkpoint ``step`` (default: latest), shaped like ``template``."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint in {self.directory}")
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_saveable(template))
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        # Rebuild with the template's tree types (Orbax may hand back tuples for NamedTuples).
        tree = _to_saveable(template)
        leaves = [np.asarray(x) for x in jax.tree.leaves(restored.state)]
        rebuilt = jax.tree.unflatten(jax.tree.structure(tree), leaves)
        rebuilt = jax.tree.map(lambda t, x: jax.numpy.asarray(x, t.dtype), tree, rebuilt)
        state = TrainState(
            step=rebuilt["step"],
            params=rebuilt["params"],
            batch_stats=rebuilt["batch_stats"],
            opt_state=rebuilt["opt_state"],
            ema_params=rebuilt.get("ema_params"),
        )
        return state, dict(restored.meta)

    def close(self) -> None:
        self.manager.close()
