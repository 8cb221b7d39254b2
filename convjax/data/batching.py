"""Batching on the device: index arrays that say which examples form each batch.

The training split lives on the device as one array; an epoch is a ``(num_batches, batch_size)``
index array, and batch ``b`` is ``jnp.take(images, idx[b], axis=0)``. Nothing crosses from
the host per batch, and the whole index array is made by one jitted permutation.

    idx = epoch_permutation(key, n, batch_size)           # training: shuffled
    for b in range(idx.shape[0]):
        x = jnp.take(train_x, idx[b], axis=0)

    idx, mask = sequential_batches(n_test, batch_size)     # evaluation: every example once
    # weight each example's metric by mask (False marks padding)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["num_batches", "epoch_permutation", "sequential_batches"]


def _check_sizes(n, batch_size) -> None:
    for arg, value in (("n", n), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{arg}={value!r} must be a positive int.")


def num_batches(n: int, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches in one epoch of ``n`` examples: ``n // batch_size``, or rounded up."""
    _check_sizes(n, batch_size)
    return n // batch_size if drop_remainder else -(-n // batch_size)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _permutation_batches(key, n: int, batch_size: int, drop_remainder: bool):
    order = jax.random.permutation(key, n).astype(jnp.int32)
    batches = num_batches(n, batch_size, drop_remainder)
    total = batches * batch_size
    if total > n:
        # Fill the last batch from the start of this epoch's order (wrapping round if
        # batch_size > n): every example is seen at least once and the batch keeps its static
        # shape (no recompilation).
        order = jnp.tile(order, -(-total // n))
    return order[: batches * batch_size].reshape(batches, batch_size)


def epoch_permutation(key, n: int, batch_size: int, drop_remainder: bool = True):
    """Shuffled batch indices for one epoch: int32 ``(num_batches, batch_size)``.

    One uniform random permutation of ``range(n)`` (from ``key``) cut into batches.

    Args:
      key: a ``jax.random`` key; use a fresh one per epoch (e.g. ``fold_in(key, epoch)``).
      n: number of examples.
      batch_size: examples per batch.
      drop_remainder: ``True``: drop the last ``n % batch_size`` examples of the order (each
        epoch drops different ones), giving ``n // batch_size`` batches. ``False``: keep them
        and fill the last batch with the first examples of the same order, giving
        ``ceil(n / batch_size)`` batches in which ``-n % batch_size`` examples appear twice.

    Returns:
      int32 device array ``(num_batches, batch_size)``, entries in ``[0, n)``.

    Raises:
      ValueError: naming ``n``, ``batch_size`` or ``drop_remainder`` when invalid, or when
        ``drop_remainder=True`` leaves no batch (``batch_size > n``).
    """
    _check_sizes(n, batch_size)
    if not isinstance(drop_remainder, bool):
        raise ValueError(f"drop_remainder={drop_remainder!r} must be True or False.")
    if drop_remainder and batch_size > n:
        raise ValueError(
            f"batch_size={batch_size} is larger than n={n}, so drop_remainder=True leaves no "
            "batch; use a smaller batch_size or drop_remainder=False."
        )
    return _permutation_batches(key, int(n), int(batch_size), drop_remainder)


def sequential_batches(n: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Every example once, in order, for evaluation: ``(indices, mask)``.

    Returns:
      ``indices``: int32 ``(ceil(n / batch_size), batch_size)``, ``0, 1, ..., n - 1`` then
      zeros padding the last batch; ``mask``: bool of the same shape, ``False`` on padding.
      Weight per-example metrics by ``mask`` and divide by ``n``. Numpy arrays: they depend
      only on ``(n, batch_size)``, so compute them once and put them on the device.

    Raises:
      ValueError: naming ``n`` or ``batch_size`` when not a positive int.
    """
    batches = num_batches(n, batch_size, drop_remainder=False)
    flat = np.arange(batches * batch_size, dtype=np.int32)
    mask = flat < n
    indices = np.where(mask, flat, 0).astype(np.int32)
    return indices.reshape(batches, batch_size), mask.reshape(batches, batch_size)
