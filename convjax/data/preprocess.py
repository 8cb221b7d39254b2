"""Normalisation: per-channel statistics of a training split and the affine map they define.

Statistics are in ``[0, 1]`` units (pixel / 255), the convention of most published recipes
(Fashion-MNIST's training split: mean 0.2860, std 0.3530), and always computed from data, never
typed in, so a new data set or a validation hold-out gets its own numbers.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

__all__ = ["channel_stats", "normalize"]

# Images per block when summing: uint64 partial sums of a block stay exact and its temporary
# copy stays small (4096 CIFAR images = 12.6M values, 100 MB as uint64).
_BLOCK = 4096


def channel_stats(images) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) standard deviation of uint8 images, in ``[0, 1]`` units.

    Sums of pixel values and of their squares are accumulated as exact integers, so the
    result does not depend on the order or the number of images the way a float32 running
    sum would.

    Args:
      images: ``(N, H, W, C)`` uint8 (a numpy array, or anything ``np.asarray`` accepts).

    Returns:
      ``(mean, std)``, each a float32 numpy array of shape ``(C,)``.

    Raises:
      ValueError: naming ``images`` if it is not a non-empty 4-D uint8 array.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[0] == 0:
        raise ValueError(
            f"images has shape {images.shape} and dtype {images.dtype}; channel_stats needs a "
            "non-empty (N, H, W, C) uint8 array (the raw training images)."
        )
    channels = images.shape[-1]
    total = np.zeros(channels, dtype=np.uint64)
    total_sq = np.zeros(channels, dtype=np.uint64)
    for start in range(0, images.shape[0], _BLOCK):
        block = images[start : start + _BLOCK].reshape(-1, channels).astype(np.uint64)
        total += block.sum(axis=0)
        total_sq += (block * block).sum(axis=0)
    count = images.size // channels
    # Exact integers to float64 once; var = E[x^2] - E[x]^2 is then accurate to ~1e-12.
    mean = total.astype(np.float64) / count
    var = total_sq.astype(np.float64) / count - mean * mean
    std = np.sqrt(np.maximum(var, 0.0))
    return (mean / 255.0).astype(np.float32), (std / 255.0).astype(np.float32)


def normalize(images, mean, std) -> jnp.ndarray:
    """Map uint8 images to float32 ``(images / 255 - mean) / std``, per channel.

    Works on numpy or device arrays and under ``jax.jit`` (checks use static dtype and shape).

    Args:
      images: ``(..., C)`` uint8, e.g. ``(N, H, W, C)``.
      mean: ``(C,)`` or a scalar, in ``[0, 1]`` units (from :func:`channel_stats`); concrete
        values (numpy or Python), checked and folded into constants at trace time.
      std: ``(C,)`` or a scalar, positive, in ``[0, 1]`` units; concrete like ``mean``.

    Returns:
      float32 array of the same shape as ``images``.

    Raises:
      ValueError: naming ``images`` if it is not uint8 (normalising already-scaled floats
        twice is a silent bug), or ``mean``/``std`` if their length is not 1 or C, or ``std``
        if it is not positive.
    """
    if jnp.dtype(images.dtype) != jnp.uint8:
        raise ValueError(
            f"images has dtype {images.dtype}; normalize expects the raw uint8 images (it "
            "divides by 255 itself). Pass the uint8 array."
        )
    channels = images.shape[-1]
    mean_np = np.asarray(mean, dtype=np.float32).reshape(-1)
    std_np = np.asarray(std, dtype=np.float32).reshape(-1)
    for arg, value in (("mean", mean_np), ("std", std_np)):
        if value.size not in (1, channels):
            raise ValueError(
                f"{arg} has {value.size} entries {value.tolist()} but images have {channels} "
                f"channel(s); pass one value or {channels} values."
            )
    if not np.all(std_np > 0):
        raise ValueError(f"std={std_np.tolist()} must be positive; use channel_stats(train).")
    scale = 1.0 / (255.0 * std_np)
    shift = mean_np / std_np
    # One fused multiply-add per pixel instead of a divide by 255 then a divide by std.
    return jnp.asarray(images, jnp.float32) * scale - shift
