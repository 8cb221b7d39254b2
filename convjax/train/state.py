"""The train state (a pure pytree of arrays, split from an NNX model once) and the loop state
(the typed, versioned bookkeeping of a run that the checkpoint saves beside it).

A model is split with ``nnx.split(model, nnx.Param, nnx.BatchStat, ...)`` into its graph
definition (static: the Python structure), its parameters, its batch-norm running statistics
and the rest (dropout RNG streams). The train and eval steps (:mod:`convjax.train.steps`) take
the arrays and merge them back inside ``jit``, so the state is an ordinary pytree: it can be
checkpointed by Orbax, stacked across population members (``convjax.train.population.stack``)
or sharded, and the steps stay pure functions.

Dropout streams are *not* part of the state: every step reseeds them from its own key, which
is derived from ``(seed, epoch, batch)``, so a run resumed from a checkpoint draws exactly the
masks of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

PyTree = Any


class TrainState(NamedTuple):
    """Everything that changes during training (a pytree of arrays).

    Attributes:
      step: int32 scalar, optimizer steps taken.
      params: the model's ``nnx.Param`` arrays (an ``nnx.State``).
      batch_stats: the model's ``nnx.BatchStat`` arrays (running means/variances); may be
        empty for a model without batch norm.
      opt_state: the optax state (with ``hyperparams`` from ``inject_hyperparams``).
      ema_params: exponential moving average of ``params`` (same tree) or ``None`` when EMA
        is off.
      active: bool scalar; False freezes the member (the step leaves every array as it was).
        The step clears it itself when the loss or the gradient stops being finite, so a
        diverged member keeps its last good parameters; the loop clears it when a member
        stops early.
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    ema_params: PyTree | None
    active: jax.Array


class ModelDef(NamedTuple):
    """The static half of a split model: its graph definition and its RNG-stream state."""

    graphdef: Any
    rng_state: PyTree


def split_model(model: nnx.Module) -> tuple[ModelDef, PyTree, PyTree]:
    """``model -> (ModelDef, params, batch_stats)`` (the model itself is not modified)."""
    graphdef, params, batch_stats, rest = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    return ModelDef(graphdef, rest), params, batch_stats


def merge_model(model_def: ModelDef, params: PyTree, batch_stats: PyTree) -> nnx.Module:
    """A fresh model object from its arrays (copies, so the caller's arrays are never mutated)."""
    return nnx.merge(model_def.graphdef, params, batch_stats, model_def.rng_state, copy=True)


def create_train_state(
    model: nnx.Module, tx: optax.GradientTransformation, *, ema: bool = False
) -> tuple[ModelDef, TrainState]:
    """Split ``model`` and initialise the optimizer (and EMA copy) for it.

    Args:
      model: an NNX model (e.g. ``convjax.models.PatternCNN``), freshly initialised.
      tx: the optimizer (``convjax.train.optim.make_optimizer``).
      ema: keep an exponential moving average of the parameters.

    Returns:
      ``(model_def, state)``: the static part for the steps, and the step-0 :class:`TrainState`.
    """
    model_def, params, batch_stats = split_model(model)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=batch_stats,
        opt_state=tx.init(params),
        ema_params=jax.tree.map(jnp.array, params) if ema else None,
        active=jnp.ones((), bool),
    )
    return model_def, state


def rng_stream_names(model: nnx.Module) -> tuple[str, ...]:
    """Names (tags) of the ``nnx.RngStream`` objects inside ``model``, e.g. ``("dropout",)``."""
    names = []
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.RngStream) and node.tag not in names:
            names.append(node.tag)
    return tuple(names)


# ---------------------------------------------------------------------------- loop state

#: Per-epoch lists every member's history holds (None where not measured that epoch).
HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
    "learning_rate",
    "epoch_time_s",
    "images_per_s",
    "elapsed_s",
)

#: Status of a member: still training, done, stopped by early stopping, frozen after a
#: non-finite loss or gradient, or stopped by a population schedule (successive halving).
STATUSES = ("training", "finished", "stopped_early", "diverged", "stopped")


@dataclasses.dataclass
class MemberLog:
    """One member's bookkeeping: its history and where it stands.

    Attributes:
      history: per-epoch lists, keys :data:`HISTORY_KEYS`.
      status: one of :data:`STATUSES`.
      stopped_epoch: epochs run when the member left training (None while training; the last
        one may be partial when a schedule stopped it mid-epoch).
      stopped_step: optimizer steps the member had run when it left training.
      diverged_step: global step whose loss or gradient was not finite (None if it never was).
      hparams: its current population hyperparameters (``learning_rate``, ``label_smoothing``
        ...), which population-based training changes.
      hparam_schedule: ``[{"step", "copied_from", **hparams}]``, one entry at the start and one
        per population-based-training round that replaced the member.
      best_val_accuracy, bad_epochs: early-stopping counters.
      loss_sum, correct, seen: running sums of the current epoch (a mid-epoch checkpoint
        resumes them).
    """

    history: dict[str, list] = dataclasses.field(
        default_factory=lambda: {k: [] for k in HISTORY_KEYS}
    )
    status: str = "training"
    stopped_epoch: int | None = None
    stopped_step: int | None = None
    diverged_step: int | None = None
    hparams: dict[str, float] = dataclasses.field(default_factory=dict)
    hparam_schedule: list[dict] = dataclasses.field(default_factory=list)
    best_val_accuracy: float | None = None
    bad_epochs: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seen: int = 0


LOOP_STATE_VERSION = 1


@dataclasses.dataclass
class LoopState:
    """Where a run of N >= 1 members stands; saved as JSON with every checkpoint.

    Attributes:
      version: :data:`LOOP_STATE_VERSION` of the code that wrote it.
      epoch: epochs finished; batch: batches done in the current epoch.
      live: member indices whose state is in the stacked train state, in stack order (a
        member that stops leaves the stack, so its compute is reclaimed).
      members: one :class:`MemberLog` per member, all N.
      train_time_s, compile_s: time in train calls (compiles included), and in first calls.
      steady_images, steady_time_s: images and seconds of calls that compiled nothing.
    """

    epoch: int
    batch: int
    live: list[int]
    members: list[MemberLog]
    train_time_s: float = 0.0
    compile_s: float = 0.0
    steady_images: int = 0
    steady_time_s: float = 0.0
    version: int = LOOP_STATE_VERSION

    @classmethod
    def fresh(cls, n: int) -> LoopState:
        return cls(epoch=0, batch=0, live=list(range(n)), members=[MemberLog() for _ in range(n)])

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LoopState:
        """Read a saved loop state; a record of another version is an error naming the fix."""
        version = data.get("version") if isinstance(data, dict) else None
        if version != LOOP_STATE_VERSION:
            raise ValueError(
                f"the checkpoint's loop state has version {version!r}, this convjax reads "
                f"version {LOOP_STATE_VERSION}; start the run in a new workdir (or remove its "
                "checkpoints folder)."
            )
        fields = dict(data)
        fields["members"] = [MemberLog(**m) for m in data["members"]]
        return cls(**fields)
