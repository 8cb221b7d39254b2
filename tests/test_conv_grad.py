"""impl="matmul_grad": XLA's forward, the kernel gradient as per-tap matmuls on the CPU.

Its derivatives are checked against impl="lax" (JAX's own rules) over a grid of stride,
dilation, groups, padding, padding mode, flip, layout and 1/2/3 spatial dimensions, in
float64 and float32; against finite differences by gradcheck (first and second order, reverse
and forward mode); under jit and vmap; and the program it lowers to is inspected: matmuls and
no kernel-gradient convolution for the CPU, XLA's convolution for GPU and TPU.
"""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

import convjax.functional as cf
from convjax.testing import gradcheck


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def _case(nd, stride, dilation, groups, padding, channels_last, seed=0, cout=None):
    rng = np.random.default_rng(seed)
    cin = 2 * groups
    cout = cout or 2 * groups
    spatial = (7, 6, 5)[:nd]
    shape = (2, *spatial, cin) if channels_last else (2, cin, *spatial)
    x = rng.standard_normal(shape)
    k = rng.standard_normal((*(3, 2, 2)[:nd], cin // groups, cout))
    b = rng.standard_normal(cout)
    return x, k, b


def _grid():
    paddings = ["VALID", "SAME", "FULL", "CAUSAL", 1, ((1, 0),)]
    modes = ["zeros", "reflect", "replicate", "circular"]
    combos = itertools.product((1, 2, 3), ((1, 2), (2, 1)), (1, 2), (True, False))
    for i, (nd, (stride, dilation), groups, channels_last) in enumerate(combos):
        padding = paddings[i % len(paddings)]
        if padding == ((1, 0),):
            padding = ((1, 0),) * nd
        mode = modes[i % len(modes)] if padding not in ("FULL",) else "zeros"
        yield pytest.param(
            dict(
                nd=nd,
                stride=stride,
                dilation=dilation,
                groups=groups,
                padding=padding,
                padding_mode=mode,
                channels_last=channels_last,
                flip=bool(i % 3 == 0),
            ),
            id=f"{nd}d-s{stride}-d{dilation}-g{groups}-{padding}-{mode}-"
            f"{'nhwc' if channels_last else 'nchw'}",
        )


@pytest.mark.parametrize("opts", list(_grid()))
def test_gradients_equal_lax_float64(opts, x64):
    opts = dict(opts)
    nd = opts.pop("nd")
    x, k, b = _case(nd, opts["stride"], opts["dilation"], opts["groups"], opts["padding"], True)
    if not opts["channels_last"]:
        x = np.moveaxis(x, -1, 1)
    ct = None

    def vjp(impl):
        nonlocal ct
        y, pullback = jax.vjp(lambda *a: cf.conv(*a, impl=impl, **opts), x, k, b)
        if ct is None:
            ct = np.random.default_rng(1).standard_normal(y.shape)
        return y, pullback(ct)

    y_ref, g_ref = vjp("lax")
    y, g = vjp("matmul_grad")
    # The same forward program: identical numbers.
    np.testing.assert_array_equal(y, y_ref)
    # Same products summed in another order: float64 round-off is ~1e-16 per term over at
    # most 2 * 7 * 6 * 5 = 420 terms of magnitude ~3, far below 1e-10.
    for got, want in zip(g, g_ref):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_float32_kernel_gradient_within_the_roundoff_bound():
    # Both kernel gradients sum K = N * Ho * Wo products per entry; each differs from the
    # exact sum by at most K * eps * sum |x| |dy| (the standard bound for a sum of products),
    # so they differ from each other by at most twice that.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 12, 10, 6)).astype(np.float32)
    k = rng.standard_normal((3, 3, 3, 8)).astype(np.float32)
    kw = dict(stride=(1, 2), padding="SAME", groups=2, dilation=(2, 1))
    y = cf.conv(x, k, **kw)
    dy = rng.standard_normal(y.shape).astype(np.float32)

    def dk(impl, x, dy, dtype):
        return jax.vjp(lambda k_: cf.conv(x, k_, impl=impl, **kw), k.astype(dtype))[1](dy)[0]

    got = np.asarray(dk("matmul_grad", x, dy, np.float32), np.float64)
    want = np.asarray(dk("lax", x, dy, np.float32), np.float64)
    with jax.enable_x64(True):
        magnitude = np.asarray(
            dk("lax", np.abs(x.astype(np.float64)), np.abs(dy.astype(np.float64)), np.float64)
        )
    terms = y.shape[0] * y.shape[1] * y.shape[2]
    bound = 2 * terms * np.finfo(np.float32).eps * magnitude
    assert np.all(np.abs(got - want) <= bound)


@pytest.mark.parametrize("nd", [1, 2, 3])
def test_gradcheck_first_and_second_order_both_modes(nd):
    # Tiny inputs: order 2 differentiates the gradient once more by finite differences.
    rng = np.random.default_rng(nd)
    x = rng.standard_normal((1, *(5, 4, 3)[:nd], 2))
    k = rng.standard_normal((*(2,) * nd, 1, 2))
    b = rng.standard_normal(2)
    opts = dict(stride=2, padding="SAME", groups=2, impl="matmul_grad")
    rep = gradcheck(
        lambda x, k, b: jnp.tanh(cf.conv(x, k, b, **opts)), x, k, b, mode="full", order=2
    )
    assert rep.passed and rep.orders == (1, 2) and not rep.notes, str(rep)


def test_jvp_and_hessian_match_lax(x64):
    x, k, b = _case(2, 1, 1, 1, "SAME", True, seed=5)
    kw = dict(padding="SAME", dilation=(1, 2))

    def loss(impl):
        return lambda x, k: jnp.sum(jnp.sin(cf.conv(x, k, impl=impl, **kw)))

    rng = np.random.default_rng(6)
    tx, tk = rng.standard_normal(x.shape), rng.standard_normal(k.shape)
    got = jax.jvp(loss("matmul_grad"), (x, k), (tx, tk))
    want = jax.jvp(loss("lax"), (x, k), (tx, tk))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
    x1 = x[:1, :5, :4]  # every block of the Hessian w.r.t. (x, k): 40 + 24 coordinates
    h = jax.jit(jax.hessian(loss("matmul_grad"), (0, 1)))(x1, k)
    h_ref = jax.jit(jax.hessian(loss("lax"), (0, 1)))(x1, k)
    for a, r in zip(jax.tree.leaves(h), jax.tree.leaves(h_ref)):
        np.testing.assert_allclose(a, r, rtol=1e-9, atol=1e-9)


def test_jit_vmap_and_unbatched(x64):
    x, k, b = _case(2, 1, 1, 1, 1, True, seed=7)
    kw = dict(padding=1, stride=2)

    def grad_k(impl):
        return jax.grad(lambda k, x: jnp.sum(cf.conv(x, k, impl=impl, **kw) ** 2))

    per_example = jax.jit(jax.vmap(grad_k("matmul_grad"), (None, 0)))(k, x)
    want = jnp.stack([grad_k("lax")(k, xi) for xi in x])  # unbatched inputs, one at a time
    np.testing.assert_allclose(per_example, want, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        jax.jit(grad_k("matmul_grad"))(k, x), grad_k("lax")(k, x), rtol=1e-10, atol=1e-10
    )


def test_conv_transpose_gradients_match_lax(x64):
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 5, 4))
    k = rng.standard_normal((3, 2, 2, 6))
    kw = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2, output_padding=(1, 0))

    def grads(impl):
        return jax.grad(
            lambda x, k: jnp.sum(jnp.cos(cf.conv_transpose(x, k, impl=impl, **kw))), (0, 1)
        )(x, k)

    for got, want in zip(grads("matmul_grad"), grads("lax")):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def _kernel_grad_program(impl, platform):
    x, k = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
    g = jnp.ones((2, 4, 4, 4))

    def dk(x, k, g):
        return jax.vjp(lambda k: cf.conv(x, k, impl=impl), k)[1](g)[0]

    # Lowering for a platform needs no device of that kind.
    return export.export(jax.jit(dk), platforms=(platform,))(x, k, g).mlir_module()


