"""Dropout: the pure function :func:`dropout` and the layer :class:`Dropout`.

Layer 1 has no dropout op, so the math lives here as a small pure function (jax only) that
the layer calls; it can move to ``convjax.functional`` unchanged.

Inverted dropout (Srivastava et al. 2014, as the CS231n notes and every framework implement it):
in training each unit is kept with probability ``1 - rate`` and scaled by
``1 / (1 - rate)``, so the expected activation is unchanged and evaluation is the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.nn import _checks, _trace

__all__ = ["dropout", "Dropout", "set_dropout_rate"]


def dropout(x, rate: float, key, *, broadcast_dims: Sequence[int] = ()):
    """Zero each element of ``x`` with probability ``rate``; scale the rest by ``1/(1-rate)``.

    Args:
      x: array of any shape.
      rate: drop probability in ``[0, 1)``: a Python number (checked), or a scalar array, which
        may be traced (a population's per-member rate; not range-checked, the caller owns it).
      key: a ``jax.random`` key; the same key gives the same mask.
      broadcast_dims: axes along which the mask is shared (e.g. the spatial axes
        ``(1, 2)`` of an NHWC input drop whole feature maps: "spatial dropout").

    Returns:
      array of ``x``'s shape and dtype.
    """
    rate = _rate(rate, "dropout")
    if not _is_traced(rate) and rate == 0.0:
        return x
    mask_shape = list(x.shape)
    for d in broadcast_dims:
        if not -x.ndim <= d < x.ndim:
            raise ValueError(
                f"dropout: broadcast_dims={tuple(broadcast_dims)!r} contains {d}, outside the "
                f"{x.ndim} axes of x (shape {tuple(x.shape)}); use axes in [{-x.ndim}, "
                f"{x.ndim - 1}]."
            )
        mask_shape[d] = 1
    keep = 1.0 - rate
    mask = jax.random.bernoulli(key, keep, tuple(mask_shape))
    return jnp.where(mask, x / jnp.asarray(keep, x.dtype), jnp.zeros((), x.dtype))


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def _rate(rate, owner: str):
    """A checked Python float, or a traced scalar passed through (its values are unknown)."""
    if hasattr(rate, "__array__") or _is_traced(rate):
        if jnp.ndim(rate) != 0:
            raise ValueError(
                f"{owner}: rate has shape {jnp.shape(rate)}; pass one scalar rate (vmap a "
                "population over its members instead)."
            )
        if _is_traced(rate):
            return rate
        rate = float(rate)
    return _checks.check_rate(rate, "rate", owner)


def set_dropout_rate(model: nnx.Module, rate, *, paths=None) -> int:
    """Set the rate of ``model``'s :class:`Dropout` layers, e.g. to a traced per-member array.

    A population trains members that differ in their dropout rate with one traced program:
    inside the step, the merged model's layers get the member's rate as an array (see
    ``convjax.train.steps.make_train_step``'s ``dropout_paths``).

    Args:
      model: any NNX module.
      rate: a Python number in ``[0, 1)`` or a scalar (possibly traced) array.
      paths: the module paths (tuples, as ``nnx.iter_modules`` gives) of the layers to set;
        None sets every Dropout layer.

    Returns:
      How many layers were set.

    Raises:
      ValueError: a bad rate, or a path that is not a Dropout layer of ``model``.
    """
    rate = _rate(rate, "set_dropout_rate")
    layers = {path: m for path, m in nnx.iter_modules(model) if isinstance(m, Dropout)}
    wanted = list(layers) if paths is None else [tuple(p) for p in paths]
    missing = [p for p in wanted if p not in layers]
    if missing:
        raise ValueError(
            f"set_dropout_rate: paths {missing} are not Dropout layers of the model; its Dropout "
            f"layers are at {sorted(layers)}."
        )
    for p in wanted:
        layers[p].rate = rate
    return len(wanted)


class Dropout(nnx.Module):
    """Dropout layer; active after ``model.train()``, the identity after ``model.eval()``.

    Args:
      rate: drop probability in ``[0, 1)``.
      broadcast_dims: axes that share one mask (see :func:`dropout`).
      deterministic: True turns dropout off. ``nnx.Module.train()`` / ``.eval()`` set it.
      rng_collection: name of the :class:`flax.nnx.Rngs` stream the masks come from
        (falls back to the ``default`` stream, as ``nnx.Rngs`` does).
      rngs: :class:`flax.nnx.Rngs`; the layer forks its own stream from it, so every call
        draws a fresh mask and the same seed replays the same masks.

    Shapes: any shape in, the same shape out.
    """

    def __init__(
        self,
        rate: float,
        *,
        broadcast_dims: Sequence[int] = (),
        deterministic: bool = False,
        rng_collection: str = "dropout",
        rngs: nnx.Rngs | None = None,
    ):
        self.rate = _checks.check_rate(rate, "rate", "Dropout")
        self.broadcast_dims = tuple(broadcast_dims)
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        # Fork a stream of our own (a new key per call) rather than keep the caller's Rngs.
        self.rngs = rngs[rng_collection].fork() if rngs is not None else nnx.data(None)

    def set_view(self, deterministic: bool | None = None):
        """Used by ``nnx.view(model, deterministic=...)``, the non-mutating ``train``/``eval``."""
        if deterministic is not None:
            self.deterministic = deterministic

    def __call__(self, x, *, key=None):
        """Apply dropout; ``key`` (a ``jax.random`` key) overrides the layer's stream."""
        # A traced rate (set_dropout_rate) cannot be compared in Python: it always runs.
        if self.deterministic or (not _is_traced(self.rate) and self.rate == 0.0):
            y = x
        else:
            if key is None:
                if self.rngs is None:
                    raise ValueError(
                        "Dropout: rngs=None and no key was passed, but the layer is in training "
                        "mode; build it with rngs=nnx.Rngs(seed), pass key=..., or call "
                        "model.eval()."
                    )
                key = self.rngs()
            y = dropout(x, self.rate, key, broadcast_dims=self.broadcast_dims)
        return _trace.record(self, x, y)
