"""Receptive fields: analytic recurrences vs Distill's closed forms and published values,
analytic == empirical (gradient probe) on chains, empirical on residual and dilated nets."""

import math
import random

import numpy as np
import pytest
from flax import nnx

import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn


def _closed_form(layers):
    """Distill 2019 eqs. (2) and (6): r = 1 + sum (F_l - 1) prod_{i<l} S_i, P = sum P_l prod S_i.

    Written independently of the recurrences in convjax.inspect (one dimension, dilation
    folded into the effective window).
    """
    r, p = 1, 0
    for index, (f, _s, pad, d) in enumerate(layers):
        stride_before = math.prod(layer[1] for layer in layers[:index])
        r += (d * (f - 1)) * stride_before
        p += pad * stride_before
    return r, math.prod(layer[1] for layer in layers), p


def test_chain_matches_distill_closed_form_on_random_chains():
    rng = random.Random(0)
    for _ in range(200):
        depth = rng.randint(1, 8)
        layers = [
            (rng.randint(1, 7), rng.randint(1, 3), rng.randint(0, 3), rng.randint(1, 3))
            for _ in range(depth)
        ]
        field = ci.receptive_field_chain([tuple(layer) for layer in layers], 1)[-1]
        r, j, p = _closed_form(layers)
        assert field.size == (r,) and field.jump == (j,) and field.effective_padding == (p,)


def test_seeds_pooling_example_and_region():
    # The CS231n notes: 5x5 filters, pooling stride 2: layer-1 units see 5x5, layer-2 units about
    # 10x10 (exactly 5 + 1 + 4 * 2 = 14 with a 2x2 pool in between).
    fields = ci.receptive_field_chain([(5, 1, 0), (2, 2, 0), (5, 1, 0)])
    assert [f.size for f in fields] == [(5, 5), (6, 6), (14, 14)]
    assert fields[-1].jump == (2, 2)
    assert fields[-1].region((3, 1)) == ((6, 19), (2, 15))


def test_chain_rejects_malformed_layer():
    with pytest.raises(ValueError, match=r"layers\[1\]=\(3, 1\) must be \(kernel_size"):
        ci.receptive_field_chain([(3, 1, 1), (3, 1)])


# Values published by Araujo, Norris & Sim (Distill 2019; google-research/receptive_field
# README): receptive field, effective stride, effective padding. Their nets are TF-slim's.
DISTILL = {"alexnet_v2": (195, 32, 64), "vgg_16": (212, 32, 90), "resnet_v1_50": (483, 32, 239)}


def _pool5(summary):
    rows = [r for r in summary.rows if r.kind == "max_pool"]
    return rows[-1].receptive_field


def test_alexnet_pool5_matches_distill():
    model = nnx.eval_shape(lambda: cm.AlexNet(rngs=nnx.Rngs(0)))
    rf = _pool5(ci.summary(model, (227, 227, 3), print_fn=None))
    assert (rf.size[0], rf.jump[0], rf.effective_padding[0]) == DISTILL["alexnet_v2"]


def test_vgg16_pool5_matches_distill():
    model = nnx.eval_shape(lambda: cm.VGG16(rngs=nnx.Rngs(0)))
    rf = _pool5(ci.summary(model, (224, 224, 3), print_fn=None))
    assert (rf.size[0], rf.jump[0], rf.effective_padding[0]) == DISTILL["vgg_16"]


def _resnet50_v1_chain():
    """TF-slim resnet_v1_50 main path (Distill's model): the stride sits on the 3x3 of the
    LAST unit of blocks 1-3; strided convs pad (k-1)//2 in front (conv2d_same); the 3x3/2
    max pool is SAME on an even map, so it pads 0 in front."""
    layers = [(7, 2, 3), (3, 2, 0)]
    for units, last_stride in ((3, 2), (4, 2), (6, 2), (3, 1)):
        for u in range(units):
            stride = last_stride if u == units - 1 else 1
            layers += [(1, 1, 0), (3, stride, 1), (1, 1, 0)]
    return layers


def test_resnet50_v1_chain_matches_distill():
    rf = ci.receptive_field_chain(_resnet50_v1_chain())[-1]
    assert (rf.size[0], rf.jump[0], rf.effective_padding[0]) == DISTILL["resnet_v1_50"]