@pytest.mark.parametrize("platform", ["cpu", "cuda", "tpu"])
def test_platform_choice(platform):
    text = _kernel_grad_program("matmul_grad", platform)
    if platform == "cpu":  # nine per-tap matmuls, no kernel-gradient convolution
        assert text.count("stablehlo.dot_general") == 9
        assert "stablehlo.convolution" not in text
    else:  # XLA's own kernel gradient
        assert text.count("stablehlo.convolution") == 1
        assert "stablehlo.dot_general" not in text
    lax_text = _kernel_grad_program("lax", platform)
    assert lax_text.count("stablehlo.convolution") == 1 and "dot_general" not in lax_text


def test_compiled_cpu_program_has_no_conditional():
    if jax.default_backend() != "cpu":
        pytest.skip("inspects XLA's CPU program")
    x, k = jnp.ones((2, 6, 6, 3)), jnp.ones((3, 3, 3, 4))
    loss = lambda k: jnp.sum(jnp.sin(cf.conv(x, k, impl="matmul_grad")))
    text = jax.jit(jax.grad(loss)).lower(k).compile().as_text()
    assert " conditional(" not in text and text.count(" dot(") + text.count("__ynn") >= 1


def test_bad_kernel_grad_name_is_an_error():
    from convjax.functional.conv_grad import conv_with_grad
    from convjax.functional.conv_impls import ConvSpec

    spec = ConvSpec(stride=(1,), padding=((0, 0),), dilation=(1,))
    with pytest.raises(ValueError, match=r"kernel_grad='fast' is not one of 'xla', 'matmul'"):
        conv_with_grad(jnp.ones((1, 4, 1)), jnp.ones((2, 1, 1)), spec, kernel_grad="fast")
