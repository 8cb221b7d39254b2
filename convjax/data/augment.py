"""Data augmentation on the device, in JAX: random crop after padding, flip, translation.

Every function takes an explicit ``jax.random`` key and a batch of images ``(N, H, W, C)``
(or one image ``(H, W, C)``; ``channels_last=False`` for ``NCHW``/``CHW``) and draws an
independent random choice for every example, so one call augments a whole batch on the
device, inside the jitted train step, with no host round trip. The same key gives the same
output, eagerly or under ``jax.jit``; the configuration arguments (padding, mode, ...) are
Python values checked before tracing, so mark them static or close over them::

    aug = jax.jit(functools.partial(augment, crop_padding=4, flip=True))
    batch = aug(key, batch)

The crops and shifts are integer pixel moves done with ``lax.dynamic_slice`` on a padded copy,
so they are exact (no interpolation) and keep the dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from convjax.functional.shapes import normalize_tuple

__all__ = ["PAD_MODES", "random_crop", "random_flip", "random_translate", "augment"]

#: Fill modes for the border that crops and shifts reveal (``jnp.pad`` modes).
#: ``constant``: ``fill_value``; ``reflect``: mirror without repeating the edge pixel;
#: ``symmetric``: mirror repeating it; ``edge``: repeat the edge pixel.
PAD_MODES = ("constant", "reflect", "symmetric", "edge")


def _to_nhwc(images, channels_last: bool):
    """Return (NHWC view, undo function); checks the rank before XLA sees anything."""
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) not in (3, 4):
        layout = "(N, H, W, C) or (H, W, C)" if channels_last else "(N, C, H, W) or (C, H, W)"
        raise ValueError(
            f"images has shape {shape}; pass a batch {layout}"
            + ("" if channels_last else " (channels_last=False)")
            + "."
        )
    x = jnp.asarray(images)
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    if not channels_last:
        x = jnp.transpose(x, (0, 2, 3, 1))

    def undo(y):
        if not channels_last:
            y = jnp.transpose(y, (0, 3, 1, 2))
        return y[0] if unbatched else y

    return x, undo


def _check_mode(mode: str, pad: tuple[int, int], hw: tuple[int, int], pad_name: str) -> None:
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r} is not one of {PAD_MODES}; pick one of them.")
    if mode == "reflect" and (pad[0] >= hw[0] or pad[1] >= hw[1]):
        raise ValueError(
            f"{pad_name}={pad} is too large for mode='reflect' on {hw[0]}x{hw[1]} images "
            "(reflection needs padding < image size); use a smaller value or mode='constant'."
        )


def _window(x, offsets, pad: tuple[int, int], mode: str, fill_value):
    """Pad ``x`` (N, H, W, C) by ``pad`` on both sides, take each example's H x W window.

    ``offsets`` is ``(N, 2)`` int32: the window's top-left corner in the padded image, in
    ``[0, 2 * pad]`` per axis.
    """
    n, h, w, c = x.shape
    widths = ((0, 0), (pad[0], pad[0]), (pad[1], pad[1]), (0, 0))
    if mode == "constant":
        padded = jnp.pad(
            x, widths, mode="constant", constant_values=jnp.asarray(fill_value, x.dtype)
        )
    else:
        padded = jnp.pad(x, widths, mode=mode)
    zero = jnp.zeros((), offsets.dtype)
    crop = lambda img, off: lax.dynamic_slice(img, (off[0], off[1], zero), (h, w, c))
    return jax.vmap(crop)(padded, offsets)


def _offsets(key, n: int, low: tuple[int, int], high: tuple[int, int]):
    """(n, 2) int32 uniform in [low, high] per axis, one independent draw per example."""
    key_y, key_x = jax.random.split(key)
    oy = jax.random.randint(key_y, (n,), low[0], high[0] + 1, dtype=jnp.int32)
    ox = jax.random.randint(key_x, (n,), low[1], high[1] + 1, dtype=jnp.int32)
    return jnp.stack([oy, ox], axis=1)


def random_crop(
    key,
    images,
    padding,
    *,
    mode: str = "constant",
    fill_value: float = 0.0,
    channels_last: bool = True,
):
    """Pad each image by ``padding`` on every side, then crop a random window of its size.

    The classic CIFAR/Fashion-MNIST augmentation ("pad 4, random 32x32 crop"): example ``i``
    of the output is ``pad(images[i])[dy : dy + H, dx : dx + W]`` with ``dy`` uniform in
    ``[0, 2 * padding_h]`` and ``dx`` in ``[0, 2 * padding_w]``, drawn independently per example.

    Args:
      key: a ``jax.random`` key.
      images: ``(N, H, W, C)`` or ``(H, W, C)`` (``(N, C, H, W)``/``(C, H, W)`` with
        ``channels_last=False``), any dtype.
      padding: int or ``(padding_h, padding_w)``, each ``>= 0``.
      mode: border fill, one of :data:`PAD_MODES`.
      fill_value: the border value for ``mode="constant"`` (in the images' units: 0 is black
        for raw images, the mean colour for normalised ones).
      channels_last: ``False`` for channels-first images.

    Returns:
      Array of the same shape and dtype as ``images``.

    Raises:
      ValueError: naming ``images``, ``padding`` or ``mode`` when invalid.
    """
    x, undo = _to_nhwc(images, channels_last)
    pad = normalize_tuple(padding, 2, "padding", minimum=0)
    _check_mode(mode, pad, x.shape[1:3], "padding")
    offsets = _offsets(key, x.shape[0], (0, 0), (2 * pad[0], 2 * pad[1]))
    return undo(_window(x, offsets, pad, mode, fill_value))


def random_translate(
    key,
    images,
    max_shift,
    *,
    mode: str = "constant",
    fill_value: float = 0.0,
    channels_last: bool = True,
):
    """Shift each image by a random whole number of pixels, filling the revealed border.

    Example ``i`` of the output is ``out[y, x] = images[i][y - dy, x - dx]`` with ``dy``
    uniform in ``[-max_shift_h, max_shift_h]`` and ``dx`` in ``[-max_shift_w, max_shift_w]``
    (positive moves content down/right); pixels from outside the image follow ``mode``. With
    the same ``mode`` this is the distribution of :func:`random_crop` with
    ``padding=max_shift``, written as a shift so a recipe can say which it means.

    Args:
      key: a ``jax.random`` key.
      images: ``(N, H, W, C)`` or ``(H, W, C)`` (channels first with ``channels_last=False``).
      max_shift: int or ``(max_shift_h, max_shift_w)``, each ``>= 0``.
      mode: border fill, one of :data:`PAD_MODES`.
      fill_value: the border value for ``mode="constant"``.
      channels_last: ``False`` for channels-first images.

    Returns:
      Array of the same shape and dtype as ``images``.

    Raises:
      ValueError: naming ``images``, ``max_shift`` or ``mode`` when invalid.
    """
    x, undo = _to_nhwc(images, channels_last)
    shift = normalize_tuple(max_shift, 2, "max_shift", minimum=0)
    _check_mode(mode, shift, x.shape[1:3], "max_shift")
    moves = _offsets(key, x.shape[0], (-shift[0], -shift[1]), shift)
    # A move of (dy, dx) is the window whose corner sits at (pad - dy, pad - dx) in the
    # image padded by `shift`: out[y] = padded[y + pad - dy] = images[y - dy].
    offsets = jnp.asarray(shift, jnp.int32) - moves
    return undo(_window(x, offsets, shift, mode, fill_value))


def random_flip(key, images, *, prob: float = 0.5, channels_last: bool = True):
    """Mirror each image left-right with probability ``prob``, independently per example.

    Args:
      key: a ``jax.random`` key.
      images: ``(N, H, W, C)`` or ``(H, W, C)`` (channels first with ``channels_last=False``).
      prob: probability of a flip, in ``[0, 1]``.
      channels_last: ``False`` for channels-first images.

    Returns:
      Array of the same shape and dtype as ``images``.

    Raises:
      ValueError: naming ``images`` or ``prob`` when invalid.
    """
    x, undo = _to_nhwc(images, channels_last)
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0.0 <= prob <= 1.0:
        raise ValueError(f"prob={prob!r} must be a number in [0, 1].")
    flip = jax.random.bernoulli(key, prob, (x.shape[0],))
    return undo(jnp.where(flip[:, None, None, None], x[:, :, ::-1, :], x))


def augment(
    key,
    images,
    *,
    crop_padding=0,
    flip: bool = False,
    max_translate=0,
    mode: str = "constant",
    fill_value: float = 0.0,
    channels_last: bool = True,
):
    """Random crop after padding, then horizontal flip, then translation; each optional.

    The key is split into one key per stage (crop, flip, translate) whether or not a stage is
    on, so switching one stage on or off does not change the random choices of the others
    (an ablation changes one thing).

    Args:
      key: a ``jax.random`` key.
      images: ``(N, H, W, C)`` or ``(H, W, C)`` (channels first with ``channels_last=False``).
      crop_padding: :func:`random_crop`'s ``padding``; 0 (or all zeros) skips the crop.
      flip: whether to apply :func:`random_flip` with probability 0.5.
      max_translate: :func:`random_translate`'s ``max_shift``; 0 skips it.
      mode, fill_value: border fill of the crop and the translation (see :data:`PAD_MODES`).
      channels_last: ``False`` for channels-first images.

    Returns:
      Array of the same shape and dtype as ``images``.

    Raises:
      ValueError: naming the offending argument, before anything is traced.
    """
    pad = normalize_tuple(crop_padding, 2, "crop_padding", minimum=0)
    shift = normalize_tuple(max_translate, 2, "max_translate", minimum=0)
    if not isinstance(flip, bool):
        raise ValueError(f"flip={flip!r} must be True or False.")
    if mode not in PAD_MODES:
        raise ValueError(f"mode={mode!r} is not one of {PAD_MODES}; pick one of them.")
    key_crop, key_flip, key_translate = jax.random.split(key, 3)
    kwargs = dict(channels_last=channels_last)
    fill = dict(mode=mode, fill_value=fill_value, **kwargs)
    out = images
    if any(pad):
        out = random_crop(key_crop, out, pad, **fill)
    if flip:
        out = random_flip(key_flip, out, **kwargs)
    if any(shift):
        out = random_translate(key_translate, out, shift, **fill)
    if out is images:  # nothing enabled: still validate the images like the stages would
        out, undo = _to_nhwc(images, channels_last)
        out = undo(out)
    return out