def _resnet50_v15_expected():
    # The zoo's ResNet-50 is torchvision's "v1.5": the stride is on the 3x3 of the FIRST
    # block of stages 2-4 and every conv pads symmetrically, so the field is smaller:
    # stem 7/2 p3, pool 3/2 p1, then [1, 3/s p1, 1] per block.
    layers = [(7, 2, 3), (3, 2, 1)]
    for i, blocks in enumerate((3, 4, 6, 3)):
        for b in range(blocks):
            layers += [(1, 1, 0), (3, 2 if (i > 0 and b == 0) else 1, 1), (1, 1, 0)]
    return ci.receptive_field_chain(layers)[-1]


def test_zoo_resnet50_analytic_through_residual_blocks():
    expected = _resnet50_v15_expected()
    assert (expected.size[0], expected.jump[0], expected.start[0]) == (427, 32, -213)
    model = nnx.eval_shape(lambda: cm.ResNet50(rngs=nnx.Rngs(0)))
    s = ci.summary(model, (224, 224, 3), print_fn=None)
    last = [r for r in s.rows if r.name.startswith("stages")][-1]
    assert last.receptive_field == expected


def _empirical_matches_analytic(model, input_shape, layer=None):
    s = ci.summary(model, input_shape, print_fn=None)
    emp = ci.empirical_receptive_field(model, input_shape, layer=layer)
    row = s.rows[-1] if layer is None else next(r for r in s.rows if r.name == layer)
    rf = row.receptive_field
    sizes = input_shape[:-1]
    region = rf.region(emp.unit)
    inside = all(lo >= 0 and hi <= n - 1 for (lo, hi), n in zip(region, sizes))
    if inside:
        assert emp.region == region, (emp.region, region, rf)
    else:
        # Part of the field lies in the padding. With a jump > 1 or dilation the taps that
        # land on real pixels can start later than the clipped edge, so only containment
        # holds there.
        for (elo, ehi), (lo, hi) in zip(emp.region, region):
            assert lo <= elo <= ehi <= hi, (emp.region, region, rf)
    return emp, rf, inside


def _random_chain(rng, n_spatial):
    layers, c = [], 2
    for _ in range(rng.randint(2, 5)):
        choice = rng.choice(["conv", "conv", "max", "avg", "lp"])
        k = rng.randint(1, 3)
        s = rng.randint(1, 2)
        if choice == "conv":
            d = rng.randint(1, 2)
            out = rng.choice([1, 2, 4])
            groups = 2 if (c % 2 == 0 and out % 2 == 0 and rng.random() < 0.3) else 1
            pad = rng.choice([0, 1, "SAME", ((1, 0),) * n_spatial])
            layers.append(
                cnn.Conv(
                    c,
                    out,
                    (k,) * n_spatial,
                    stride=s,
                    padding=pad,
                    dilation=d,
                    groups=groups,
                    rngs=nnx.Rngs(0),
                )
            )
            layers.append(cnn.ReLU())
            c = out
        else:
            window = (max(k, 2),) * n_spatial
            pad = rng.randint(0, window[0] // 2)
            if choice == "max":
                layers.append(cnn.MaxPool(window, stride=s, padding=pad))
            elif choice == "avg":
                layers.append(cnn.AvgPool(window, stride=s, padding=pad))
            else:
                layers.append(cnn.LpPool(2.0, window, stride=s))
    return cnn.Sequential(*layers), c


@pytest.mark.parametrize("n_spatial", [1, 2])
def test_analytic_equals_empirical_on_random_chains(n_spatial):
    rng = random.Random(n_spatial)
    size = 40 if n_spatial == 1 else 24
    exact = 0
    for _ in range(5):
        model, _ = nnx.eval_shape(lambda: _random_chain(rng, n_spatial))
        exact += _empirical_matches_analytic(model, (size,) * n_spatial + (2,))[2]
    assert exact >= 3  # most centre units lie inside the input: equality, not containment


def test_analytic_equals_empirical_on_every_layer_of_a_chain():
    r = nnx.Rngs(0)
    model = cnn.Sequential(
        cnn.Conv(1, 2, (3, 3), padding=1, rngs=r),
        cnn.BatchNorm(2),
        cnn.ReLU(),
        cnn.MaxPool((3, 3), stride=2, padding=1),
        cnn.Conv(2, 2, (3, 3), dilation=2, padding=2, rngs=r),
        cnn.ReLU(),
        cnn.AvgPool((2, 2)),
        cnn.Conv(2, 3, (3, 3), stride=2, rngs=r),
    )
    for i in (1, 3, 4, 6, 7):  # after batch norm, max pool, dilated conv, avg pool, last conv
        _empirical_matches_analytic(model, (40, 40, 1), layer=f"layers.{i}")


def test_dilated_field_has_holes_and_bounding_box_matches():
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Conv(1, 1, (3, 3), dilation=4, rngs=r))
    emp, rf, inside = _empirical_matches_analytic(model, (15, 15, 1))
    assert inside and rf.size == (9, 9)
    assert emp.mask.sum() == 9  # only the 3x3 taps, 4 pixels apart
    assert not any(emp.clipped)


