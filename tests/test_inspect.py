"""convjax.inspect.summary / memory_estimate / xla_flops: hand-computed rows and totals,
XLA's cost analysis, published FLOP and parameter figures, and every error message."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.inspect as ci
import convjax.models as cm
import convjax.nn as cnn


def test_seeds_conv_example():
    # The CS231n notes: a 32x32x3 input, 10 filters of 5x5x3 -> 75 weights + 1 bias each; padding 2
    # keeps 32x32. Every output is a 75-term dot product: 32*32*10 * 75 multiply-adds.
    net = cnn.Conv(3, 10, (5, 5), padding=2, rngs=nnx.Rngs(0))
    s = ci.summary(net, (32, 32, 3), print_fn=None)
    (row,) = s.rows
    assert row.output_shape == (1, 32, 32, 10)
    assert row.params == 10 * (5 * 5 * 3 + 1) == 760
    assert row.macs == 32 * 32 * 10 * 75 == 768_000
    assert row.flops == 2 * 768_000 + 32 * 32 * 10  # plus one bias add per output
    assert row.activation_bytes == 32 * 32 * 10 * 4
    assert row.receptive_field == ci.ReceptiveField((5, 5), (1, 1), (-2, -2))


def _hand_chain():
    r = nnx.Rngs(0)
    return cnn.Sequential(
        cnn.Conv(1, 4, (3, 3), rngs=r),  # 10x10x1 -> 8x8x4
        cnn.ReLU(),
        cnn.MaxPool((2, 2)),  # -> 4x4x4
        cnn.Conv(4, 6, (3, 3), padding=1, groups=2, use_bias=False, rngs=r),  # -> 4x4x6
        cnn.Flatten(),  # -> 96
        cnn.Dense(96, 5, rngs=r),
    )


def test_hand_computed_chain_rows_and_totals():
    s = ci.summary(_hand_chain(), (10, 10, 1), batch_size=2, print_fn=None)
    got = [(r.name, r.kind, r.output_shape, r.params, r.macs, r.flops) for r in s.rows]
    assert got == [
        # 4 filters of 3x3x1 + bias; 2*8*8*4 = 512 outputs of 9 MACs, + 512 bias adds
        ("layers.0", "conv", (2, 8, 8, 4), 40, 512 * 9, 2 * 512 * 9 + 512),
        ("layers.1", "activation", (2, 8, 8, 4), 0, 0, 512),
        # 128 outputs, 3 comparisons each
        ("layers.2", "max_pool", (2, 4, 4, 4), 0, 0, 128 * 3),
        # groups=2: each output sees 3*3*(4/2) inputs; 192 outputs; no bias
        ("layers.3", "conv", (2, 4, 4, 6), 3 * 3 * 2 * 6, 192 * 18, 2 * 192 * 18),
        ("layers.4", "flatten", (2, 96), 0, 0, 0),
        ("layers.5", "dense", (2, 5), 96 * 5 + 5, 2 * 96 * 5, 2 * 2 * 96 * 5 + 10),
    ]
    assert [r.activation_bytes for r in s.rows] == [2048, 2048, 512, 768, 768, 40]
    assert s.total_params == 40 + 108 + 485
    assert s.total_macs == 4608 + 3456 + 960
    assert s.total_flops == 9728 + 512 + 384 + 6912 + 0 + 1930
    # padding 1 on a 4-wide map: 2 + 3 + 3 + 2 = 10 in-bounds (position, tap) pairs per dim
    assert s.rows[3].macs_in_bounds == 2 * 6 * 10 * 10 * 2
    fields = [r.receptive_field for r in s.rows]
    assert fields[0] == ci.ReceptiveField((3, 3), (1, 1), (0, 0))
    assert fields[2] == ci.ReceptiveField((4, 4), (2, 2), (0, 0))
    assert fields[3] == ci.ReceptiveField((8, 8), (2, 2), (-2, -2))
    assert fields[4] == ci.FLAT and fields[5] == ci.GLOBAL


def test_batch_size_scales_flops_and_bytes_not_params():
    one = ci.summary(_hand_chain(), (10, 10, 1), batch_size=1, print_fn=None)
    five = ci.summary(_hand_chain(), (10, 10, 1), batch_size=5, print_fn=None)
    assert five.total_flops == 5 * one.total_flops
    assert five.activation_bytes == 5 * one.activation_bytes
    assert five.total_params == one.total_params


def test_text_dict_json_and_print_fn():
    printed = []
    s = ci.summary(_hand_chain(), (10, 10, 1), batch_size=2, print_fn=printed.append)
    assert printed == [s.to_text()]
    text = s.to_text()
    for r in s.rows:
        assert r.name in text
    assert "Total params: 633" in text and "whole input" in text
    d = json.loads(s.to_json())
    assert [row["name"] for row in d["rows"]] == [r.name for r in s.rows]
    assert d["rows"][3]["receptive_field"] == {"size": [8, 8], "jump": [2, 2], "start": [-2, -2]}
    assert d["total_flops"] == s.total_flops and d["input_shape"] == [2, 10, 10, 1]


def test_transposed_conv_and_pool_flops():
    r = nnx.Rngs(0)
    net = cnn.Sequential(
        cnn.ConvTranspose(2, 3, (3, 3), stride=2, rngs=r),  # 5x5 -> 11x11
        cnn.AvgPool((2, 2)),  # -> 5x5
        cnn.LpPool(2.0, (2, 2), stride=1),  # -> 4x4
        cnn.GlobalAvgPool(2),
    )
    s = ci.summary(net, (5, 5, 2), print_fn=None)
    t, a, lp, g = s.rows
    # every input element scatters to 3*3*3 outputs; plus 11*11*3 bias adds
    assert t.output_shape == (1, 11, 11, 3) and t.flops == 2 * 25 * 2 * 27 + 363
    assert a.flops == 5 * 5 * 3 * 4  # 3 adds + 1 divide per output
    assert lp.flops == 4 * 4 * 3 * 2 * 4
    assert g.flops == 4 * 4 * 3
    # a transposed conv has a fractional jump: no analytic field after it (the empirical
    # probe covers it)
    assert t.receptive_field is None and g.receptive_field is None


def test_flops_equal_xla_cost_analysis_exactly_on_conv_pool_dense_chain():
    # XLA counts 2 per multiply-add, skips padding taps, 1 per bias add, w - 1 compares
    # per max-pool output, w adds + 1 divide per average.
    r = nnx.Rngs(0)
    net = cnn.Sequential(
        cnn.Conv(3, 8, (3, 3), padding=1, rngs=r),
        cnn.MaxPool((2, 2)),
        cnn.Conv(8, 8, (3, 3), stride=2, padding=((1, 2), (1, 2)), dilation=2, groups=4, rngs=r),
        cnn.AvgPool((2, 2)),
        cnn.Flatten(),
        cnn.Dense(2 * 2 * 8, 7, rngs=r),
    )
    s = ci.summary(net, (18, 18, 3), batch_size=2, print_fn=None)
    assert s.total_flops_in_bounds != s.total_flops  # the padded convs matter here
    assert s.total_flops_in_bounds == ci.xla_flops(net, (18, 18, 3), batch_size=2)


@pytest.mark.parametrize(
    "build",
    [
        lambda: cm.PatternCNN(rngs=nnx.Rngs(0)),
        lambda: cm.ResNet20(rngs=nnx.Rngs(0)),
        lambda: cm.LeNet5(rngs=nnx.Rngs(0)),
    ],
    ids=["pattern_cnn", "resnet20", "lenet5"],
)
def test_flops_within_2_percent_of_xla_on_zoo_models(build):
    # Differences left: XLA counts cf.relu as 2 ops per element, batch norm unfused
    # (subtract, 2 multiplies, add) and tanh/exp as transcendentals; measured 0.1-0.8%.
    model = nnx.eval_shape(build)
    model.eval()
    shape = model.input_shape
    ours = ci.summary(model, shape, print_fn=None).total_flops_in_bounds
    xla = ci.xla_flops(model, shape)
    assert abs(ours - xla) / xla < 0.02, (ours, xla)


def test_published_resnet18_and_vgg16_figures():
    # He et al. 2016 Table 1: ResNet-18 1.8 G multiply-adds at 224x224; Simonyan &
    # Zisserman's VGG-16: 15.5 G. Parameter counts: torchvision's 11,689,512 / 138,357,544.
    resnet = nnx.eval_shape(lambda: cm.ResNet18(rngs=nnx.Rngs(0)))
    s = ci.summary(resnet, (224, 224, 3), print_fn=None)
    assert abs(s.total_macs / 1.8e9 - 1) < 0.02 and s.total_params == 11_689_512
    vgg = nnx.eval_shape(lambda: cm.VGG16(rngs=nnx.Rngs(0)))
    s = ci.summary(vgg, (224, 224, 3), print_fn=None)
    assert abs(s.total_macs / 15.5e9 - 1) < 0.01 and s.total_params == 138_357_544
    # the first conv alone: 224*224*64 outputs of 3*3*3 MACs
    assert s.rows[0].macs == 224 * 224 * 64 * 27


def test_shared_module_counted_once():
    class Twice(nnx.Module):
        def __init__(self):
            self.conv = cnn.Conv(2, 2, (3, 3), padding=1, rngs=nnx.Rngs(0))

        def __call__(self, x):
            return self.conv(self.conv(x))

    s = ci.summary(Twice(), (6, 6, 2), print_fn=None)
    assert [r.name for r in s.rows] == ["conv", "conv#2"]
    assert [r.params for r in s.rows] == [38, 0] and s.total_params == 38
    assert s.rows[0].flops == s.rows[1].flops
    assert s.rows[1].receptive_field == ci.ReceptiveField((5, 5), (1, 1), (-2, -2))


def test_summary_does_not_touch_the_model():
    net = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0)), cnn.BatchNorm(2))
    before = jax.tree.map(np.asarray, nnx.state(net))
    ci.summary(net, (6, 6, 1), print_fn=None)  # training mode: BN would update its stats
    after = jax.tree.map(np.asarray, nnx.state(net))
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------------------- memory


def test_memory_estimate_hand_chain():
    est = ci.memory_estimate(_hand_chain(), (10, 10, 1), 2, "adam")
    params = (40 + 108 + 485) * 4
    # input 200 + conv 512 + pool 128 + conv 192 + dense 10 (ReLU in place, flatten a view)
    acts = (200 + 512 + 128 + 192 + 10) * 4
    assert est.param_count == 633 and est.activation_count == acts // 4
    assert (est.parameters, est.gradients, est.optimizer_state) == (params, params, 2 * params)
    assert est.activations == est.activation_gradients == acts
    assert est.total == 4 * params + 2 * acts
    assert ci.memory_estimate(_hand_chain(), (10, 10, 1), 2, 3).optimizer_state == 3 * params
    assert ci.memory_estimate(_hand_chain(), (10, 10, 1), 2, "sgd").optimizer_state == 0
    assert "total" in est.to_text() and json.dumps(est.to_dict())


def test_memory_estimate_vgg16_matches_layer_by_layer_count():
    # The classic VGG-16 walk-through lists, per image, the input and every CONV/POOL/FC
    # volume; summing that list gives the activation count (its total line says "24M",
    # but the entries add up to this).
    volumes = [224 * 224 * 3]
    size, width = 224, 64
    for convs in (2, 2, 3, 3, 3):
        volumes += [size * size * width] * convs
        size //= 2
        volumes.append(size * size * width)
        width = min(width * 2, 512)
    volumes += [4096, 4096, 1000]
    vgg = nnx.eval_shape(lambda: cm.VGG16(rngs=nnx.Rngs(0)))
    est = ci.memory_estimate(vgg, (224, 224, 3), 1, "momentum")
    assert est.activation_count == sum(volumes) == 15_237_608
    assert est.activations == 4 * sum(volumes)  # about 58 MiB forward, as much again backward
    assert est.parameters == 4 * 138_357_544 and est.optimizer_state == est.parameters
    # parameters x3 (values, gradients, momentum): the CS231n notes' "at least 3 or so"
    assert est.total == 3 * est.parameters + 2 * est.activations
    assert math.isclose(
        ci.memory_estimate(vgg, (224, 224, 3), 8, "momentum").activations, 8 * est.activations
    )


# ---------------------------------------------------------------------------- errors


def test_error_spatial_size_below_filter_names_layer():
    net = cnn.Sequential(
        cnn.Conv(1, 4, (5, 5), rngs=nnx.Rngs(0)),
        cnn.MaxPool((2, 2)),
        cnn.Conv(4, 8, (5, 5), rngs=nnx.Rngs(0)),
    )
    with pytest.raises(
        ValueError,
        match=r"layer 'layers\.2' \(Conv\) cannot take its input of shape \(1, 4, 4, 4\) "
        r"\(model input_shape=\(12, 12, 1\), batch_size=1\): kernel_size=5 .* larger than the "
        r"padded input",
    ):
        ci.summary(net, (12, 12, 1), print_fn=None)


def test_error_in_zoo_model_names_pool_path():
    vgg = nnx.eval_shape(lambda: cm.VGG16(rngs=nnx.Rngs(0)))
    with pytest.raises(
        ValueError,
        match=r"layer 'features\.layers\.30' \(MaxPool\) cannot take its input of shape "
        r"\(1, 1, 1, 512\) .*window=\(2, 2\)",
    ):
        ci.summary(vgg, (16, 16, 3), print_fn=None)


def test_error_wrong_channel_count():
    lenet = nnx.eval_shape(lambda: cm.LeNet5(rngs=nnx.Rngs(0)))
    first = ci.summary(lenet, lenet.input_shape, print_fn=None).rows[0].name
    with pytest.raises(
        ValueError,
        match=rf"layer '{first}' \(Conv2d\) cannot take its input of shape \(1, 32, 32, 3\).*"
        r"Channel mismatch: the layer expects in_features=1 channels on axis 3 but the input "
        r"has 3; fix input_shape or build the layer with in_features=3",
    ):
        ci.summary(lenet, (32, 32, 3), print_fn=None)


def test_error_inside_residual_block_names_nested_layer():
    class Block(nnx.Module):
        def __init__(self):
            r = nnx.Rngs(0)
            self.main = cnn.Conv(2, 2, (3, 3), padding=1, rngs=r)
            self.side = cnn.Sequential(cnn.MaxPool((2, 2)), cnn.Conv(2, 2, (5, 5), rngs=r))

        def __call__(self, x):
            return self.main(x) + self.side(x)

    class Net(nnx.Module):
        def __init__(self):
            self.stem = cnn.Conv(1, 2, (1, 1), rngs=nnx.Rngs(0))
            self.block = Block()

        def __call__(self, x):
            return self.block(self.stem(x))

    with pytest.raises(
        ValueError,
        match=r"layer 'block\.side\.layers\.1' \(Conv\) cannot take its input of shape "
        r"\(1, 3, 3, 2\)",
    ):
        ci.summary(Net(), (6, 6, 1), print_fn=None)


def test_error_batch_norm_channels():
    net = cnn.Sequential(cnn.Conv(1, 4, (3, 3), rngs=nnx.Rngs(0)), cnn.BatchNorm(5))
    with pytest.raises(
        ValueError,
        match=r"layer 'layers\.1' \(BatchNorm\) cannot take its input of shape \(1, 4, 4, 4\).*"
        r"expects num_features=5 channels on axis 3 but the input has 4",
    ):
        ci.summary(net, (6, 6, 1), print_fn=None)


def test_error_dense_features():
    net = cnn.Sequential(cnn.Flatten(), cnn.Dense(10, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(
        ValueError,
        match=r"layer 'layers\.1' \(Dense\) cannot take its input of shape \(1, 12\).*in_features",
    ):
        ci.summary(net, (3, 4), print_fn=None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_shape": 28}, r"input_shape=28 must be a tuple of ints without the batch axis"),
        ({"input_shape": (28, 0, 1)}, r"input_shape=\(28, 0, 1\) must contain positive ints"),
        ({"input_shape": ()}, r"input_shape=\(\) is empty"),
        ({"input_shape": (6, 6, 1), "batch_size": 0}, r"batch_size=0 must be a positive int"),
    ],
)
def test_error_bad_arguments(kwargs, message):
    net = cnn.Sequential(cnn.Conv(1, 1, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=message):
        ci.summary(net, print_fn=None, **kwargs)


def test_error_memory_optimizer():
    net = cnn.Sequential(cnn.Conv(1, 1, (3, 3), rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"optimizer='lion' is not known; use one of 'sgd'"):
        ci.memory_estimate(net, (6, 6, 1), 1, "lion")
    with pytest.raises(ValueError, match=r"optimizer=-1 slots must be >= 0"):
        ci.memory_estimate(net, (6, 6, 1), 1, -1)
    with pytest.raises(ValueError, match=r"optimizer=True must be a name or an int"):
        ci.memory_estimate(net, (6, 6, 1), 1, True)


def test_unbatched_model_and_other_dtype():
    net = cnn.Sequential(cnn.Conv(1, 2, (3, 3), rngs=nnx.Rngs(0)))
    s = ci.summary(net, (6, 6, 1), batch_size=None, dtype=jnp.float32, print_fn=None)
    assert s.rows[0].output_shape == (4, 4, 2) and s.input_shape == (6, 6, 1)


def test_channels_first_rows_match_channels_last():
    def chain(channels_last):
        r = nnx.Rngs(0)
        return cnn.Sequential(
            cnn.Conv(3, 4, (3, 5), stride=(1, 2), padding=1, rngs=r, channels_last=channels_last),
            cnn.MaxPool((2, 2), channels_last=channels_last),
            cnn.BatchNorm(4, channels_last=channels_last),
        )

    last = ci.summary(chain(True), (12, 14, 3), print_fn=None)
    first = ci.summary(chain(False), (3, 12, 14), print_fn=None)
    assert [r.flops for r in last.rows] == [r.flops for r in first.rows]
    assert [r.macs_in_bounds for r in last.rows] == [r.macs_in_bounds for r in first.rows]
    assert [r.receptive_field for r in last.rows] == [r.receptive_field for r in first.rows]
    assert first.rows[1].receptive_field == ci.ReceptiveField((4, 7), (2, 4), (-1, -1))
