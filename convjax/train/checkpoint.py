"""Checkpoints you can trust: Orbax storage, a SHA-256 of every array, fallback to an intact one.

Each checkpoint is ``WORKDIR/checkpoints/<global step>/`` with two Orbax items: ``state`` (the
stacked :class:`~convjax.train.state.TrainState` of the live members, as host arrays) and
``meta`` (JSON: the :class:`~convjax.train.state.LoopState` and one SHA-256 per array, computed
from the arrays before they were written). Orbax writes into a temporary folder and renames it
when complete, so a SIGKILL mid-save leaves the previous checkpoint as the newest; saves are
synchronous, so "saved" means on disk.

Restoring recomputes every array's SHA-256 and compares it with the recorded one. Orbax itself
does not catch a garbled byte range in a data file (such a file restored silently to wrong
weights), and a truncated or missing file or damaged metadata makes it raise deep inside
TensorStore. Either way the checkpoint is *damaged*: it is moved to
``WORKDIR/damaged_checkpoints/<step>`` (kept for inspection, out of the way of new saves), a
warning names it and why, and the next older checkpoint is tried. With ``max_to_keep=2`` a run
always has one older checkpoint to fall back to; if none is intact, :class:`CheckpointError`
says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from convjax.train import distributed
from convjax.train.state import LoopState, TrainState

PyTree = Any


class CheckpointError(RuntimeError):
    """No intact checkpoint could be restored; the message lists each one and what was wrong."""


class DamagedCheckpointWarning(UserWarning):
    """A checkpoint failed verification and was moved aside; an older one is used instead."""


def _to_saveable(state: TrainState) -> dict:
    # Orbax wants a tree of arrays; EMA=None is simply left out.
    out = {k: v for k, v in state._asdict().items() if v is not None}
    return out


def _digest(x) -> str:
    a = np.ascontiguousarray(np.asarray(x))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


class Checkpointer:
    """Save and restore ``(stacked TrainState, LoopState)`` under ``WORKDIR/checkpoints``.

    Args:
      workdir: the run's folder.
      max_to_keep: checkpoints kept on disk (older ones are deleted after a new save).
    """

    def __init__(self, workdir, *, max_to_keep: int = 2):
        self.workdir = Path(workdir).absolute()
        self.directory = self.workdir / "checkpoints"
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, enable_async_checkpointing=False, create=True
            ),
        )

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints on disk, oldest first."""
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        """Global step of the newest complete checkpoint, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def save(self, step: int, states: TrainState, loop: LoopState) -> int:
        """Save ``states`` and ``loop`` at ``step``; a step already on disk is left as it is."""
        if step in self.manager.all_steps():
            return step
        host = _to_saveable(distributed.gather(states))  # full arrays on every process
        meta = {
            "loop": loop.to_json(),
            "checksums": dict(zip(_leaf_names(host), map(_digest, jax.tree.leaves(host)))),
        }
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host), meta=ocp.args.JsonSave(meta)
            ),
        )
        self.manager.wait_until_finished()
        return step

    def _read_loop(self, step: int) -> tuple[LoopState, dict]:
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        if not isinstance(meta, dict) or "loop" not in meta or "checksums" not in meta:
            raise ValueError("its meta item has no loop state or checksums")
        return LoopState.from_json(meta["loop"]), meta["checksums"]

    def _read_state(self, step: int, template: TrainState, want: dict) -> TrainState:
        template = _to_saveable(template)
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
        restored = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target))
        ).state
        # Rebuild with the template's tree types (Orbax may hand back tuples for NamedTuples).
        leaves = [np.asarray(x) for x in jax.tree.leaves(restored)]
        tree = jax.tree.unflatten(jax.tree.structure(template), leaves)
        names = _leaf_names(tree)
        if sorted(want) != sorted(names):
            raise ValueError("its arrays do not match the recorded list of arrays")
        for name, leaf in zip(names, jax.tree.leaves(tree)):
            if _digest(leaf) != want[name]:
                raise ValueError(f"array {name} does not match its recorded SHA-256")
        tree = jax.tree.map(lambda t, x: np.asarray(x, t.dtype), template, tree)
        return TrainState(**{f: tree.get(f) for f in TrainState._fields})

    def restore(
        self, make_template: Callable[[LoopState], TrainState], *, only_step: int | None = None
    ):
        """``(states, loop)`` of the newest intact checkpoint, or None if there is none.

        Args:
          make_template: builds a state of the right structure, shapes and dtypes for a saved
            loop state (the live members' freshly initialised states, stacked).
          only_step: restore this step (and nothing older) instead of the newest.

        Raises:
          CheckpointError: checkpoints exist but every one is damaged, or they were written by
            an incompatible version.
        """
        problems = []
        candidates = [only_step] if only_step is not None else list(reversed(self.steps()))
        for step in candidates:
            try:
                loop, want = self._read_loop(step)
            except ValueError as e:
                if "loop state has version" in str(e):
                    raise CheckpointError(str(e)) from None
                problems.append(self._set_aside(step, e))
                continue
            except Exception as e:  # noqa: BLE001 -- Orbax/TensorStore failures: damaged
                problems.append(self._set_aside(step, e))
                continue
            template = make_template(loop)  # our own code: its errors are not damage
            try:
                return self._read_state(step, template, want), loop
            except Exception as e:  # noqa: BLE001 -- unreadable or altered arrays: damaged
                problems.append(self._set_aside(step, e))
        if problems:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: "
                + "; ".join(problems)
                + f". The damaged ones are in {self.workdir / 'damaged_checkpoints'}; start again "
                "in a new workdir, or remove the checkpoints folder to restart this one from zero."
            )
        return None

    def _set_aside(self, step: int, error: Exception) -> str:
        """Move a damaged checkpoint out of the way (kept for inspection); returns why."""
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        src = self.directory / str(step)
        dst_dir = self.workdir / "damaged_checkpoints"
        if distributed.is_main_process() and src.exists():
            dst_dir.mkdir(exist_ok=True)
            dst = dst_dir / str(step)
            if dst.exists():
                shutil.rmtree(dst)
            shutil.move(str(src), str(dst))
            (dst_dir / f"{step}.reason.txt").write_text(reason + "\n")
        self.manager.reload()
        warnings.warn(
            f"checkpoint step {step} in {self.directory} is damaged ({reason}); moved to "
            f"{dst_dir / str(step)}, trying an older one.",
            DamagedCheckpointWarning,
            stacklevel=4,
        )
        return f"step {step}: {reason}"

    def close(self) -> None:
        self.manager.close()


def read_loop_state(workdir) -> LoopState | None:
    """The loop state of a run's newest checkpoint (for tools; no arrays are read), or None."""
    folder = Path(workdir) / "checkpoints"
    steps = (
        sorted(int(p.name) for p in folder.glob("[0-9]*") if p.is_dir()) if folder.exists() else []
    )
    for step in reversed(steps):
        path = folder / str(step) / "meta" / "metadata"
        try:
            return LoopState.from_json(json.loads(path.read_text())["loop"])
        except (OSError, ValueError, KeyError):
            continue
    return None
