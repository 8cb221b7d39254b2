"""Initialisers and parameter counts: shapes, variance statistics, grouped fans, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf

KEY = jax.random.key(0)


def _shapes(init, *args, **kwargs):
    # Shapes and dtypes without drawing numbers: eval_shape traces but compiles nothing.
    return jax.eval_shape(lambda k: init(k, *args, **kwargs), KEY)


def test_seed_parameter_count_760():
    # 32x32x3 input, ten 5x5 filters: each filter 5*5*3 + 1 = 76 parameters, 760 in all.
    assert cf.conv_param_count(5, 3, 10) == 760
    p = _shapes(cf.conv_init, 5, 3, 10)
    assert p["kernel"].shape == (5, 5, 3, 10) and p["bias"].shape == (10,)
    assert sum(a.size for a in jax.tree.leaves(p)) == 760


def test_param_counts_other_cases():
    # AlexNet's first layer: 96 filters 11x11x3 -> 11*11*3*96 + 96 = 34944.
    assert cf.conv_param_count(11, 3, 96) == 34944
    assert cf.conv_param_count(3, 8, 16, groups=4) == 9 * 2 * 16 + 16
    assert cf.conv_param_count(3, 8, 16, groups=8, use_bias=False) == 9 * 1 * 16
    assert cf.conv_param_count((3, 5), 2, 4) == 15 * 2 * 4 + 4
    assert cf.conv_param_count(3, 2, 4, num_spatial=3) == 27 * 2 * 4 + 4
    assert cf.conv_param_count((3, 3, 2, 16), None, None, groups=4) == 9 * 2 * 16 + 16
    assert cf.dense_param_count(4096, 1000) == 4097000
    p = _shapes(cf.conv_init, 3, 8, 16, groups=4)
    assert sum(a.size for a in jax.tree.leaves(p)) == cf.conv_param_count(3, 8, 16, groups=4)


def test_grouped_fans():
    # Each output sees 3*3*(16/4) inputs; each input feeds 3*3*(32/4) outputs.
    assert cf.conv_fans(3, 16, 32, groups=4) == (36, 72)
    assert cf.conv_fans(3, 16, 32) == (144, 288)
    # Depthwise with channel multiplier 2.
    assert cf.conv_fans((5,), 8, 16, groups=8) == (5, 10)
    assert cf.conv_fans((3, 3, 4, 32), None, None, groups=4) == (36, 72)


# The random schemes; "zeros" (for classifier heads) is checked on its own below.
RANDOM_SCHEMES = [s for s in cf.INIT_SCHEMES if s != "zeros"]


def _expected_var(scheme, fan_in, fan_out):
    fan = {"he": fan_in / 2, "glorot": (fan_in + fan_out) / 2, "lecun": fan_in}[
        scheme.split("_")[0]
    ]
    return 1.0 / fan


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
@pytest.mark.parametrize("groups", [1, 4])
def test_conv_init_variance_statistics(scheme, groups):
    # 3x3, C=64, K=128: 3*3*(64/g)*128 draws (73728 for g=1, 18432 for g=4); the sample
    # variance's relative standard error is about sqrt(2/n) <= 1.1%, so 6% is > 5 sigma.
    c, k = 64, 128
    p = cf.conv_init(jax.random.key(1), 3, c, k, scheme=scheme, groups=groups)
    w = np.asarray(p["kernel"], np.float64)
    assert w.shape == (3, 3, c // groups, k)
    fan_in, fan_out = 9 * c // groups, 9 * k // groups
    var = _expected_var(scheme, fan_in, fan_out)
    assert abs(w.mean()) < 4 * math.sqrt(var / w.size)
    assert w.var() == pytest.approx(var, rel=0.06)
    if scheme.endswith("uniform"):
        bound = math.sqrt(3 * var)
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    else:
        # A Gaussian has excess kurtosis 0; a uniform has -1.2.
        kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2 - 3
        assert abs(kurt) < 0.15
    np.testing.assert_array_equal(p["bias"], np.zeros(k))


@pytest.mark.parametrize("scheme", RANDOM_SCHEMES)
def test_dense_init_variance_statistics(scheme):
    p = cf.dense_init(jax.random.key(2), 256, 300, scheme=scheme)
    w = np.asarray(p["kernel"], np.float64)
    assert w.shape == (256, 300) and p["bias"].shape == (300,)
    assert w.var() == pytest.approx(_expected_var(scheme, 256, 300), rel=0.06)


def test_zeros_scheme_gives_zero_kernels():
    p = cf.dense_init(jax.random.key(0), 5, 3, scheme="zeros")
    np.testing.assert_array_equal(p["kernel"], np.zeros((5, 3)))
    q = cf.conv_init(jax.random.key(0), 1, 4, 10, scheme="zeros", dtype=jnp.bfloat16)
    assert q["kernel"].shape == (1, 1, 4, 10) and q["kernel"].dtype == jnp.bfloat16
    assert not np.any(np.asarray(q["kernel"], np.float32))
    # A zero head gives zero logits: uniform predictions, cross-entropy ln(classes).
    logits = cf.dense(jnp.ones((2, 5)), p["kernel"], p["bias"])
    loss = cf.softmax_cross_entropy(logits, jnp.array([0, 2]))
    assert abs(float(loss) - math.log(3)) < 1e-6  # float32 log-sum-exp of three zeros


def test_init_is_deterministic_and_key_dependent():
    a = cf.conv_init(jax.random.key(3), 3, 4, 8)
    b = cf.conv_init(jax.random.key(3), 3, 4, 8)
    c = cf.conv_init(jax.random.key(4), 3, 4, 8)
    np.testing.assert_array_equal(a["kernel"], b["kernel"])
    assert not np.array_equal(a["kernel"], c["kernel"])


def test_init_options():
    p = _shapes(cf.conv_init, (3, 5), 4, 6, use_bias=False, dtype=jnp.bfloat16)
    assert set(p) == {"kernel"} and p["kernel"].shape == (3, 5, 4, 6)
    assert p["kernel"].dtype == jnp.bfloat16
    assert _shapes(cf.conv_init, 3, 4, 6, num_spatial=1)["kernel"].shape == (3, 4, 6)
    assert _shapes(cf.conv_init, 3, 4, 6, num_spatial=3)["kernel"].shape == (3, 3, 3, 4, 6)
    p = _shapes(cf.conv_init, (3, 3, 2, 8), groups=2)
    assert p["kernel"].shape == (3, 3, 2, 8) and p["bias"].shape == (8,)
    assert set(_shapes(cf.dense_init, 3, 2, use_bias=False)) == {"kernel"}
    # Real draws: the bias is zeros, the kernel is not.
    p = cf.conv_init(KEY, 3, 4, 8)
    np.testing.assert_array_equal(p["bias"], np.zeros(8))
    assert np.all(p["kernel"] != 0)


def test_init_errors():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match=r"scheme='kaiming' is not a known .* 'he_normal'"):
        cf.conv_init(key, 3, 4, 8, scheme="kaiming")
    with pytest.raises(ValueError, match=r"scheme='xavier' is not a known"):
        cf.dense_init(key, 3, 4, scheme="xavier")
    with pytest.raises(ValueError, match=r"groups=3 must divide both in_channels=4"):
        cf.conv_init(key, 3, 4, 8, groups=3)
    with pytest.raises(ValueError, match=r"groups=4 must divide both .* out_channels=6"):
        cf.conv_param_count(3, 8, 6, groups=4)
    with pytest.raises(ValueError, match=r"in_channels=0 must be a positive int"):
        cf.conv_init(key, 3, 0, 8)
    with pytest.raises(ValueError, match=r"out_features=-2 must be a positive int"):
        cf.dense_init(key, 3, -2)
    with pytest.raises(ValueError, match=r"kernel_size=0 must be >= 1"):
        cf.conv_init(key, 0, 4, 8)
    with pytest.raises(ValueError, match=r"kernel_size=\(3, 3, 3\) has 3 entries .* 2 spatial"):
        cf.conv_init(key, (3, 3, 3), 4, 8, num_spatial=2)
    with pytest.raises(ValueError, match=r"in_channels=4 and out_channels=None: give both"):
        cf.conv_init(key, 3, 4)
    with pytest.raises(ValueError, match=r"kernel_size=3 with no in_channels/out_channels"):
        cf.conv_init(key, 3)
    with pytest.raises(ValueError, match=r"kernel shape \(3, 8\) must be \(spatial..., in/groups"):
        cf.conv_init(key, (3, 8))
    with pytest.raises(ValueError, match=r"groups=0 must be a positive int"):
        cf.conv_init(key, 3, 4, 8, groups=0)
