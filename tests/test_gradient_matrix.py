"""The gradient matrix: ``gradcheck`` over every functional op and option.

Every case checks the derivatives with respect to every floating input (activations,
kernel, bias) in float64, element by element (``mode="full"``), in reverse and forward mode
(forward mode is skipped, with a note, where an op defines a ``custom_vjp``), and asserts
that random inputs hit no kink. The fast part (one case per option, options combined) runs
by default; ``-m slow`` runs the full grid: every conv implementation x every padding kind x
every padding mode with strides, dilations, groups, flips and layouts cycled through, every
transposed-conv combination, and every pooling kind x ceil_mode x padding x dilation.
Models in the zoo are checked by the models' own tests.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf
from convjax.testing import gradcheck

PADDINGS = ["VALID", "SAME", "SAME_LOWER", "FULL", "CAUSAL", 1, (1, 0), ((1, 0), (0, 2))]
MODES = list(cf.PADDING_MODES)
IMPLS = list(cf.CONV_IMPLS)


def _rng(*seed):
    return np.random.default_rng(list(seed) or [0])


def _conv_case(
    *,
    nd=2,
    cin=2,
    cout=4,
    ksize=(3, 2, 2),
    in_size=(6, 5, 4),
    batch=1,
    bias=True,
    channels_last=True,
    seed=0,
    **opts,
):
    rng = _rng(seed, nd, cin, cout)
    groups = opts.get("groups", 1)
    spatial = in_size[:nd]
    shape = (batch, *spatial, cin) if channels_last else (batch, cin, *spatial)
    if batch is None:  # unbatched
        shape = shape[1:]
    x = rng.normal(size=shape)
    k = rng.normal(size=(*ksize[:nd], cin // groups, cout))
    args = (x, k, rng.normal(size=(cout,))) if bias else (x, k)

    def fn(x, k, b=None):
        return cf.conv(x, k, b, channels_last=channels_last, **opts)

    return fn, args


def _check(fn, *args, **kw):
    rep = gradcheck(fn, *args, mode="full", **kw)
    assert rep.passed
    # Random continuous inputs are almost surely away from every kink and tie.
    assert not rep.kinks, str(rep)
    return rep


# --- fast part: every option at least once --------------------------------------------------
FAST_CONV = {
    "valid": {},
    "same_stride2": dict(padding="SAME", stride=2),
    "same_lower_stride2": dict(padding="SAME_LOWER", stride=2),
    "full": dict(padding="FULL"),
    "causal_1d": dict(nd=1, padding="CAUSAL", dilation=2),
    "pairs": dict(padding=((1, 0), (0, 2))),
    "per_dim_int": dict(padding=(2, 1), stride=(1, 2)),
    "reflect": dict(padding=1, padding_mode="reflect"),
    "replicate": dict(padding="SAME", padding_mode="replicate", stride=2),
    "circular": dict(padding=((2, 1), (1, 1)), padding_mode="circular"),
    "dilation2": dict(dilation=2),
    "groups2": dict(groups=2, cin=4),
    "depthwise_multiplier2": dict(groups=2, cin=2, cout=4, padding="SAME"),
    "flip": dict(flip=True, padding=1),
    "channels_first": dict(channels_last=False, stride=2, padding=1),
    "unbatched_no_bias": dict(batch=None, bias=False, padding="SAME"),
    "conv3d": dict(nd=3, padding=1, stride=2, cout=2),
}


@pytest.mark.parametrize("name", list(FAST_CONV))
def test_conv_fast(name):
    fn, args = _conv_case(**FAST_CONV[name])
    _check(fn, *args)


# Every implementation of the table (new ones are picked up automatically), options combined.
IMPL_OPTIONS = [
    dict(stride=2, dilation=(1, 2), groups=2, padding=1),
    dict(stride=(2, 1), dilation=(2, 1), groups=2, padding="SAME", padding_mode="reflect"),
    dict(stride=2, dilation=2, groups=4, padding="FULL", flip=True),
    dict(stride=1, dilation=1, groups=1, padding="CAUSAL", channels_last=False),
]


# For implementations restricted to one kernel shape (Winograd F(2x2, 3x3): 2-D, 3x3,
# stride 1, groups 1) when none of the combined options above is supported.
RESTRICTED_OPTIONS = dict(ksize=(3, 3, 3), padding=1, padding_mode="replicate", flip=True)


def _unsupported(impl, fn, args):
    """The impl's own refusal (a ValueError naming it) for these options, or None.

    ``eval_shape`` runs the Python-side checks without compiling anything. Only an error
    that names the implementation counts: any other error is a real failure.
    """
    try:
        jax.eval_shape(fn, *args)
    except ValueError as err:
        if str(err).startswith(f"impl={impl!r}"):
            return str(err)
        raise
    return None


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_every_impl_fast(impl):
    start = IMPLS.index(impl) % len(IMPL_OPTIONS)
    candidates = IMPL_OPTIONS[start:] + IMPL_OPTIONS[:start] + [RESTRICTED_OPTIONS]
    for opts in candidates:
        fn, args = _conv_case(impl=impl, cin=4, **opts)
        if _unsupported(impl, fn, args) is None:
            _check(fn, *args)
            return
    pytest.fail(f"impl={impl!r} supports none of the option sets {candidates}")


FAST_TRANSPOSE = {
    "stride2_outpad1": dict(stride=2, padding=1, output_padding=1),
    "dilation_groups": dict(dilation=2, groups=2, padding=(1, 0)),
    "direct_stride_pairs": dict(impl="direct", stride=(2, 1), padding=((1, 0), (0, 1))),
}


def _transpose_case(
    *, nd=2, cin=2, cout=4, channels_last=True, bias=True, impl="lax", seed=0, **opts
):
    rng = _rng(seed, nd, 7)
    groups = opts.get("groups", 1)
    spatial = (3, 4, 3)[:nd]
    x = rng.normal(size=(1, *spatial, cin) if channels_last else (1, cin, *spatial))
    # conv_transpose's kernel is HWIO of this op: (*spatial, cin // groups, cout).
    k = rng.normal(size=(*(3, 2, 2)[:nd], cin // groups, cout))
    args = (x, k, rng.normal(size=(cout,))) if bias else (x, k)

    def fn(x, k, b=None):
        return cf.conv_transpose(x, k, b, channels_last=channels_last, impl=impl, **opts)

    return fn, args


@pytest.mark.parametrize("name", list(FAST_TRANSPOSE))
def test_conv_transpose_fast(name):
    fn, args = _transpose_case(**FAST_TRANSPOSE[name])
    _check(fn, *args)


def _pool_input(seed=0, shape=(1, 6, 5, 2)):
    return _rng(seed, 11).normal(size=shape)


FAST_POOL = {
    "max": lambda x: cf.max_pool(x, (2, 2), 2),
    "max_pad_ceil_dilation": lambda x: cf.max_pool(
        x, (2, 2), 2, 1, dilation=(2, 1), ceil_mode=True
    ),
    "min_ceil": lambda x: cf.min_pool(x, (3, 2), 2, ceil_mode=True),
    "avg_include_pad": lambda x: cf.avg_pool(x, (3, 3), 2, 1, count_include_pad=True),
    "avg_exclude_pad_ceil": lambda x: cf.avg_pool(
        x, (3, 3), 2, 1, count_include_pad=False, ceil_mode=True
    ),
    "avg_dilation_divisor": lambda x: cf.avg_pool(x, (2, 2), 1, dilation=2, divisor_override=3),
    "sum": lambda x: cf.sum_pool(x, (2, 3), (1, 2), 1),
    "lp2": lambda x: cf.lp_pool(x, (2, 2), 2, p=2.0),
    "lp3_ceil": lambda x: cf.lp_pool(x, (2, 2), 2, p=3.0, ceil_mode=True),
    "adaptive_avg": lambda x: cf.adaptive_avg_pool(x, (4, 3)),
    "adaptive_max": lambda x: cf.adaptive_max_pool(x, (3, 2)),
    "global_avg": lambda x: cf.global_avg_pool(x, 2),
    "global_max": lambda x: cf.global_max_pool(x, 2, keepdims=True),
    "max_1d_channels_first": lambda x: cf.max_pool(x[:, :, :, 0], (2,), 2, channels_last=False),
    "avg_3d": lambda x: cf.avg_pool(x[..., None], (2, 2, 2), 1, num_spatial_dims=3),
}


@pytest.mark.parametrize("name", list(FAST_POOL))
def test_pool_fast(name):
    _check(FAST_POOL[name], _pool_input())


def test_max_unpool():
    x = _pool_input(1, (1, 4, 4, 2))
    y, idx = cf.max_pool(x, (2, 2), 2, return_indices=True)
    # Gradient w.r.t. the pooled values, with the (integer) indices held fixed.
    _check(lambda y: cf.max_unpool(y, idx, (2, 2), 2), np.asarray(y))


def test_dense_flatten_activations():
    rng = _rng(3)
    x = rng.normal(size=(2, 3, 2, 2))
    params = cf.dense_init(__import__("jax").random.key(0), 12, 5)
    params = {k: np.asarray(v, np.float64) + rng.normal(size=v.shape) for k, v in params.items()}

    def fn(p, x):
        h = cf.dense(cf.flatten(x), p["kernel"], p["bias"])
        return {
            "relu": cf.relu(h),
            "leaky_relu": cf.leaky_relu(h, 0.2),
            "elu": cf.elu(h, 0.7),
            "gelu": cf.gelu(h),
            "gelu_tanh": cf.gelu(h, approximate=True),
            "sigmoid": cf.sigmoid(h),
            "tanh": cf.tanh(h),
            "softmax": cf.softmax(h, axis=0),
            "log_softmax": cf.log_softmax(h),
        }

    _check(fn, params, x)
    # Dense on an unbatched vector and with several batch axes.
    _check(lambda x, k: cf.dense(x, k), rng.normal(size=(4,)), rng.normal(size=(4, 3)))
    _check(cf.dense, rng.normal(size=(2, 3, 4)), rng.normal(size=(4, 2)), rng.normal(size=(2,)))


@pytest.mark.parametrize("reduction", cf.REDUCTIONS)
def test_losses(reduction):
    rng = _rng(4)
    logits = rng.normal(scale=2.0, size=(2, 3, 5))
    labels = rng.integers(0, 5, size=(2, 3))
    _check(
        lambda z: cf.softmax_cross_entropy(z, labels, label_smoothing=0.1, reduction=reduction),
        logits,
    )
    _check(lambda z: cf.softmax_cross_entropy(z, labels, reduction=reduction), logits)
    _check(lambda z: cf.multiclass_hinge_loss(z, labels, 0.5, reduction=reduction), logits)


def test_second_order_through_conv_pool_dense_loss():
    # A tiny CNN loss: second derivatives (Hessian-vector products) through every layer kind.
    rng = _rng(5)
    x = rng.normal(size=(2, 5, 5, 1))
    labels = np.array([1, 0])
    k = rng.normal(size=(3, 3, 1, 2))
    w = rng.normal(size=(8, 2))

    def loss(k, w):
        h = cf.tanh(cf.conv(x, k, padding="SAME", padding_mode="reflect"))
        h = cf.avg_pool(h, (2, 2), 2)
        return cf.softmax_cross_entropy(cf.dense(cf.flatten(h), w), labels)

    rep = _check(loss, k, w, order=2)
    assert rep.orders == (1, 2)


# --- slow part: the full grid ---------------------------------------------------------------
def _conv_grid():
    cycle = itertools.cycle(
        [
            dict(stride=1, dilation=1, groups=1, flip=False, channels_last=True),
            dict(stride=2, dilation=1, groups=2, flip=True, channels_last=False),
            dict(stride=1, dilation=2, groups=1, flip=True, channels_last=True),
            dict(stride=(2, 1), dilation=(1, 2), groups=2, flip=False, channels_last=True),
            dict(stride=2, dilation=2, groups=4, flip=False, channels_last=False),
        ]
    )
    for impl, padding, mode in itertools.product(IMPLS, PADDINGS, MODES):
        opts = dict(next(cycle))
        yield pytest.param(
            dict(impl=impl, padding=padding, padding_mode=mode, cin=4, **opts),
            id=f"{impl}-{padding}-{mode}-s{opts['stride']}-d{opts['dilation']}-g{opts['groups']}"
            f"-flip{int(opts['flip'])}-{'nhwc' if opts['channels_last'] else 'nchw'}",
        )
    for impl, nd in itertools.product(IMPLS, (1, 3)):
        yield pytest.param(
            dict(impl=impl, nd=nd, padding="SAME", stride=2, dilation=1, groups=2, cin=2, cout=2),
            id=f"{impl}-{nd}d",
        )
    # 3x3, stride 1, groups 1 for every impl (the only shape some implementations, such as
    # Winograd F(2x2, 3x3), accept): every padding kind, modes and layouts cycled.
    for impl, (i, padding) in itertools.product(IMPLS, enumerate(PADDINGS)):
        mode = MODES[i % len(MODES)]
        yield pytest.param(
            dict(
                impl=impl,
                ksize=(3, 3, 3),
                padding=padding,
                padding_mode=mode,
                flip=bool(i % 2),
                channels_last=i % 3 != 2,
            ),
            id=f"{impl}-3x3-{padding}-{mode}",
        )
    # Circular padding wider than the input wraps more than once.
    yield pytest.param(
        dict(nd=1, padding=((7, 6),), padding_mode="circular", in_size=(4,)), id="circular-wide"
    )


@pytest.mark.slow
@pytest.mark.parametrize("opts", list(_conv_grid()))
def test_conv_grid(opts):
    fn, args = _conv_case(**opts)
    reason = _unsupported(opts.get("impl", "lax"), fn, args)
    if reason:
        pytest.skip(reason)
    _check(fn, *args)


def _transpose_grid():
    for impl, stride, padding, dilation, groups in itertools.product(
        IMPLS, (1, 2), (0, 1), (1, 2), (1, 2)
    ):
        for output_padding in range(max(stride, dilation)):
            yield pytest.param(
                dict(
                    impl=impl,
                    stride=stride,
                    padding=padding,
                    dilation=dilation,
                    groups=groups,
                    output_padding=output_padding,
                    channels_last=groups == 1,
                ),
                id=f"{impl}-s{stride}-p{padding}-d{dilation}-g{groups}-op{output_padding}",
            )


@pytest.mark.slow
@pytest.mark.parametrize("opts", list(_transpose_grid()))
def test_conv_transpose_grid(opts):
    fn, args = _transpose_case(**opts)
    reason = _unsupported(opts["impl"], fn, args)
    if reason:
        pytest.skip(reason)
    _check(fn, *args)


def _pool_grid():
    kinds = {
        "max": cf.max_pool,
        "min": cf.min_pool,
        "sum": cf.sum_pool,
        "avg_incl": lambda *a, **k: cf.avg_pool(*a, count_include_pad=True, **k),
        "avg_excl": lambda *a, **k: cf.avg_pool(*a, count_include_pad=False, **k),
        "lp2": lambda *a, **k: cf.lp_pool(*a, p=2.0, **k),
        "lp3": lambda *a, **k: cf.lp_pool(*a, p=3.0, **k),
    }
    for (name, pool), ceil_mode, padding, dilation, layout in itertools.product(
        kinds.items(), (False, True), (0, 1), (1, 2), ("nhwc", "nchw")
    ):

        def fn(
            x, pool=pool, ceil_mode=ceil_mode, padding=padding, dilation=dilation, layout=layout
        ):
            if layout == "nchw":
                x = jnp.moveaxis(x, -1, 1)  # same data, channels-first
            return pool(
                x,
                (2, 3),
                2,
                padding,
                dilation=dilation,
                ceil_mode=ceil_mode,
                channels_last=layout == "nhwc",
            )

        yield pytest.param(fn, id=f"{name}-ceil{int(ceil_mode)}-p{padding}-d{dilation}-{layout}")


@pytest.mark.slow
@pytest.mark.parametrize("fn", list(_pool_grid()))
def test_pool_grid(fn):
    _check(fn, _pool_input(2, (1, 7, 6, 2)))
