"""Loss landscape: a filter-normalised 2-D slice around the parameters (Li et al., NeurIPS 2018).

Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss Landscape of Neural Nets": plot
``L(theta + alpha d1 + beta d2)`` on a grid of ``(alpha, beta)``, where ``d1``, ``d2`` are random
Gaussian directions rescaled *filter by filter* to the norm of the corresponding filter of
``theta``: ``d_f <- d_f / ||d_f|| * ||theta_f||``. Without it, scale-invariant networks (ReLU
with batch norm) look sharp or flat depending on the weights' scale alone; with it, slices
of different networks can be compared.

Here a filter is one slice along a kernel's last axis (the output channel: convjax's conv
kernels are ``(*F, C_in / groups, C_out)`` and dense kernels ``(in, out)``). Parameters with
one axis or none (biases, batch-norm scales and offsets) get a zero direction, as in the
paper's experiments ("ignore biasbn"). Running statistics (``BatchStat``) are not moved.

The grid is evaluated as ONE ``jax.vmap`` over its points (the parameters become a batch of
``steps**2`` parameter sets); ``chunk_size`` splits it into vmapped chunks
(:func:`jax.lax.map` with ``batch_size``) when the batch does not fit in memory: the
activations of every point of a chunk are alive at once (the default PatternCNN on 256
images: about 150 MB per point). The loss runs on a copy of the model in evaluation mode.

Speed on XLA's CPU backend: a batch of parameter sets turns each convolution into a grouped
convolution, which that backend runs slowly. For the default PatternCNN on 128 images, 8
grid points took 5.2 s vmapped, 4.2 s as ``lax.map`` chunks of 4 and 1.7 s as 8 separate
jitted calls (one shared 2-core CPU under load 8: a ratio, not a benchmark).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["LossLandscape", "filter_normalized_direction", "loss_landscape"]


@dataclasses.dataclass(frozen=True)
class LossLandscape:
    """Result of :func:`loss_landscape`.

    Attributes:
      alphas, betas: the grid's coordinates along ``d1`` and ``d2``, ``(steps,)`` each.
      losses: ``(steps, steps)``; ``losses[i, j]`` is the loss at
        ``theta + alphas[i] d1 + betas[j] d2``.
      directions: ``(d1, d2)``, each an ``nnx.State`` of the model's parameters' structure.
    """

    alphas: np.ndarray
    betas: np.ndarray
    losses: np.ndarray
    directions: tuple[Any, Any]


def filter_normalized_direction(params, key):
    """A random direction in parameter space, rescaled filter by filter (Li et al. 2018).

    Args:
      params: a pytree of arrays (e.g. ``nnx.state(model, nnx.Param)``).
      key: ``jax.random`` key.

    Returns:
      a pytree like ``params``: for a leaf with two or more axes, Gaussian noise whose every
      slice ``[..., f]`` along the last axis has the norm of ``params[..., f]``; zeros for
      leaves with fewer axes (biases, batch-norm parameters).
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for leaf, k in zip(leaves, keys):
        leaf = jnp.asarray(leaf)
        if leaf.ndim < 2:
            out.append(jnp.zeros_like(leaf))
            continue
        d = jax.random.normal(k, leaf.shape, leaf.dtype)
        axes = tuple(range(leaf.ndim - 1))
        d_norm = jnp.sqrt(jnp.sum(d * d, axis=axes, keepdims=True))
        w_norm = jnp.sqrt(jnp.sum(leaf * leaf, axis=axes, keepdims=True))
        # A zero filter of theta gets a zero direction (its norm); d_norm > 0 almost surely.
        out.append(d * (w_norm / jnp.where(d_norm > 0, d_norm, 1)))
    return jax.tree.unflatten(treedef, out)


def _as_state(direction, params, i: int):
    """A direction as an ``nnx.State`` like ``params``; a pure dict is accepted too."""
    if jax.tree.structure(direction) == jax.tree.structure(params):
        return direction
    pure = nnx.to_pure_dict(params)
    if isinstance(direction, dict) and jax.tree.structure(direction) == jax.tree.structure(pure):
        state = jax.tree.map(lambda a: a, params)  # new Variables; params stay as they are
        nnx.replace_by_pure_dict(state, direction)
        return state
    raise ValueError(
        f"directions[{i}] has another structure than the model's parameters; build it like "
        f"nnx.state(model, nnx.Param) or its nnx.to_pure_dict (e.g. with "
        f"filter_normalized_direction)."
    )


