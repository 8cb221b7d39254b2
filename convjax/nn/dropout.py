"""Dropout layer :class:`Dropout` over :func:`convjax.functional.dropout`, and
:func:`set_dropout_rate`.

The layer forks its own random stream and draws a fresh key per call; the math (inverted
dropout: keep with probability ``1 - rate``, scale by ``1 / (1 - rate)``) is the pure
function :func:`convjax.functional.dropout`.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx

import convjax.functional as cf
from convjax.functional.dropout import check_rate
from convjax.nn import _trace

__all__ = ["Dropout", "set_dropout_rate"]


def _is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


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
    rate = check_rate(rate, "set_dropout_rate")
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
        self.rate = check_rate(rate, "Dropout")
        if isinstance(broadcast_dims, (str, bytes)) or not hasattr(broadcast_dims, "__iter__"):
            raise ValueError(
                f"Dropout: broadcast_dims={broadcast_dims!r} must be a tuple of axes, e.g. (1, 2)."
            )
        self.broadcast_dims = tuple(broadcast_dims)
        for d in self.broadcast_dims:
            if isinstance(d, bool) or not isinstance(d, int):
                raise ValueError(
                    f"Dropout: broadcast_dims={self.broadcast_dims!r} contains {d!r}; give int "
                    f"axes, e.g. (1, 2) for the spatial axes of NHWC input."
                )
        if not isinstance(deterministic, bool):
            raise ValueError(f"Dropout: deterministic={deterministic!r} must be True or False.")
        self.deterministic = deterministic
        if not isinstance(rng_collection, str):
            raise ValueError(
                f"Dropout: rng_collection={rng_collection!r} must be the name of an nnx.Rngs "
                f"stream, e.g. 'dropout'."
            )
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
            y = cf.dropout(x, self.rate, key, broadcast_dims=self.broadcast_dims)
        return _trace.record(self, x, y)
