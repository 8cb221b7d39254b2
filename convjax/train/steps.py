"""Pure train and eval steps on the :class:`~convjax.train.state.TrainState` pytree.

:func:`make_train_step` returns a *member step* in the form ``convjax.train.population``
expects::

    train_step(state, batch, key, hparams) -> (state, metrics)

- ``state``: a :class:`~convjax.train.state.TrainState` (params, batch stats, optax state,
  EMA params, step count) -- arrays only.
- ``batch``: ``{"image": (B, H, W, C) uint8, "label": (B,) int32}``, already on the device.
- ``key``: a ``jax.random`` key for this step; it is split into the augmentation key and the
  dropout key, so the step is a deterministic function of its arguments.
- ``hparams``: a dict of per-run numeric hyperparameters that are not in the optimizer
  state: ``{"label_smoothing": float or () array}`` and, for a step built with
  ``dropout_paths``, ``"dropout_rate"`` (the rate of those Dropout layers). Arrays make the
  step vmappable or stackable over a population with different values (optimizer
  hyperparameters such as the learning rate live in ``state.opt_state.hyperparams``).
- ``metrics``: ``{"loss": () float32, "correct": () int32}`` (mean loss and the number of
  correct top-1 predictions in the batch), plus ``"ok": () bool`` (the loss and the gradient
  were finite) for a step built with ``freeze_on_divergence=True``, and for one built with
  ``health=True`` ``"health": {"grad", "update", "param"}``, each ``(L,)`` float32, the L2
  norms per layer (:func:`health_layers` names them).

With ``freeze_on_divergence=True``, a member whose ``state.active`` is False, or whose loss or
gradient is not finite in this step, gets its state back unchanged (every array, the step
count included) and ``active`` cleared: a diverged member of a population is frozen at its
last good parameters while the others train on, with exactly the numbers they would have
alone (a select by a true flag returns its first operand bit for bit).

Nothing is jitted here: the caller decides (``jax.jit``, an unrolled k-step jit, ``lax.scan``
or a population strategy), see :mod:`convjax.train.loops`.

:func:`make_eval_step` gives ``eval_step(state, images, labels) -> {"loss_sum", "correct"}``
on one batch, using the EMA parameters when the state has them and the running batch-norm
statistics (``model.eval()``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import convjax.functional as cf
import convjax.nn as cnn
from convjax import data as cdata
from convjax.train.state import ModelDef, TrainState, merge_model


def smoothed_cross_entropy(logits, labels, label_smoothing):
    """Mean softmax cross-entropy with label smoothing ``eps`` that may be a traced array.

    ``cf.softmax_cross_entropy`` needs a concrete ``eps``; the loss is linear in ``eps``
    (``(1 - eps) * CE_0 + eps * CE_1``), so a traced ``eps`` (a population's per-member value)
    combines the two concrete cases.

    Args:
      logits: ``(B, C)``; labels: ``(B,)`` int; label_smoothing: float or ``()`` array.

    Returns:
      scalar float32.
    """
    if isinstance(label_smoothing, (int, float)):
        return cf.softmax_cross_entropy(logits, labels, label_smoothing=float(label_smoothing))
    hard = cf.softmax_cross_entropy(logits, labels, label_smoothing=0.0)
    uniform = cf.softmax_cross_entropy(logits, labels, label_smoothing=1.0)
    eps = jnp.asarray(label_smoothing, hard.dtype)
    return (1.0 - eps) * hard + eps * uniform


def health_layers(params) -> list[tuple[str, list[int]]]:
    """``[(layer name, [leaf indices])]``: the parameter leaves grouped by the module that owns
    them (``"features.layers.0"``), in leaf order; the norms of ``health=True`` steps follow it."""
    groups: dict[str, list[int]] = {}
    for i, (path, _) in enumerate(jax.tree_util.tree_flatten_with_path(params)[0]):
        parts = [str(getattr(p, "key", getattr(p, "idx", getattr(p, "name", p)))) for p in path]
        if parts and parts[-1] == "value":  # an nnx.Variable's array
            parts = parts[:-1]
        groups.setdefault(".".join(parts[:-1]) or "(model)", []).append(i)
    return list(groups.items())


def _layer_norms(tree, groups) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    sq = [jnp.sum(jnp.square(leaf.astype(jnp.float32))) for leaf in leaves]
    return jnp.sqrt(jnp.stack([sum(sq[i] for i in idx) for _, idx in groups]))


def make_train_step(
    model_def: ModelDef,
    tx: optax.GradientTransformation,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    augment: Mapping | None = None,
    ema_decay: float = 0.0,
    rng_streams: Sequence[str] = ("default",),
    dropout_paths: Sequence[tuple] | None = None,
    freeze_on_divergence: bool = False,
    health: bool = False,
):
    """Build the pure member step ``train_step(state, batch, key, hparams)`` (module docstring).

    Args:
      model_def: from :func:`convjax.train.state.create_train_state`.
      tx: the optimizer that built ``state.opt_state``.
      mean, std: per-channel normalisation in ``[0, 1]`` units (``ImageDataset.train_mean_std``).
      augment: keyword arguments of :func:`convjax.data.augment` (``crop_padding``, ``flip``,
        ``max_translate``); None or all-off skips augmentation.
      ema_decay: EMA factor in ``(0, 1)`` when ``state.ema_params`` is not None.
      rng_streams: the model's RNG stream names (``state.rng_stream_names``); each is reseeded
        from the step's dropout key.
      dropout_paths: module paths of the Dropout layers whose rate comes from
        ``hparams["dropout_rate"]`` (a population's per-member rate); None keeps the rates the
        model was built with.
      freeze_on_divergence: check the loss and the gradient for NaN/Inf and freeze the member
        when they are not finite (module docstring); adds ``"ok"`` to the metrics. A population
        needs it; a single run stops on the first non-finite loss instead, and leaves the step
        exactly the program it has always been (extra outputs change XLA's fusion and with it
        the last bits of the batch-norm statistics).
      health: also return per-layer gradient, update and parameter norms (``"health"``).

    Returns:
      ``train_step(state, batch, key, hparams) -> (state, metrics)``.
    """
    aug = dict(augment or {})
    use_aug = (
        bool(aug.get("crop_padding")) or bool(aug.get("flip")) or bool(aug.get("max_translate"))
    )
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)

    def train_step(state: TrainState, batch, key, hparams):
        key_aug, key_drop = jax.random.split(key)
        images = batch["image"]
        if use_aug:
            images = cdata.augment(key_aug, images, **aug)
        x = cdata.normalize(images, mean, std)
        labels = batch["label"]

        def loss_fn(params):
            model = merge_model(model_def, params, state.batch_stats)
            model.train()
            if dropout_paths:
                cnn.set_dropout_rate(model, hparams["dropout_rate"], paths=dropout_paths)
            if rng_streams:
                nnx.reseed(model, **{name: key_drop for name in rng_streams})
            logits = model(x)
            loss = smoothed_cross_entropy(logits, labels, hparams.get("label_smoothing", 0.0))
            return loss, (logits, nnx.state(model, nnx.BatchStat))

        (loss, (logits, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema = state.ema_params
        if ema is not None:
            ema = optax.incremental_update(params, ema, 1.0 - ema_decay)
        new_state = TrainState(state.step + 1, params, batch_stats, opt_state, ema, state.active)
        correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32)
        metrics = {"loss": loss, "correct": correct}
        if freeze_on_divergence:
            ok = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
            keep = ok & state.active
            new_state = jax.tree.map(lambda new, old: jnp.where(keep, new, old), new_state, state)
            new_state = new_state._replace(active=keep)
            metrics["ok"] = ok
        if health:
            groups = health_layers(state.params)
            metrics["health"] = {
                "grad": _layer_norms(grads, groups),
                "update": _layer_norms(updates, groups),
                "param": _layer_norms(state.params, groups),
            }
        return new_state, metrics

    return train_step


def make_eval_step(model_def: ModelDef, *, mean, std, tta_flip: bool = False):
    """Build ``eval_step(state, images, labels) -> {"loss_sum", "correct", "count"}``.

    Uses ``state.ema_params`` if present (else ``state.params``) and the running batch-norm
    statistics. With ``tta_flip`` the logits are the mean of the log-probabilities of the image
    and its horizontal mirror (test-time augmentation; only sensible when training used
    flips). The step takes ``images`` ``(B, H, W, C)`` uint8 and ``labels`` ``(B,)`` int32.

    Args:
      model_def: the model's structure (:class:`~convjax.train.state.ModelDef`).
      mean, std: the training split's channel statistics, ``(C,)``, for normalisation.
      tta_flip: average the predictions of each image and its mirror.
    """
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)

    def eval_step(state: TrainState, images, labels):
        params = state.params if state.ema_params is None else state.ema_params
        model = merge_model(model_def, params, state.batch_stats)
        model.eval()
        x = cdata.normalize(images, mean, std)
        logits = model(x)
        if tta_flip:
            logits = jax.nn.log_softmax(logits) + jax.nn.log_softmax(model(x[:, :, ::-1, :]))
            logits = logits / 2.0
        loss = cf.softmax_cross_entropy(logits, labels, reduction="sum")
        correct = jnp.sum(jnp.argmax(logits, -1) == labels).astype(jnp.int32)
        return {"loss_sum": loss, "correct": correct, "count": jnp.int32(labels.shape[0])}

    return eval_step