def _check_grid(steps, span):
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ValueError(
            f"steps={steps!r} must be an int >= 2 (grid points per axis); an odd number puts "
            f"the unperturbed parameters on the grid, e.g. 21."
        )
    if not (isinstance(span, (int, float)) and span > 0):
        raise ValueError(
            f"span={span!r} must be a positive number: the grid covers [-span, span] along "
            f"each direction (1.0 is a filter-normalised step of the parameters' own size)."
        )


def loss_landscape(
    model,
    loss_fn: Callable[[Any], Any],
    *,
    key=None,
    steps: int = 21,
    span: float = 1.0,
    directions=None,
    chunk_size: int | None = None,
) -> LossLandscape:
    """Loss on a ``steps x steps`` grid of ``theta + alpha d1 + beta d2`` (Li et al. 2018).

    Args:
      model: a ``flax.nnx`` model (not modified).
      loss_fn: ``loss_fn(model) -> scalar`` on the data it closes over, e.g.
        ``lambda m: cf.cross_entropy(m(images), labels)``; called with a perturbed copy in
        evaluation mode, under ``jax.vmap``.
      key: ``jax.random`` key for the two directions (unless ``directions`` is given).
      steps: grid points per axis (odd: the centre is ``theta`` itself).
      span: the grid covers ``[-span, span]`` along each direction.
      directions: ``(d1, d2)``, each like ``nnx.state(model, nnx.Param)`` or its
        ``nnx.to_pure_dict``, instead of two :func:`filter_normalized_direction` draws.
      chunk_size: grid points per vmapped chunk; None evaluates the whole grid as one batch.

    Returns:
      :class:`LossLandscape`.

    Raises:
      ValueError: bad ``steps``/``span``/``chunk_size``, no ``key`` and no ``directions``,
        directions of another structure than the parameters, or a non-scalar loss.
    """
    _check_grid(steps, span)
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size={chunk_size!r} must be None (one batch) or a positive int of grid "
            f"points per chunk."
        )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    if directions is None:
        if key is None:
            raise ValueError(
                "loss_landscape needs key=jax.random.key(seed) to draw its two directions "
                "(or directions=(d1, d2))."
            )
        k1, k2 = jax.random.split(key)
        directions = (
            filter_normalized_direction(params, k1),
            filter_normalized_direction(params, k2),
        )
    else:
        if not isinstance(directions, (tuple, list)) or len(directions) != 2:
            raise ValueError(
                f"directions must be a pair (d1, d2) of parameter pytrees; got "
                f"{type(directions).__name__}."
            )
        directions = tuple(_as_state(d, params, i) for i, d in enumerate(directions))
    d1, d2 = directions

    def loss_at(point):
        a, b = point[0], point[1]
        moved = jax.tree.map(lambda w, u, v: w + a * u + b * v, params, d1, d2)
        copy = nnx.merge(graphdef, moved, rest, copy=True)  # new Variables: nothing shared
        copy.eval()
        return jnp.asarray(loss_fn(copy))

    probe = jax.eval_shape(loss_at, jnp.zeros((2,), jnp.float32))
    if probe.shape != ():
        raise ValueError(
            f"loss_fn returned shape {probe.shape}; it must return one scalar (e.g. the "
            f"mean loss over the batch)."
        )
    alphas = np.linspace(-span, span, steps)
    betas = np.linspace(-span, span, steps)
    grid = np.stack(np.meshgrid(alphas, betas, indexing="ij"), axis=-1).reshape(-1, 2)
    grid = jnp.asarray(grid, jnp.float32)

    @jax.jit
    def evaluate(grid):
        if chunk_size is None:
            return jax.vmap(loss_at)(grid)
        return jax.lax.map(loss_at, grid, batch_size=chunk_size)

    losses = np.asarray(evaluate(grid)).reshape(steps, steps)
    return LossLandscape(alphas=alphas, betas=betas, losses=losses, directions=(d1, d2))
