"""Every pooling error: a ValueError naming the argument, showing its value, saying the fix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf

X = np.zeros((2, 6, 6, 3), np.float32)


@pytest.mark.parametrize(
    "call,match",
    [
        # window larger than the padded input
        (
            lambda: cf.max_pool(X, (7, 2)),
            r"window=\(7, 2\) \(effective size 7 with dilation=1\) is larger than the padded "
            r"input of max_pool \(size 6 \+ 0 \+ 0 = 6\); use a smaller window",
        ),
        (
            lambda: cf.avg_pool(X, (3, 3), 1, 0, dilation=3),
            r"window=\(3, 3\) \(effective size 7 with dilation=3\) is larger than the padded "
            r"input of avg_pool",
        ),
        # padding more than half the window (PyTorch's rule)
        (
            lambda: cf.max_pool(X, (2, 2), 2, 2),
            r"padding=2 gives \(2, 2\), more than half of the window \(effective size 2\).*"
            r"use at most 1 per side",
        ),
        (
            lambda: cf.sum_pool(X, (3, 3), 1, "FULL"),
            r"padding='FULL' gives \(2, 2\), more than half of the window",
        ),
        # zero stride, zero window, zero dilation
        (lambda: cf.max_pool(X, (2, 2), 0), r"stride=0 must be >= 1 in every dimension"),
        (lambda: cf.avg_pool(X, (2, 2), (1, 0)), r"stride=\(1, 0\) must be >= 1"),
        (lambda: cf.max_pool(X, (0, 2)), r"window=\(0, 2\) must be >= 1"),
        (lambda: cf.max_pool(X, (2, 2), dilation=0), r"dilation=0 must be >= 1"),
        (lambda: cf.max_pool(X, (2, 2), (1, 1, 1)), r"stride=\(1, 1, 1\) has 3 entries"),
        (lambda: cf.max_pool(X, (2, 2), 1, "MIRROR"), r"padding='MIRROR' is not a known"),
        # Lp power
        (lambda: cf.lp_pool(X, (2, 2), p=0), r"p=0 must be finite and > 0; use p=2"),
        (lambda: cf.lp_pool(X, (2, 2), p=-1.5), r"p=-1.5 must be finite and > 0"),
        (lambda: cf.lp_pool(X, (2, 2), p=float("inf")), r"p=inf must be finite.*max_pool"),
        (lambda: cf.lp_pool(X, (2, 2), p="2"), r"p='2' must be a number > 0"),
        (lambda: cf.lp_pool(X, (2, 2), p=True), r"p=True must be a number > 0"),
        # avg divisor
        (
            lambda: cf.avg_pool(X, (2, 2), divisor_override=0),
            r"divisor_override=0 must be a positive int or None",
        ),
        (
            lambda: cf.avg_pool(X, (2, 2), divisor_override=2.5),
            r"divisor_override=2.5 must be a positive int",
        ),
        # spatial rank and input rank
        (
            lambda: cf.max_pool(X, 2),
            r"window=2 is a single int, which does not say how many spatial dimensions.*"
            r"num_spatial_dims=1, 2 or 3",
        ),
        (
            lambda: cf.max_pool(X, 2, num_spatial_dims=4),
            r"num_spatial_dims=4 must be 1, 2 or 3",
        ),
        (
            lambda: cf.max_pool(X, (2, 2), num_spatial_dims=3),
            r"window=\(2, 2\) has 2 entries but num_spatial_dims=3; make them agree",
        ),
        (
            lambda: cf.max_pool(X, (2, 2, 2, 2)),
            r"window=\(2, 2, 2, 2\) has 4 entries; pooling supports 1, 2 or 3",
        ),
        (
            lambda: cf.max_pool(np.zeros((6, 6)), (2, 2)),
            r"x has shape \(6, 6\) \(2 dims\) but max_pool with 2 spatial dimension\(s\) "
            r"needs at least 3 dims \(\.\.\., \*spatial, C\) .* no channel axis",
        ),
        (
            lambda: cf.avg_pool(np.zeros((6,)), (2,), channels_last=False),
            r"x has shape \(6,\) .* needs at least 2 dims \(\.\.\., C, \*spatial\)",
        ),
        (
            lambda: cf.max_pool(np.zeros((2, 0, 6, 3)), (2, 2)),
            r"x has shape \(2, 0, 6, 3\) with a zero-size spatial axis \(axis 1",
        ),
        # dtypes
        (lambda: cf.max_pool(X > 0, (2, 2)), r"x has dtype bool .* but max_pool needs numbers"),
        (lambda: cf.avg_pool(X.astype(np.int32), (2, 2)), r"x has dtype int32; avg_pool needs"),
        (lambda: cf.min_pool(X.astype(np.int32), (2, 2)), r"x has dtype int32; min_pool needs"),
        (lambda: cf.lp_pool(X.astype(np.int32), (2, 2)), r"x has dtype int32; lp_pool needs"),
        # global pools
        (lambda: cf.global_avg_pool(X, None), r"num_spatial_dims=None: global_avg_pool needs"),
        (lambda: cf.global_max_pool(X, 4), r"num_spatial_dims=4 must be 1, 2 or 3"),
        (lambda: cf.global_max_pool(np.zeros(3), 1), r"x has shape \(3,\) \(1 dims\)"),
        (
            lambda: cf.global_avg_pool(X.astype(np.int8), 2),
            r"x has dtype int8; global_avg_pool needs floats",
        ),
        # adaptive pools
        (
            lambda: cf.adaptive_avg_pool(X, (7, 3)),
            r"output_size=\(7, 3\) is larger than the input's spatial size \(6, 6\); adaptive "
            r"pooling only shrinks",
        ),
        (
            lambda: cf.adaptive_max_pool(X, 8, num_spatial_dims=2),
            r"output_size=8 is larger than the input's spatial size",
        ),
        (lambda: cf.adaptive_max_pool(X, 3), r"output_size=3 is a single int"),
        (lambda: cf.adaptive_avg_pool(X, (0, 2)), r"output_size=\(0, 2\) must be >= 1"),
        (
            lambda: cf.adaptive_avg_pool(X.astype(np.int32), (2, 2)),
            r"x has dtype int32; adaptive_avg_pool needs floats",
        ),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def _pooled():
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 2))
    return cf.max_pool(x, (2, 2), return_indices=True)


def test_unpool_rejects_indices_that_do_not_belong_to_the_output():
    y, idx = _pooled()
    bad = idx.at[0, 0, 0, 0].set(16)
    with pytest.raises(
        ValueError,
        match=r"indices contains 16, outside \[0, 16\) for output_size \(4, 4\); the indices do "
        r"not belong",
    ):
        cf.max_unpool(y, bad, (2, 2))
    with pytest.raises(ValueError, match=r"indices contains -1, outside \[0, 16\)"):
        cf.max_unpool(y, idx.at[0, 1, 1, 1].set(-1), (2, 2))
    with pytest.raises(ValueError, match=r"indices contains \d+, outside \[0, 9\)"):
        cf.max_unpool(y, idx, (2, 2), output_size=(3, 3))


def test_unpool_rejects_mismatched_or_non_integer_indices_and_name_padding():
    y, idx = _pooled()
    with pytest.raises(
        ValueError, match=r"indices has shape \(1, 2, 2, 1\) but x has shape \(1, 2, 2, 2\)"
    ):
        cf.max_unpool(y, idx[..., :1], (2, 2))
    with pytest.raises(ValueError, match=r"indices has dtype float32; pass the integer indices"):
        cf.max_unpool(y, idx.astype(jnp.float32), (2, 2))
    with pytest.raises(ValueError, match=r"padding='SAME': max_unpool cannot resolve a padding"):
        cf.max_unpool(y, idx, (2, 2), padding="SAME")
    with pytest.raises(ValueError, match=r"padding=1 leaves an empty output \(0, 0\)"):
        cf.max_unpool(y[:, :1, :1], idx[:, :1, :1], (2, 2), padding=1)


def test_errors_are_raised_while_tracing_under_jit():
    # Shapes are static, so the checks run in Python before XLA compiles anything.
    with pytest.raises(ValueError, match=r"window=\(7, 7\) .* larger than the padded input"):
        jax.jit(lambda x: cf.max_pool(x, (7, 7)))(X)
    with pytest.raises(ValueError, match=r"padding=3 gives \(3, 3\), more than half"):
        jax.grad(lambda x: cf.avg_pool(x, (2, 2), 1, 3).sum())(X)
