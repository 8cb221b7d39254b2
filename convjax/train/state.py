"""The train state: a pure pytree of arrays, split from an NNX model once.

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
    """

    step: jax.Array
    params: PyTree
    batch_stats: PyTree
    opt_state: PyTree
    ema_params: PyTree | None


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
    )
    return model_def, state


def rng_stream_names(model: nnx.Module) -> tuple[str, ...]:
    """Names (tags) of the ``nnx.RngStream`` objects inside ``model``, e.g. ``("dropout",)``."""
    names = []
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.RngStream) and node.tag not in names:
            names.append(node.tag)
    return tuple(names)