def test_channels_first_empirical():
    r = nnx.Rngs(0)
    model = cnn.Sequential(
        cnn.Conv(2, 2, (5, 3), stride=(2, 1), channels_last=False, rngs=r),
        cnn.MaxPool((2, 2), channels_last=False),
    )
    emp = ci.empirical_receptive_field(model, (2, 20, 20), channels_last=False)
    assert emp.size == (7, 4)


def test_max_pool_ties_do_not_hide_pixels():
    # With max pooling the gradient reaches one element per window; the probe swaps in sum
    # pooling, so the whole 2x2 window below each 1x1 conv output is found.
    model = cnn.Sequential(cnn.MaxPool((2, 2)), cnn.MaxPool((2, 2)))
    emp = ci.empirical_receptive_field(model, (8, 8, 1), unit=(1, 1))
    assert emp.region == ((4, 7), (4, 7)) and int(emp.mask.sum()) == 16


def test_probe_leaves_model_untouched():
    r = nnx.Rngs(0)
    model = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=r), cnn.BatchNorm(2))
    before = nnx.state(model)
    ci.empirical_receptive_field(model, (8, 8, 1))
    after = nnx.state(model)
    for a, b in zip(__import__("jax").tree.leaves(before), __import__("jax").tree.leaves(after)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_empirical_small_bottleneck_resnet():
    # One bottleneck block per stage (stride on the 3x3 of stages 2-4), 1..32 channels:
    # stem 7 -> pool 11 -> 19 -> 27 (j 8) -> 43 (j 16) -> 75 (j 32), start -37; at 128x128
    # the centre unit (2, 2) of the 4x4 map sees pixels 27..101, all real.
    model = nnx.eval_shape(
        lambda: cm.ResNet(
            (128, 128, 3),
            10,
            rngs=nnx.Rngs(0),
            stage_sizes=(1, 1, 1, 1),
            block="bottleneck",
            base_width=1,
        )
    )
    s = ci.summary(model, (128, 128, 3), print_fn=None)
    last = [r.name for r in s.rows if r.name.startswith("stages")][-1]
    emp, rf, inside = _empirical_matches_analytic(model, (128, 128, 3), layer=last)
    assert inside and rf == ci.ReceptiveField((75, 75), (32, 32), (-37, -37))
    assert emp.region == ((27, 101), (27, 101))


@pytest.mark.slow
def test_empirical_resnet50_matches_analytic_427():
    # Narrow (base_width=1: 4..32 channels) because the field does not depend on width;
    # 448x448 so that the centre unit (7, 7) of the 14x14 map sees only real pixels.
    model = nnx.eval_shape(lambda: cm.ResNet50((448, 448, 3), 10, rngs=nnx.Rngs(0), base_width=1))
    s = ci.summary(model, (448, 448, 3), print_fn=None)
    last = [r.name for r in s.rows if r.name.startswith("stages")][-1]
    emp, rf, inside = _empirical_matches_analytic(model, (448, 448, 3), layer=last)
    assert inside and emp.size == (427, 427) and not any(emp.clipped)
    assert rf == _resnet50_v15_expected()


def test_empirical_cifar_resnet_option_a_shortcut():
    # Option A shortcuts are slicing and zero padding (no recorded layer); the empirical
    # probe sees them, the analytic union along the main path must agree.
    model = nnx.eval_shape(lambda: cm.ResNet20((64, 64, 3), 10, rngs=nnx.Rngs(0), base_width=2))
    s = ci.summary(model, (64, 64, 3), print_fn=None)
    last = [r.name for r in s.rows if r.name.startswith("stages")][-1]
    emp, rf, inside = _empirical_matches_analytic(model, (64, 64, 3), layer=last)
    # stem 3 + stage1 6 convs * 2 + stage2 (2 + 5 * 4) + stage3 (4 + 5 * 8) = 81
    assert rf.size == (81, 81) and rf.jump == (4, 4)


def test_empirical_dilated_context_net_output():
    # Yu & Koltun's context module: 1 + 2 * (1 + 1 + 2 + 4 + 8 + 16 + 1) = 67, plus the 3x3
    # stem: 69.
    model = nnx.eval_shape(
        lambda: cm.DilatedContextNet((80, 80, 1), 3, rngs=nnx.Rngs(0), width=2, dense_output=True)
    )
    emp, rf, inside = _empirical_matches_analytic(model, (80, 80, 1))
    assert inside and rf.size == (69, 69) and emp.size == (69, 69)


def test_classifier_output_sees_whole_input():
    model = nnx.eval_shape(lambda: cm.LeNet5(rngs=nnx.Rngs(0)))
    shape = model.input_shape
    s = ci.summary(model, shape, print_fn=None)
    assert s.rows[-1].receptive_field == ci.GLOBAL
    emp = ci.empirical_receptive_field(model, shape)
    assert emp.unit == () and bool(emp.mask.all())


def test_empirical_errors():
    model = cnn.Sequential(cnn.Conv(1, 1, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"layer='nope' is not a layer of this model; names"):
        ci.empirical_receptive_field(model, (8, 8, 1), layer="nope")
    with pytest.raises(ValueError, match=r"layer=5 is out of range: the model makes 1 layer"):
        ci.empirical_receptive_field(model, (8, 8, 1), layer=5)
    with pytest.raises(ValueError, match=r"unit=\(6, 0\) is not a spatial index .* \(6, 6\)"):
        ci.empirical_receptive_field(model, (8, 8, 1), unit=(6, 0))


def test_abstract_model_probe_equals_concrete():
    # An nnx.eval_shape model (dropout RNG state included) gives the same field as a
    # concrete one: the probe sets every value itself.
    build = lambda: cm.AlexNet(
        (99, 99, 3), 10, rngs=nnx.Rngs(0), widths=(2, 2, 2, 2, 2), fc_width=4
    )  # noqa: E731
    concrete = ci.empirical_receptive_field(build(), (99, 99, 3), layer="features.layers.11")
    abstract = ci.empirical_receptive_field(
        nnx.eval_shape(build), (99, 99, 3), layer="features.layers.11"
    )
    assert concrete.region == abstract.region
    np.testing.assert_array_equal(concrete.mask, abstract.mask)


def test_adaptive_and_global_pools():
    r = nnx.Rngs(0)
    even = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=r), cnn.AdaptiveMaxPool((2, 2)))
    # 8x8 conv map -> 2x2: bins of 4, like a 4x4 pool of stride 4: r = 3 + (4 - 1) * 1 = 6
    emp, rf, inside = _empirical_matches_analytic(even, (10, 10, 1))
    assert inside and rf == ci.ReceptiveField((6, 6), (4, 4), (0, 0))
    uneven = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=r), cnn.AdaptiveAvgPool((3, 3)))
    assert ci.summary(uneven, (9, 9, 1), print_fn=None).rows[-1].receptive_field is None
    pooled = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=r), cnn.GlobalMaxPool(2))
    assert ci.summary(pooled, (9, 9, 1), print_fn=None).rows[-1].receptive_field == ci.GLOBAL
    # global max pooling routes the gradient to one pixel; the probe's average sees all
    assert bool(ci.empirical_receptive_field(pooled, (9, 9, 1)).mask.all())


def test_deep_chain_edge_pixels_survive_in_float64():
    # 100 3-tap convs: the outermost pixel's gradient is 3**-100 ~ 2e-48, below float32's
    # smallest subnormal (float32 finds only 12..198 here); the float64 probe finds all 201.
    model = nnx.eval_shape(
        lambda: cnn.Sequential(*[cnn.Conv(1, 1, (3,), rngs=nnx.Rngs(0)) for _ in range(100)])
    )
    emp, rf, inside = _empirical_matches_analytic(model, (211, 1))
    assert inside and rf.size == (201,) and emp.region == ((5, 205),)


def test_tanh_chain():
    r = nnx.Rngs(0)
    layers = []
    for _ in range(6):
        layers += [cnn.Conv(2, 2, (3, 3), rngs=r), cnn.Tanh()]
    emp, rf, inside = _empirical_matches_analytic(cnn.Sequential(*layers), (16, 16, 2))
    assert inside and rf.size == (13, 13) and emp.region == ((2, 14), (2, 14))
