"""Optimizers and learning-rate schedules built from a config.

:func:`make_schedule` turns ``config.schedule`` into an optax schedule (a function of the step
count) and :func:`make_optimizer` into an ``optax.GradientTransformation``. Every optimizer is
wrapped in ``optax.inject_hyperparams`` so its hyperparameters (``learning_rate``,
``weight_decay`` ...) live in the optimizer state as arrays: a population can stack them per
member (``convjax.train.population.set_hyperparams``) and a checkpoint carries them.

Config fields read (see ``configs/default.py``): ``optimizer`` (``"sgd"``, ``"adam"``,
``"adamw"``), ``learning_rate``, ``momentum``, ``nesterov``, ``weight_decay``, ``schedule``
(``"constant"``, ``"cosine"``, ``"onecycle"``), ``warmup_epochs``, ``onecycle_pct_start``,
``onecycle_div_factor``, ``onecycle_final_div_factor``.

A population (several members, one optimizer) uses ``make_optimizer(..., member_rates=True)``:
the schedule runs at a unit peak rate and each member's rate is an ``inject_hyperparams`` array
``step_size`` applied after the optimizer. Every schedule here is the peak rate times a function
of the step and every optimizer multiplies its final update by the rate, so this is the same
arithmetic as a single run up to float rounding; a single run keeps the rate inside the
schedule, so its numbers stay exactly as recorded.

Fields are checked by :func:`convjax.train.config.prepare` before anything here runs.

Weight decay is applied to kernels only (leaves with two or more axes), not to biases or batch
norm scales: decaying a BatchNorm scale only shrinks the next layer's effective step size.
For SGD it is the classic coupled L2 term (added to the gradient before momentum); for AdamW
it is decoupled (Loshchilov & Hutter 2019); plain Adam ignores it unless you pick ``"adamw"``.
"""

from __future__ import annotations

import jax
import ml_collections
import numpy as np
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")


def make_schedule(config, steps_per_epoch: int) -> optax.Schedule:
    """The learning-rate schedule ``step -> lr`` for ``config.num_epochs`` epochs.

    - ``constant``: ``learning_rate`` throughout (after the optional linear warmup).
    - ``cosine``: linear warmup over ``warmup_epochs`` from 0 to ``learning_rate``, then a
      cosine decay to 0 at the last step.
    - ``onecycle``: Smith & Topin's one-cycle (linear form): from
      ``learning_rate / onecycle_div_factor`` up to ``learning_rate`` over the first
      ``onecycle_pct_start`` of the steps, then down to
      ``learning_rate / (div_factor * final_div_factor)``.

    Args:
      config: a ConfigDict with the fields above and ``num_epochs``.
      steps_per_epoch: optimizer steps in one epoch (> 0).

    Returns:
      An optax schedule (a function of the int step count).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r} must be >= 1.")
    total = max(1, int(config.num_epochs) * steps_per_epoch)
    lr = float(config.learning_rate)
    warmup = int(round(float(config.get("warmup_epochs", 0.0)) * steps_per_epoch))
    if config.schedule == "onecycle":
        return optax.linear_onecycle_schedule(
            total,
            lr,
            pct_start=float(config.onecycle_pct_start),
            div_factor=float(config.onecycle_div_factor),
            final_div_factor=float(config.onecycle_final_div_factor),
        )
    if config.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.0)
    if warmup:
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
    return optax.constant_schedule(lr)


def decay_mask(params):
    """``True`` for the leaves weight decay applies to: kernels (``ndim >= 2``)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def make_optimizer(
    config, steps_per_epoch: int, *, member_rates: bool = False
) -> optax.GradientTransformation:
    """The optimizer of ``config`` (see the module docstring), with injected hyperparameters.

    Args:
      config: a prepared run config.
      steps_per_epoch: optimizer steps per epoch.
      member_rates: build a population's optimizer: unit-rate schedule, then a per-member
        ``step_size`` (set each member's values with :func:`member_hyperparams`).

    Returns:
      ``optax.GradientTransformation`` whose state holds ``hyperparams`` (``learning_rate``
      is the schedule's current value; ``weight_decay``, ``momentum`` ... are arrays).
    """
    if member_rates:
        unit = ml_collections.ConfigDict(config.to_dict())
        unit.learning_rate = 1.0
        return optax.chain(
            make_optimizer(unit, steps_per_epoch),
            optax.inject_hyperparams(optax.scale)(step_size=float(config.learning_rate)),
        )
    schedule = make_schedule(config, steps_per_epoch)
    wd = float(config.weight_decay)
    if config.optimizer == "sgd":
        momentum = float(config.momentum)

        def sgd(learning_rate, weight_decay, momentum):
            return optax.chain(
                optax.add_decayed_weights(weight_decay, mask=decay_mask),
                optax.sgd(learning_rate, momentum=momentum, nesterov=bool(config.nesterov)),
            )

        return optax.inject_hyperparams(sgd)(
            learning_rate=schedule, weight_decay=wd, momentum=momentum
        )
    if config.optimizer == "adamw":
        # ``mask`` is a function; without static_args inject_hyperparams would call it as a
        # schedule of the step count and decay nothing.
        return optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
            learning_rate=schedule, weight_decay=wd, mask=decay_mask
        )
    return optax.inject_hyperparams(optax.adam)(learning_rate=schedule)


def member_hyperparams(config) -> dict[str, float]:
    """The per-member values of a ``member_rates=True`` optimizer's injected hyperparameters."""
    hp = {"step_size": float(config.learning_rate)}
    if config.optimizer in ("sgd", "adamw"):
        hp["weight_decay"] = float(config.weight_decay)  # plain adam has no weight decay
    if config.optimizer == "sgd":
        hp["momentum"] = float(config.momentum)
    return hp


def learning_rates(hyperparams) -> np.ndarray:
    """Each member's current learning rate from its injected hyperparameters (host arrays):
    the schedule's value, times ``step_size`` for a population's optimizer."""
    lr = np.asarray(hyperparams["learning_rate"], np.float64)
    if "step_size" in hyperparams:
        lr = lr * np.asarray(hyperparams["step_size"], np.float64)
    return lr
