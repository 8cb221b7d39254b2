"""On-device augmentation and batch indices (convjax.data.augment, convjax.data.batching).

References are naive NumPy: ``np.pad`` then slicing for crops, an explicit shift loop for
translations, ``[:, ::-1]`` for flips, plain set arithmetic for batch indices.
"""

import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.data import (
    PAD_MODES,
    augment,
    epoch_permutation,
    num_batches,
    random_crop,
    random_flip,
    random_translate,
    sequential_batches,
)


def _images(n=6, h=5, w=7, c=3, seed=0):
    return np.random.default_rng(seed).normal(size=(n, h, w, c)).astype(np.float32)


def _np_crop_offsets(out, img, pad, mode, fill):
    """All (dy, dx) with np.pad(img)[dy:dy+H, dx:dx+W] == out (naive reference)."""
    h, w = img.shape[:2]
    widths = ((pad[0], pad[0]), (pad[1], pad[1]), (0, 0))
    if mode == "constant":
        padded = np.pad(img, widths, mode="constant", constant_values=fill)
    else:
        padded = np.pad(img, widths, mode=mode)
    return [
        (dy, dx)
        for dy in range(2 * pad[0] + 1)
        for dx in range(2 * pad[1] + 1)
        if np.array_equal(padded[dy : dy + h, dx : dx + w], out)
    ]


def _np_shift(img, dy, dx, fill):
    """out[y, x] = img[y - dy, x - dx], ``fill`` outside (naive loop reference)."""
    h, w = img.shape[:2]
    out = np.full_like(img, fill)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = img[y - dy, x - dx]
    return out


# ---------------------------------------------------------------- random_crop


@pytest.mark.parametrize("mode", PAD_MODES)
def test_crop_is_window_of_padded_image(mode):
    x = _images()
    pad = (2, 3)
    out = np.asarray(random_crop(jax.random.key(1), x, pad, mode=mode, fill_value=-7.0))
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(len(x)):
        # Random normal pixels make the matching window unique.
        assert len(_np_crop_offsets(out[i], x[i], pad, mode, -7.0)) == 1, i


def test_crop_draws_every_offset_about_uniformly():
    img = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1) + 1.0  # all distinct, nonzero
    x = np.repeat(img, 900, axis=0)
    out = np.asarray(random_crop(jax.random.key(2), x, 1))
    counts = collections.Counter(
        _np_crop_offsets(o, img[0], (1, 1), "constant", 0.0)[0] for o in out
    )
    assert set(counts) == {(dy, dx) for dy in range(3) for dx in range(3)}
    # 100 expected per offset; 5 sigma (sd ~9.4) bounds.
    assert min(counts.values()) > 50 and max(counts.values()) < 150, counts


def test_crop_zero_padding_is_identity():
    x = _images()
    np.testing.assert_array_equal(random_crop(jax.random.key(0), x, 0), x)


def test_crop_keeps_uint8_and_fill():
    x = np.full((3, 4, 4, 1), 200, np.uint8)
    out = np.asarray(random_crop(jax.random.key(5), x, 2, fill_value=9))
    assert out.dtype == np.uint8
    assert set(np.unique(out)) <= {9, 200}


def test_crop_channels_first_and_unbatched():
    x = _images()
    key = jax.random.key(3)
    nhwc = random_crop(key, x, 2, mode="reflect")
    nchw = random_crop(key, np.transpose(x, (0, 3, 1, 2)), 2, mode="reflect", channels_last=False)
    np.testing.assert_array_equal(np.transpose(np.asarray(nchw), (0, 2, 3, 1)), nhwc)
    one = random_crop(key, x[0], 2)
    np.testing.assert_array_equal(one, random_crop(key, x[:1], 2)[0])


# ---------------------------------------------------------------- random_translate


def test_translate_matches_naive_shift():
    x = _images(n=8, h=6, w=5)
    max_shift = (2, 1)
    out = np.asarray(random_translate(jax.random.key(4), x, max_shift, fill_value=0.5))
    for i in range(len(x)):
        shifts = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-1, 2)
            if np.array_equal(out[i], _np_shift(x[i], dy, dx, 0.5))
        ]
        assert len(shifts) == 1, (i, shifts)


