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

Weight decay is applied to kernels only (leaves with two or more axes), not to biases or batch
norm scales: decaying a BatchNorm scale only shrinks the next layer's effective step size.
For SGD it is the classic coupled L2 term (added to the gradient before momentum); for AdamW
it is decoupled (Loshchilov & Hutter 2019); plain Adam ignores it unless you pick ``"adamw"``.
"""

from __future__ import annotations

import jax
import optax

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")


def _choice(value, allowed, name):
    if value not in allowed:
        raise ValueError(
            f"config.{name}={value!r} is not supported; use one of {', '.join(map(repr, allowed))}."
        )


def _positive(value, name, allow_zero=False):
    ok = value >= 0 if allow_zero else value > 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"config.{name}={value!r} must be a number {bound}.")


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
    _choice(config.schedule, SCHEDULES, "schedule")
    _positive(config.learning_rate, "learning_rate")
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch={steps_per_epoch!r} must be >= 1.")
    total = max(1, int(config.num_epochs) * steps_per_epoch)
    lr = float(config.learning_rate)
    warmup = int(round(float(config.get("warmup_epochs", 0.0)) * steps_per_epoch))
    if warmup < 0 or warmup >= total and config.schedule != "constant":
        raise ValueError(
            f"config.warmup_epochs={config.get('warmup_epochs')!r} gives {warmup} warmup steps "
            f"of {total}; use 0 <= warmup_epochs < num_epochs."
        )
    if config.schedule == "onecycle":
        pct = float(config.onecycle_pct_start)
        if not 0.0 < pct < 1.0:
            raise ValueError(
                f"config.onecycle_pct_start={pct!r} must be in (0, 1): the fraction of the steps "
                f"spent raising the learning rate (0.25 is common)."
            )
        return optax.linear_onecycle_schedule(
            total,
            lr,
            pct_start=pct,
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


def make_optimizer(config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The optimizer of ``config`` (see the module docstring), with injected hyperparameters.

    Returns:
      ``optax.GradientTransformation`` whose state holds ``hyperparams`` (``learning_rate``
      is the schedule's current value; ``weight_decay``, ``momentum`` ... are arrays).
    """
    _choice(config.optimizer, OPTIMIZERS, "optimizer")
    _positive(config.weight_decay, "weight_decay", allow_zero=True)
    schedule = make_schedule(config, steps_per_epoch)
    wd = float(config.weight_decay)
    if config.optimizer == "sgd":
        momentum = float(config.momentum)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"config.momentum={momentum!r} must be in [0, 1).")

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


def current_learning_rate(opt_state) -> float | None:
    """The learning rate stored in an ``inject_hyperparams`` state (None if there is none)."""
    hp = getattr(opt_state, "hyperparams", None)
    if hp is None or "learning_rate" not in hp:
        return None
    return float(hp["learning_rate"])
