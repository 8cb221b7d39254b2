"""`pad`: every mode against NumPy's np.pad, hand-written 1-D cases, layouts, errors, grads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convjax.functional.padding import PADDING_MODES, check_pads_fit, pad

NP_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def test_modes_by_hand_1d():
    x = jnp.array([1.0, 2.0, 3.0, 4.0])[:, None]  # (W, C) unbatched, channels last
    expected = {
        "zeros": [0, 0, 1, 2, 3, 4, 0, 0],
        "reflect": [3, 2, 1, 2, 3, 4, 3, 2],
        "replicate": [1, 1, 1, 2, 3, 4, 4, 4],
        "circular": [3, 4, 1, 2, 3, 4, 1, 2],
    }
    for mode, want in expected.items():
        np.testing.assert_array_equal(pad(x, [(2, 2)], mode)[:, 0], np.array(want, np.float32))


def test_circular_wraps_more_than_once():
    x = jnp.array([1.0, 2.0, 3.0])[None, :, None]  # (N, W, C)
    got = pad(x, [(5, 4)], "circular")[0, :, 0]
    # positions -5..6 taken mod 3: 1 2 0 1 2 | 0 1 2 | 0 1 2 0 -> values +1
    np.testing.assert_array_equal(got, [2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1])


@pytest.mark.parametrize("mode", PADDING_MODES)
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("batched", [True, False])
def test_matches_numpy_pad_2d_and_3d(mode, channels_last, batched):
    rng = np.random.default_rng(0)
    for spatial, pads in [((4, 5), [(1, 3), (0, 2)]), ((3, 4, 2), [(2, 1), (3, 0), (1, 1)])]:
        if mode == "circular":  # wider than the input: wraps again
            pads = [(lo + w, hi + 2 * w) for (lo, hi), w in zip(pads, spatial)]
        shape = (*spatial, 2) if channels_last else (2, *spatial)
        if batched:
            shape = (3, *shape)
        x = rng.standard_normal(shape).astype(np.float32)
        widths = [(0, 0)] * x.ndim
        first = x.ndim - 1 - len(spatial) if channels_last else x.ndim - len(spatial)
        for i, p in enumerate(pads):
            widths[first + i] = p
        want = np.pad(x, widths, mode=NP_MODE[mode])
        got = pad(x, pads, mode, channels_last)
        np.testing.assert_array_equal(np.asarray(got), want)


@pytest.mark.parametrize("mode", PADDING_MODES)
def test_gradient_is_scatter_add_of_ones(mode):
    # d sum(pad(x)) / dx counts how often each input sample appears in the padded output.
    x = jnp.arange(4.0)[:, None]
    g = jax.grad(lambda v: jnp.sum(pad(v, [(2, 3)], mode)))(x)[:, 0]
    kwargs = {"constant_values": -1} if mode == "zeros" else {}
    source = np.pad(np.arange(4), (2, 3), mode=NP_MODE[mode], **kwargs)
    counts = np.bincount(source[source >= 0], minlength=4)
    np.testing.assert_array_equal(g, counts.astype(np.float32))


def test_jit_and_vmap_match_eager():
    x = jnp.arange(24.0).reshape(2, 3, 4, 1)
    eager = pad(x, [(1, 2), (2, 1)], "reflect")
    np.testing.assert_array_equal(jax.jit(lambda v: pad(v, [(1, 2), (2, 1)], "reflect"))(x), eager)
    np.testing.assert_array_equal(jax.vmap(lambda v: pad(v, [(1, 2), (2, 1)], "reflect"))(x), eager)


def test_errors():
    x = jnp.zeros((4, 1))
    with pytest.raises(ValueError, match=r"mode='mirror' is not a known padding mode"):
        pad(x, [(1, 1)], "mirror")
    with pytest.raises(
        ValueError, match=r"pads=\[\(4, 0\)\] is too wide for padding_mode='reflect'"
    ):
        pad(x, [(4, 0)], "reflect")
    with pytest.raises(ValueError, match=r"at most 3 per side, got \(0, 4\)"):
        pad(x, [(0, 4)], "reflect")
    with pytest.raises(ValueError, match=r"pads=\[\(-1, 0\)\] contains \(-1, 0\); amounts must"):
        pad(x, [(-1, 0)], "zeros")
    with pytest.raises(ValueError, match=r"pads='SAME' must be a non-empty sequence"):
        pad(x, "SAME")
    with pytest.raises(ValueError, match=r"pads=\[3\] contains 3; each entry must be \(lo, hi\)"):
        pad(x, [3])
    with pytest.raises(ValueError, match=r"x.shape=\(4,\) does not fit 1 spatial"):
        pad(jnp.zeros(4), [(1, 1)])
    with pytest.raises(ValueError, match=r"padding='SAME' is too wide"):
        check_pads_fit([(2, 2)], [2], "reflect", "padding", "SAME")
    check_pads_fit([(1, 1)], [2], "reflect")  # exactly W - 1 is allowed
