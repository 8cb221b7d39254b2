"""convjax.testing.gradcheck: planted wrong gradients are caught, correct ones pass, kinks are
reported separately, the lecture's backprop-with-matrices example, options and errors."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convjax.functional as cf
from convjax.testing import GradcheckError, GradcheckReport, gradcheck

RNG = np.random.default_rng(0)
X = RNG.normal(size=(3, 4)).astype(np.float32)


# --- planted wrong gradients -------------------------------------------------------------
def _sin_sum(sign):
    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.sin(x))

    f.defvjp(lambda x: (f(x), x), lambda x, g: (sign * g * jnp.cos(x),))
    return f


def _product_plus_square(missing_term):
    # f(x, y) = sum(x * y + x^2): df/dx = y + 2x, df/dy = x.
    @jax.custom_vjp
    def f(x, y):
        return jnp.sum(x * y + x**2)

    def bwd(res, g):
        x, y = res
        dx = g * y if missing_term else g * (y + 2 * x)
        return dx, g * x

    f.defvjp(lambda x, y: (f(x, y), (x, y)), bwd)
    return f


def _shift(off_by_one):
    # f(x) = x[1:] * c: the cotangent must land on x[1:], i.e. be padded on the left.
    c = jnp.arange(1.0, 6.0)

    @jax.custom_vjp
    def f(x):
        return x[1:] * c.astype(x.dtype)

    def bwd(x, g):
        gc = g * c.astype(g.dtype)
        pad = (0, 1) if off_by_one else (1, 0)
        return (jnp.pad(gc, pad),)

    f.defvjp(lambda x: (f(x), x), bwd)
    return f


def _expm1_minus_x(float32_backward):
    # f(x) = sum(expm1(x) - x), df/dx = expm1(x). The planted backward computes exp(x) - 1
    # in float32: correct to float32 precision (it is what float32 autodiff would give) but
    # for x ~ 1e-3 its absolute error ~6e-8 is a 6e-5 relative error in float64.
    @jax.custom_vjp
    def f(x):
        return jnp.sum(jnp.expm1(x) - x)

    def bwd(x, g):
        if float32_backward:
            d = (jnp.exp(x.astype(jnp.float32)) - 1.0).astype(x.dtype)
        else:
            d = jnp.expm1(x)
        return (g * d,)

    f.defvjp(lambda x: (f(x), x), bwd)
    return f


def test_catches_sign_error_and_names_worst_coordinate():
    with pytest.raises(GradcheckError) as info:
        gradcheck(_sin_sum(-1.0), X)
    msg = str(info.value)
    # Worst value: largest |cos| -> the coordinate closest to 0.
    i, j = np.unravel_index(np.argmax(np.abs(np.cos(X.astype(np.float64)))), X.shape)
    assert f"args[0] at index ({i}, {j})" in msg
    assert re.search(r"12 of 12 derivative values are outside tolerance", msg)
    a = -np.cos(np.float64(X[i, j]))
    assert re.search(rf"analytic={a:.6f}\d*, numeric={-a:.6f}\d*", msg), msg
    assert re.search(rf"abs err={2 * abs(a):.3g}, rel err=2\b", msg), msg
    rep = info.value.report
    assert not rep.passed and rep.failures[0].index == (i, j)
    assert rep.failures[0].abs_err == pytest.approx(2 * abs(a), rel=1e-8)
    assert gradcheck(_sin_sum(1.0), X).passed


def test_catches_missing_term_in_one_argument_only():
    x = RNG.normal(size=(5,))
    y = RNG.normal(size=(5,))
    with pytest.raises(GradcheckError, match=r"Worst: args\[0\] at index \(\d,\)"):
        gradcheck(_product_plus_square(True), x, y)
    # Only y checked: its gradient is right, so this passes.
    assert gradcheck(_product_plus_square(True), x, y, argnums=1).passed
    assert gradcheck(_product_plus_square(False), x, y).passed


def test_catches_off_by_one_index():
    x = RNG.normal(size=(6,))
    with pytest.raises(GradcheckError, match=r"args\[0\] at index \(\d,\), output out\[\d\]"):
        gradcheck(_shift(True), x)
    assert gradcheck(_shift(False), x).passed


def test_catches_gradient_right_only_in_float32():
    x = (1e-3 * (1.0 + RNG.random(size=(8,)))).astype(np.float32)
    f = _expm1_minus_x(True)
    # At float32 precision the planted rule is indistinguishable from the truth...
    assert gradcheck(f, x, dtype="float32").passed
    # ...but the default float64 check sees its float32 rounding.
    with pytest.raises(GradcheckError, match=r"rel err=\d.*e-0[4-7]"):
        gradcheck(f, x)
    assert gradcheck(_expm1_minus_x(False), x).passed


def test_directional_mode_catches_sign_error_and_passes_correct():
    x = RNG.normal(size=(20, 30))
    with pytest.raises(GradcheckError, match=r"Worst: direction \d+"):
        gradcheck(_sin_sum(-1.0), x, mode="directional", num_directions=4)
    rep = gradcheck(_sin_sum(1.0), x, mode="directional", num_directions=4)
    assert rep.mode == "directional" and rep.num_probes == 4
    # auto picks directional above max_full_size inputs
    assert gradcheck(_sin_sum(1.0), x, max_full_size=100, num_directions=2).mode == "directional"


def test_second_order_catches_wrong_second_derivative():
    # First derivative right, but computed through stop_gradient: its own derivative is 0.
    @jax.custom_vjp
    def cube(x):
        return jnp.sum(x**3)

    cube.defvjp(lambda x: (cube(x), x), lambda x, g: (g * 3 * jax.lax.stop_gradient(x) ** 2,))
    x = RNG.normal(size=(4,))
    assert gradcheck(cube, x).passed
    with pytest.raises(GradcheckError, match=r"order 2"):
        gradcheck(cube, x, order=2)
    rep = gradcheck(lambda x: jnp.sum(x**3), x, order=2)
    assert rep.orders == (1, 2) and rep.passed


def test_forward_mode_bug_is_caught_in_forward_mode():
    # A wrong custom_jvp: forward mode uses it directly, reverse mode its transpose.
    @jax.custom_jvp
    def f(x):
        return jnp.sin(x)

    f.defjvp(lambda p, t: (jnp.sin(p[0]), 2.0 * jnp.cos(p[0]) * t[0]))
    x = RNG.normal(size=(3,))
    for ad in ("forward", "reverse", "both"):
        with pytest.raises(GradcheckError, match=r"rel err=1\b"):
            gradcheck(f, x, ad=ad)


def test_custom_vjp_skips_forward_mode_with_a_note():
    rep = gradcheck(_sin_sum(1.0), X)
    assert rep.ad == ("reverse", "forward")
    assert any("forward mode skipped" in n for n in rep.notes)
    with pytest.raises(TypeError, match="custom_vjp"):
        gradcheck(_sin_sum(1.0), X, ad="forward")


# --- no false alarms; kinks ----------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_no_false_alarms_relu_max_pool_softmax_at_random_points(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 4, 4, 3))
    assert gradcheck(cf.relu, x[0, :3]).passed
    assert gradcheck(lambda a: cf.max_pool(a, (2, 2), 2), x, ad="reverse").passed
    assert gradcheck(lambda a: jnp.max(a, axis=-1), x[0]).passed
    labels = rng.integers(0, 3, size=(2, 4, 4))
    assert gradcheck(lambda z: cf.softmax_cross_entropy(z, labels, label_smoothing=0.1), x).passed


def test_kinks_are_reported_separately_not_failed():
    x = np.array([0.0, 1.5, -2.0, 0.0])
    rep = gradcheck(cf.relu, x)
    assert rep.passed
    kink_idx = {k.index for k in rep.kinks}
    assert kink_idx == {(0,), (3,)}
    k = rep.kinks[0]
    assert (k.forward, k.backward) == (pytest.approx(1.0), pytest.approx(0.0))
    assert "kink" in str(rep)
    with pytest.raises(GradcheckError, match=r"args\[0\] at index \((0|3),\)"):
        gradcheck(cf.relu, x, kinks="fail")
    # abs at 0 and clipping at the bound are kinks too.
    assert {k.index for k in gradcheck(jnp.abs, np.array([0.0, 1.0])).kinks} == {(0,)}
    clip = lambda a: jnp.clip(a, -1.0, 1.0)
    assert {k.index for k in gradcheck(clip, np.array([1.0, 0.3, -1.0])).kinks} == {(0,), (2,)}


def test_kink_at_tied_maxima_in_max_pooling():
    x = np.zeros((1, 2, 2, 1))  # one window, four tied maxima
    rep = gradcheck(lambda a: cf.max_pool(a, (2, 2), 2), x, ad="reverse")
    assert rep.passed and len(rep.kinks) == 4
    x[0, 0, 1, 0] = 1.0  # a unique maximum: no kink
    rep = gradcheck(lambda a: cf.max_pool(a, (2, 2), 2), x, ad="reverse")
    assert rep.passed and not rep.kinks


def test_sign_error_at_a_kink_still_fails():
    # relu'(0) = -1 is not between the one-sided derivatives 0 and 1.
    @jax.custom_vjp
    def relu_bad(x):
        return cf.relu(x)

    relu_bad.defvjp(
        lambda x: (relu_bad(x), x),
        lambda x, g: (g * jnp.where(x > 0, 1.0, jnp.where(x == 0, -1.0, 0.0)),),
    )
    with pytest.raises(GradcheckError, match=r"index \(0,\).* sits on a kink .* not between"):
        gradcheck(relu_bad, np.array([0.0, 1.5, -2.0]))


def test_nan_gradient_fails():
    @jax.custom_vjp
    def f(x):
        return jnp.sum(x**2)

    f.defvjp(lambda x: (f(x), x), lambda x, g: (jnp.where(x > 1.0, jnp.nan, 2 * g * x),))
    with pytest.raises(GradcheckError, match=r"index \(2,\).*analytic=nan"):
        gradcheck(f, np.array([0.5, -0.3, 1.2]))


def test_bug_at_smooth_point_is_not_hidden_as_kink():
    # Wrong relu derivative (slope 2 on the positive side) at points away from 0.
    @jax.custom_vjp
    def relu2(x):
        return cf.relu(x)

    relu2.defvjp(lambda x: (relu2(x), x), lambda x, g: (2.0 * g * (x > 0),))
    with pytest.raises(GradcheckError, match=r"index \(1,\)"):
        gradcheck(relu2, np.array([0.0, 1.5, -2.0]))


# --- the lecture's backprop-with-matrices example --------------------------------------------
def test_lecture_backprop_with_matrices():
    x = np.array([[2.0, 1.0, -3.0], [-3.0, 4.0, 2.0]])
    w = np.array([[3.0, 2.0, 1.0, -1.0], [2.0, 1.0, 3.0, 2.0], [3.0, 2.0, 1.0, -2.0]])
    dldy = np.array([[2.0, 3.0, -3.0, 9.0], [-8.0, 1.0, 4.0, 6.0]])
    # y = x w by definition: [[-1, -1, 2, 6], [5, 2, 11, 7]] (the slide's y is not x w).
    # dL/dx = dL/dy w^T, e.g. [0, 0] = 2*3 + 3*2 - 3*1 + 9*(-1) = 0.
    dldx_hand = np.array([[0.0, 16.0, -9.0], [-24.0, 9.0, -30.0]])
    # dL/dw = x^T dL/dy, e.g. [0, 0] = 2*2 + (-3)*(-8) = 28.
    dldw_hand = np.array(
        [[28.0, 3.0, -18.0, 0.0], [-30.0, 7.0, 13.0, 33.0], [-22.0, -7.0, 17.0, -15.0]]
    )
    np.testing.assert_array_equal(dldy @ w.T, dldx_hand)
    np.testing.assert_array_equal(x.T @ dldy, dldw_hand)

    def loss(x, w):  # L = sum(y * dL/dy), so dL/dy is the given matrix
        return jnp.sum(cf.dense(x, w) * dldy)

    with jax.enable_x64(True):
        dx, dw = jax.grad(loss, (0, 1))(jnp.asarray(x), jnp.asarray(w))
    np.testing.assert_array_equal(dx, dldx_hand)
    np.testing.assert_array_equal(dw, dldw_hand)
    rep = gradcheck(loss, x, w)
    assert rep.passed and rep.num_inputs == 6 + 12 and rep.max_abs_err < 1e-6
    # The slide's y as a "gradient check" of the forward pass would fail: y != x w.
    y_slide = np.array([[13.0, 9.0, -2.0, -6.0], [5.0, 2.0, 17.0, 1.0]])
    assert not np.array_equal(x @ w, y_slide)


# --- pytrees, selection, precision scope, report ---------------------------------------------
def test_pytrees_wrt_and_integer_leaves():
    params = {
        "dense": cf.dense_init(jax.random.key(0), 4, 3),
        "scale": np.float32(1.5) * np.ones((3,), np.float32),
    }
    x = RNG.normal(size=(5, 4)).astype(np.float32)
    labels = np.array([0, 2, 1, 1, 0])

    def loss(p, x, labels):
        z = cf.dense(x, p["dense"]["kernel"], p["dense"]["bias"]) * p["scale"]
        return cf.softmax_cross_entropy(z, labels)

    rep = gradcheck(loss, params, x, labels)
    paths = [p for p, _ in rep.leaves]
    assert paths == [
        "args[0]['dense']['bias']",
        "args[0]['dense']['kernel']",
        "args[0]['scale']",
        "args[1]",
    ]
    rep = gradcheck(loss, params, x, labels, wrt=["kernel"])
    assert [p for p, _ in rep.leaves] == ["args[0]['dense']['kernel']"]
    assert rep.num_inputs == 12
    rep = gradcheck(loss, params, x, labels, wrt=lambda path, leaf: leaf.ndim == 1, argnums=0)
    assert [p for p, _ in rep.leaves] == ["args[0]['dense']['bias']", "args[0]['scale']"]


def test_pytree_outputs_are_labelled():
    def f(x):
        return {"a": jnp.sin(x), "n": jnp.argmax(x), "b": jnp.sum(x**2)}

    @jax.custom_vjp
    def bad(x):
        return f(x)

    bad.defvjp(lambda x: (f(x), x), lambda x, g: (jnp.cos(x) * g["a"] + 3 * x * g["b"],))
    x = RNG.normal(size=(3,))
    rep = gradcheck(f, x)
    assert rep.num_outputs == 4  # the integer argmax output is ignored
    with pytest.raises(GradcheckError, match=r"output out\['b'\]"):
        gradcheck(bad, x)


def test_float64_is_scoped_and_dtype_none_keeps_float32():
    seen = []

    def f(x):
        seen.append(x.dtype)
        return jnp.sum(jnp.tanh(x))

    before = jax.config.jax_enable_x64
    rep = gradcheck(f, X, jit=False, vectorize=False)
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(1).dtype == jnp.float32
    assert rep.dtype == "float64" and set(seen) == {jnp.dtype("float64")}
    seen.clear()
    rep = gradcheck(f, X, dtype=None)
    assert rep.dtype == "float32" and rep.rtol == 1e-3
    assert set(seen) == {jnp.dtype("float32")}


def test_flax_nnx_model_loss():
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(model, nnx.Param)
    x = RNG.normal(size=(4, 3)).astype(np.float32)

    def loss(state, x):
        return jnp.sum(jnp.tanh(nnx.merge(graphdef, state)(x)) ** 2)

    rep = gradcheck(loss, state, x, argnums=0)
    assert rep.passed and rep.num_inputs == 8
    assert any("kernel" in p for p, _ in rep.leaves)


def test_report_on_success_and_raise_on_failure_false():
    rep = gradcheck(jnp.sin, X, ad="reverse")
    assert isinstance(rep, GradcheckReport) and rep.passed and rep.failures == []
    assert rep.num_inputs == 12 and rep.num_outputs == 12
    assert rep.num_compared == 12 * 12  # full Jacobian, one cotangent per output
    assert rep.step == pytest.approx(np.finfo(np.float64).eps ** (1 / 3))
    assert "gradcheck passed" in str(rep)
    bad = gradcheck(_sin_sum(-1.0), X, raise_on_failure=False)
    assert not bad.passed and len(bad.failures) == 12
    # Output projections instead of the full Jacobian above max_output_size outputs.
    rep = gradcheck(jnp.sin, X, ad="reverse", max_output_size=4, num_output_projections=3)
    assert rep.num_compared == 12 * 3


def test_report_counts_every_failure_beyond_the_listed_ones():
    # sin's derivative with the wrong sign fails at every one of the 80 inputs (cos(x) != 0
    # for these draws); the report lists the 50 worst but counts all 80.
    x = RNG.normal(size=(80,))
    assert np.abs(np.cos(x)).min() > 1e-3
    rep = gradcheck(
        _sin_sum(-1.0), x, ad="reverse", mode="full", max_full_size=80, raise_on_failure=False
    )
    assert rep.num_compared == 80 and rep.num_failed == 80 and len(rep.failures) == 50
    assert str(rep).startswith("gradcheck FAILED (80 values)")
    with pytest.raises(GradcheckError, match=r"80 of 80 derivative values"):
        gradcheck(_sin_sum(-1.0), x, ad="reverse", mode="full", max_full_size=80)


def test_gradcheck_option_errors():
    f = jnp.sin
    with pytest.raises(ValueError, match=r"mode='exact' is not known; use one of 'auto'"):
        gradcheck(f, X, mode="exact")
    with pytest.raises(ValueError, match=r"ad='backward' is not known"):
        gradcheck(f, X, ad="backward")
    with pytest.raises(ValueError, match=r"order=3 is not supported; use 1"):
        gradcheck(f, X, order=3)
    with pytest.raises(ValueError, match=r"kinks='ignore' is not known"):
        gradcheck(f, X, kinks="ignore")
    with pytest.raises(ValueError, match=r"num_directions=0 must be a positive int"):
        gradcheck(f, X, num_directions=0)
    with pytest.raises(ValueError, match=r"dtype='int32' must be a floating dtype"):
        gradcheck(f, X, dtype="int32")
    with pytest.raises(ValueError, match=r"argnums=\(2,\) names argument 2 but fn gets 1"):
        gradcheck(f, X, argnums=(2,))
    with pytest.raises(
        ValueError, match=r"no floating-point array leaf to check .* wrt=\(.bias.,\)"
    ):
        gradcheck(f, X, wrt="bias")
    with pytest.raises(ValueError, match=r"no floating-point array leaf to check"):
        gradcheck(lambda n: jnp.sin(n * 1.0), np.arange(3))
    with pytest.raises(ValueError, match=r"wrt=3 must be None, a path substring"):
        gradcheck(f, X, wrt=3)
    with pytest.raises(ValueError, match=r"eps=-1.0, .* the step must be > 0"):
        gradcheck(f, X, eps=-1.0)
    with pytest.raises(ValueError, match=r"fn returned no floating-point output"):
        gradcheck(lambda x: jnp.argmax(x), X)
    with pytest.raises(ValueError, match=r"needs at least one argument"):
        gradcheck(f)


def test_catches_flipped_kernel_gradient_in_a_conv_rule():
    # A realistic planted bug: a hand-written conv VJP whose kernel gradient is spatially
    # flipped (true convolution instead of cross-correlation). dx is right.
    def conv(x, k):
        return cf.conv(x, k, padding="SAME")

    def make(flipped):
        @jax.custom_vjp
        def f(x, k):
            return conv(x, k)

        def bwd(res, g):
            dx, dk = jax.vjp(conv, *res)[1](g)
            return dx, (dk[::-1, ::-1] if flipped else dk)

        f.defvjp(lambda x, k: (conv(x, k), (x, k)), bwd)
        return f

    rng = np.random.default_rng(7)
    x, k = rng.normal(size=(1, 4, 4, 2)), rng.normal(size=(3, 3, 2, 2))
    with pytest.raises(GradcheckError, match=r"Worst: args\[1\] at index \(\d, \d, \d, \d\)"):
        gradcheck(make(True), x, k)
    assert gradcheck(make(True), x, k, argnums=0).passed
    assert gradcheck(make(False), x, k).passed


def test_directions_come_from_the_key():
    x = RNG.normal(size=(6, 7))
    run = lambda key: gradcheck(jnp.sin, x, mode="directional", num_directions=2, key=key)
    a, b = run(jax.random.key(3)), run(jax.random.key(3))
    assert a.worst.analytic == b.worst.analytic  # same key, same directions
    assert run(jax.random.PRNGKey(3)).worst.analytic == a.worst.analytic  # raw uint32 key
    assert run(jax.random.key(4)).worst.analytic != a.worst.analytic
    with pytest.raises(ValueError, match=r"must be a jax.random key"):
        run(jnp.ones(2))
