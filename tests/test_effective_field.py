"""convjax.inspect.effective_receptive_field: a linear conv stack's map equals the repeated
kernel convolution computed in NumPy; moments of a box stack are the hand-computed
sqrt(n * 2/3); mass fractions of a hand kernel; support inside the theoretical field;
every error message."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn
from convjax.inspect import effective_field


def _full_conv2d(a, b):
    """Full 2-D convolution of two small arrays, by loops (independent of any library)."""
    out = np.zeros((a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1))
    for i in range(b.shape[0]):
        for j in range(b.shape[1]):
            out[i : i + a.shape[0], j : j + a.shape[1]] += b[i, j] * a
    return out


def _spread(k, step):
    """Kernel taps ``step`` pixels apart (a dilation, or the jump of the strides before)."""
    out = np.zeros(((k.shape[0] - 1) * step + 1, (k.shape[1] - 1) * step + 1))
    out[::step, ::step] = k
    return out


def _analytic_erf(layers, unit, size):
    """|d y(unit) / d x| of a linear single-channel chain, derived by hand.

    Layer l maps y_l(i) = sum_u k_l(u) y_{l-1}(s_l i + d_l u - p_l). Substituting, the chain
    is y(i) = sum_w K(w) x(J i + w + start) with K the full convolution of the kernels
    spread by d_l * J_{l-1}, J the product of the strides and
    start = -sum_l p_l J_{l-1}. So d y(i) / d x(J i + start + w) = K(w).
    """
    kernel, jump, start = np.ones((1, 1)), 1, 0
    for k, stride, pad, dilation in layers:
        kernel = _full_conv2d(kernel, _spread(k, dilation * jump))
        start -= pad * jump
        jump *= stride
    out = np.zeros((size, size))
    top, left = jump * unit[0] + start, jump * unit[1] + start
    out[top : top + kernel.shape[0], left : left + kernel.shape[1]] = np.abs(kernel)
    region = ((top, top + kernel.shape[0] - 1), (left, left + kernel.shape[1] - 1))
    return out, region


def _linear_chain():
    rng = np.random.default_rng(0)
    r = nnx.Rngs(0)
    specs = [  # (layer, kernel or None, stride, padding, dilation)
        (cnn.Conv2d(1, 1, 3, padding=1, use_bias=False, rngs=r), 1, 1, 1),
        (cnn.Conv2d(1, 1, 3, padding=2, dilation=2, use_bias=False, rngs=r), 1, 2, 2),
        (cnn.Conv2d(1, 1, 3, stride=2, padding=1, use_bias=False, rngs=r), 2, 1, 1),
        (cnn.AvgPool((2, 2)), 2, 0, 1),
        (cnn.Conv2d(1, 1, 3, padding=1, use_bias=False, rngs=r), 1, 1, 1),
    ]
    chain = []
    for layer, stride, pad, dilation in specs:
        if isinstance(layer, cnn.Conv):
            k = rng.normal(size=(3, 3))  # signed: the map is |K|, not K
            layer.kernel[...] = jnp.asarray(k.reshape(3, 3, 1, 1), jnp.float32)
        else:
            k = np.full((2, 2), 0.25)  # average pooling is a fixed linear kernel
        chain.append((k, stride, pad, dilation))
    return cnn.Sequential(*[s[0] for s in specs]), chain


def test_linear_stack_equals_repeated_kernel_convolution():
    model, chain = _linear_chain()
    size = 31  # layer outputs 31, 31, 16, 8, 8: every field lies inside the input
    x = jax.random.normal(jax.random.key(0), (3, size, size, 1))
    erfs = ci.effective_receptive_field(model, x)
    assert list(erfs) == [f"layers.{i}" for i in range(5)]
    out_sizes = [31, 31, 16, 8, 8]
    for i, erf in enumerate(erfs.values()):
        unit = (out_sizes[i] // 2,) * 2
        want, region = _analytic_erf(chain[: i + 1], unit, size)
        assert erf.unit == unit and erf.num_inputs == 3
        assert erf.region == region  # the analytic field, clipped to nothing here
        # Products of up to 4 float32 kernel taps summed over <= 81 paths: ~1e-6 relative;
        # the atol covers taps whose sum is near zero.
        np.testing.assert_allclose(erf.map, want, rtol=1e-5, atol=1e-6)


def test_box_stack_moments_and_centre():
    # Four 3x3 box filters: each axis' marginal is the 4-fold convolution of the uniform
    # distribution on {-1, 0, 1} (variance 2/3), so sigma = sqrt(4 * 2/3) exactly and the
    # centre is the unit's position.
    r = nnx.Rngs(0)
    layers = []
    for _ in range(4):
        conv = cnn.Conv2d(1, 1, 3, padding=1, use_bias=False, rngs=r)
        conv.kernel[...] = jnp.full((3, 3, 1, 1), 1 / 9, jnp.float32)
        layers.append(conv)
    x = jnp.ones((1, 21, 21, 1))
    erf = ci.effective_receptive_field(cnn.Sequential(*layers), x, "layers.3")["layers.3"]
    np.testing.assert_allclose(erf.sigma, [np.sqrt(8 / 3)] * 2, rtol=1e-6)
    np.testing.assert_allclose(erf.centre, [10.0, 10.0], rtol=1e-6)
    assert erf.region == ((6, 14), (6, 14)) and erf.region_size == (9, 9)


def test_mass_fraction_by_hand():
    # One 3x3 conv whose kernel holds 0.96 at the centre and 0.005 elsewhere: 95% of the mass
    # is the centre alone (1 of 9 pixels); 97.2% needs the centre and 3 others (0.975).
    conv = cnn.Conv2d(1, 1, 3, padding=1, use_bias=False, rngs=nnx.Rngs(0))
    k = np.full((3, 3), 0.005)
    k[1, 1] = 0.96
    conv.kernel[...] = jnp.asarray(k.reshape(3, 3, 1, 1), jnp.float32)
    model = cnn.Sequential(conv)
    erf = ci.effective_receptive_field(model, jnp.ones((1, 7, 7, 1)))["layers.0"]
    assert erf.mass_fraction(0.95) == pytest.approx(1 / 9)
    assert erf.mass_fraction(0.972) == pytest.approx(4 / 9)
    assert erf.mass_fraction(1.0) == pytest.approx(1.0)
    # A corner unit: its field is clipped to the 2x2 pixels inside the input.
    corner = ci.effective_receptive_field(model, jnp.ones((1, 7, 7, 1)), unit=(0, 0))
    assert corner["layers.0"].region == ((0, 1), (0, 1))
    assert corner["layers.0"].mass_fraction(0.95) == pytest.approx(1 / 4)


def test_gaussian_r2_of_a_gaussian_and_of_a_box():
    yy, xx = np.mgrid[0:31, 0:31]
    g = np.exp(-0.5 * (((yy - 15) / 2.0) ** 2 + ((xx - 14) / 1.5) ** 2))
    p = g / g.sum()
    centre, sigma = effective_field._moments(p)
    # A Gaussian sampled on integers with sigma >= 1.5 has the moments of the continuous one
    # up to terms of order exp(-2 pi^2 sigma^2) ~ 1e-19; the grid cuts it 7.5 sigma out,
    # where the tails hold ~1e-13.
    np.testing.assert_allclose(centre, [15, 14], atol=1e-9)
    np.testing.assert_allclose(sigma, [2, 1.5], rtol=1e-9)
    region = ((0, 30), (0, 30))
    assert effective_field._gaussian_r2(p, centre, sigma, region) == pytest.approx(1, abs=1e-9)
    box = np.zeros((31, 31))
    box[10:21, 10:21] = 1 / 121
    c, s = effective_field._moments(box)
    # A flat square is no Gaussian: the fit misses its flat top and sharp edges (0.62).
    assert effective_field._gaussian_r2(box, c, s, ((5, 25), (5, 25))) < 0.8


def test_nonlinear_support_lies_inside_the_theoretical_field():
    model = cm.PatternCNN(
        (20, 20, 1), 3, widths=(4, 4), convs_per_stage=1, fc_widths=(), rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(1), (4, 20, 20, 1))
    erfs = ci.effective_receptive_field(model, x)
    fields = {r.name: r.receptive_field for r in ci.summary(model, (20, 20, 1), print_fn=None).rows}
    assert erfs  # every spatial layer
    for name, erf in erfs.items():
        (y0, y1), (x0, x1) = erf.region
        field = fields[name]
        assert erf.theoretical == field
        inside = np.zeros_like(erf.map, bool)
        inside[y0 : y1 + 1, x0 : x1 + 1] = True
        assert erf.map[~inside].max(initial=0) == 0 and erf.map[inside].max() > 0
        assert 0 < erf.mass_fraction(0.95) <= 1


def test_non_spatial_layer_sums_every_output():
    r = nnx.Rngs(0)
    dense = cnn.Dense(8, 1, use_bias=False, rngs=r)
    w = np.arange(1.0, 9.0) * np.array([1, -1] * 4)
    dense.kernel[...] = jnp.asarray(w.reshape(8, 1), jnp.float32)
    model = cnn.Sequential(cnn.Flatten(), dense)
    erf = ci.effective_receptive_field(model, jnp.ones((2, 2, 2, 2)), "layers.1")["layers.1"]
    assert erf.unit == () and erf.region == ((0, 1), (0, 1))
    np.testing.assert_allclose(erf.map, np.abs(w).reshape(2, 2, 2).sum(-1), rtol=1e-6)


def test_errors():
    model = cnn.Sequential(cnn.Conv2d(1, 1, 3, rngs=nnx.Rngs(0)))
    x = jnp.ones((1, 5, 5, 1))
    with pytest.raises(ValueError, match=r"layers names \['conv'\] that are no layer call"):
        ci.effective_receptive_field(model, x, "conv")
    with pytest.raises(ValueError, match=r"unit=\(3, 0\) is not a spatial index.*\(3, 3\)"):
        ci.effective_receptive_field(model, x, unit=(3, 0))
    with pytest.raises(ValueError, match=r"x has shape \(5, 5\) and dtype float32; pass"):
        ci.effective_receptive_field(model, jnp.ones((5, 5)))
    erf = ci.effective_receptive_field(model, x)["layers.0"]
    with pytest.raises(ValueError, match=r"mass=1.5 must be in \(0, 1\]"):
        erf.mass_fraction(1.5)