def test_translate_draws_both_directions():
    img = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    out = np.asarray(random_translate(jax.random.key(6), np.repeat(img, 400, 0), 1))
    seen = set()
    for o in out:
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if np.array_equal(o, _np_shift(img[0], dy, dx, 0.0)):
                    seen.add((dy, dx))
    assert seen == {(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}


# ---------------------------------------------------------------- random_flip


def test_flip_each_example_is_original_or_mirror():
    x = _images(n=64)
    out = np.asarray(random_flip(jax.random.key(7), x))
    flipped = [np.array_equal(o, xi[:, ::-1]) for o, xi in zip(out, x)]
    kept = [np.array_equal(o, xi) for o, xi in zip(out, x)]
    assert all(f != k for f, k in zip(flipped, kept))
    assert 0 < sum(flipped) < 64  # per-example choices, not one for the batch


def test_flip_twice_with_same_key_is_identity():
    x = _images()
    key = jax.random.key(8)
    np.testing.assert_array_equal(random_flip(key, random_flip(key, x)), x)


def test_flip_probability():
    x = np.repeat(_images(n=1), 2000, axis=0)
    mirrored = x[0, :, ::-1]
    for prob, lo, hi in ((0.0, 0, 0), (1.0, 2000, 2000), (0.5, 900, 1100), (0.2, 330, 470)):
        out = np.asarray(random_flip(jax.random.key(9), x, prob=prob))
        n_flipped = sum(np.array_equal(o, mirrored) for o in out)
        assert lo <= n_flipped <= hi, (prob, n_flipped)


# ---------------------------------------------------------------- augment


def test_augment_stages_use_fixed_subkeys():
    x = _images()
    key = jax.random.key(10)
    k_crop, k_flip, k_translate = jax.random.split(key, 3)
    np.testing.assert_array_equal(augment(key, x, crop_padding=2), random_crop(k_crop, x, 2))
    np.testing.assert_array_equal(
        augment(key, x, crop_padding=2, flip=True, max_translate=1),
        random_translate(k_translate, random_flip(k_flip, random_crop(k_crop, x, 2)), 1),
    )
    np.testing.assert_array_equal(augment(key, x), x)


def test_augment_per_example_randomness():
    x = np.repeat(_images(n=1), 32, axis=0)
    out = np.asarray(augment(jax.random.key(11), x, crop_padding=2, flip=True))
    distinct = {o.tobytes() for o in out}
    assert len(distinct) > 8


def test_augment_deterministic_and_jit_matches_eager():
    x = _images()
    kwargs = dict(crop_padding=2, flip=True, max_translate=1, mode="edge")
    key = jax.random.key(12)
    eager = augment(key, x, **kwargs)
    np.testing.assert_array_equal(augment(key, x, **kwargs), eager)
    jitted = jax.jit(lambda k, im: augment(k, im, **kwargs))
    np.testing.assert_array_equal(jitted(key, jnp.asarray(x)), eager)
    assert not np.array_equal(augment(jax.random.key(13), x, **kwargs), eager)


def test_augment_under_vmap_over_keys():
    # A population of members each with its own key: vmap gives each member's own result.
    x = _images(n=4)
    keys = jax.random.split(jax.random.key(14), 3)
    batched = jax.vmap(lambda k: augment(k, x, crop_padding=1, flip=True))(keys)
    for m in range(3):
        np.testing.assert_array_equal(batched[m], augment(keys[m], x, crop_padding=1, flip=True))


# ---------------------------------------------------------------- errors


def test_augmentation_errors():
    key = jax.random.key(0)
    x = _images()
    with pytest.raises(ValueError, match=r"images has shape \(5, 7\); pass a batch"):
        random_crop(key, x[0, :, :, 0], 1)
    with pytest.raises(ValueError, match=r"images has shape None"):
        random_flip(key, [1, 2, 3])
    with pytest.raises(ValueError, match=r"padding=-1 must be >= 0"):
        random_crop(key, x, -1)
    with pytest.raises(ValueError, match=r"padding=\(1, 2, 3\) has 3 entries"):
        random_crop(key, x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"mode='wrap' is not one of"):
        random_crop(key, x, 1, mode="wrap")
    with pytest.raises(ValueError, match=r"padding=\(5, 5\) is too large for mode='reflect'"):
        random_crop(key, x, 5, mode="reflect")
    with pytest.raises(ValueError, match=r"max_shift=-2 must be >= 0"):
        random_translate(key, x, -2)
    with pytest.raises(ValueError, match=r"max_shift=\(7, 7\) is too large for mode='reflect'"):
        random_translate(key, x, 7, mode="reflect")
    with pytest.raises(ValueError, match=r"prob=1.5 must be a number in \[0, 1\]"):
        random_flip(key, x, prob=1.5)
    with pytest.raises(ValueError, match=r"flip='yes' must be True or False"):
        augment(key, x, flip="yes")
    with pytest.raises(ValueError, match=r"mode='zeros' is not one of"):
        augment(key, x, mode="zeros")
    with pytest.raises(ValueError, match=r"crop_padding=-4 must be >= 0"):
        augment(key, x, crop_padding=-4)
    with pytest.raises(ValueError, match=r"max_translate=\(1, -1\) must be >= 0"):
        augment(key, x, max_translate=(1, -1))


# ---------------------------------------------------------------- batching


@pytest.mark.parametrize("n,batch_size", [(10, 3), (12, 4), (7, 7), (5, 1)])
def test_epoch_permutation_drop_remainder(n, batch_size):
    idx = np.asarray(epoch_permutation(jax.random.key(0), n, batch_size))
    assert idx.shape == (n // batch_size, batch_size) and idx.dtype == np.int32
    flat = idx.ravel()
    assert len(set(flat.tolist())) == flat.size  # no repeats
    assert set(flat.tolist()) <= set(range(n))


@pytest.mark.parametrize("n,batch_size", [(10, 3), (12, 4), (3, 8)])
def test_epoch_permutation_keep_remainder(n, batch_size):
    idx = np.asarray(epoch_permutation(jax.random.key(1), n, batch_size, drop_remainder=False))
    batches = -(-n // batch_size)
    assert idx.shape == (batches, batch_size)
    flat = idx.ravel()
    assert set(flat.tolist()) == set(range(n))  # every example seen
    extra = batches * batch_size - n
    # The padding repeats the epoch's first examples (wrapping round for batch_size > n).
    np.testing.assert_array_equal(flat[n:], np.resize(flat[:n], extra))


def test_epoch_permutation_is_random_by_key_and_uniform():
    a = epoch_permutation(jax.random.key(2), 50, 10)
    np.testing.assert_array_equal(a, epoch_permutation(jax.random.key(2), 50, 10))
    assert not np.array_equal(a, epoch_permutation(jax.random.key(3), 50, 10))
    keys = jax.random.split(jax.random.key(4), 1500)
    first = np.asarray(jax.vmap(lambda k: epoch_permutation(k, 5, 5)[0, 0])(keys))
    counts = np.bincount(first, minlength=5)
    assert counts.min() > 230 and counts.max() < 370, counts  # 300 expected, ~5 sigma
    jitted = jax.jit(epoch_permutation, static_argnums=(1, 2, 3))
    np.testing.assert_array_equal(jitted(jax.random.key(2), 50, 10, True), a)


def test_sequential_batches_and_num_batches():
    idx, mask = sequential_batches(10, 4)
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 0, 0]])
    np.testing.assert_array_equal(mask[-1], [True, True, False, False])
    assert mask.sum() == 10 and idx.dtype == np.int32
    np.testing.assert_array_equal(np.sort(idx[mask]), np.arange(10))
    assert num_batches(10, 4) == 2 and num_batches(10, 4, drop_remainder=False) == 3
    assert num_batches(8, 4, drop_remainder=False) == 2


def test_batching_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"n=0 must be a positive int"):
        epoch_permutation(key, 0, 4)
    with pytest.raises(ValueError, match=r"batch_size=2.5 must be a positive int"):
        epoch_permutation(key, 10, 2.5)
    with pytest.raises(ValueError, match=r"batch_size=20 is larger than n=10"):
        epoch_permutation(key, 10, 20)
    with pytest.raises(ValueError, match=r"drop_remainder='no' must be True or False"):
        epoch_permutation(key, 10, 2, "no")
    with pytest.raises(ValueError, match=r"batch_size=0 must be a positive int"):
        sequential_batches(10, 0)
    with pytest.raises(ValueError, match=r"n=True must be a positive int"):
        num_batches(True, 2)
