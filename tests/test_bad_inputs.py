"""Every kind of bad input gets a ValueError from convjax's own code that names the argument
and shows its value (and says the fix), raised before XLA sees anything.

One row per case: the call and a regular expression its message must match. The kinds are
those found when bad inputs were tried across the public API: silent shape helpers, errors
that came from inside JAX, Flax or optax, messages that named the wrong thing, strings and
bools where arrays or numbers go, wrong ranks and layouts, and module options checked only on
the first call.
"""

import gzip
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
from convjax import data as cdata
from convjax import inspect as ci
from convjax import models as cm
from convjax import nn as cnn
from convjax.data.idx_files import check_fashion_mnist_files
from convjax.testing import gradcheck

X = jnp.ones((1, 8, 8, 3))
K = jnp.ones((3, 3, 3, 4))
KEY = jax.random.key(0)


def rngs():
    return nnx.Rngs(0)


def _dataset(**overrides):
    fields = dict(
        train_images=np.zeros((4, 2, 2, 1), np.uint8),
        train_labels=np.array([0, 1, 2, 3], np.int32),
        test_images=np.zeros((2, 2, 2, 1), np.uint8),
        test_labels=np.array([0, 1], np.int32),
        num_classes=4,
        class_names=("a", "b", "c", "d"),
        name="toy",
    )
    fields.update(overrides)
    return cdata.ImageDataset(**fields)


CASES = {
    # ---- shape helpers that used to answer silently
    "conv_output_size float size": (
        lambda: cf.conv_output_size(7.5, 3),
        r"in_size=7.5 must be an int \(float given\)",
    ),
    "conv_output_size float stride": (
        lambda: cf.conv_output_size(7, 3, stride=2.0),
        r"stride=2.0 must be an int",
    ),
    "conv_output_size negative padding": (
        lambda: cf.conv_output_size(7, 3, padding=-1),
        r"padding=-1 must be >= 0",
    ),
    "conv_output_shape ranks differ": (
        lambda: cf.conv_output_shape((7, 7), (3,)),
        r"kernel_spatial=\(3,\) has 1 entries but in_spatial=\(7, 7\) has 2",
    ),
    "conv_transpose_output_size stride 0": (
        lambda: cf.conv_transpose_output_size(4, 3, stride=0),
        r"stride=0 must be >= 1",
    ),
    "conv_transpose_output_size kernel 0": (
        lambda: cf.conv_transpose_output_size(4, 0),
        r"kernel_size=0 must be >= 1",
    ),
    "conv_init num_spatial 4": (
        lambda: cf.conv_init(KEY, 3, 2, 4, num_spatial=4),
        r"num_spatial=4 must be 1, 2 or 3",
    ),
    "data labels outside num_classes": (
        lambda: _dataset(train_labels=np.array([0, 1, 2, 4], np.int32)),
        r"train_labels contains 4, outside \[0, 4\) for num_classes=4",
    ),
    # ---- errors that came from inside JAX, Flax or optax, or bare Python errors
    "conv precision": (
        lambda: cf.conv(X, K, precision="abc"),
        r"precision='abc' is not a precision conv understands; use None",
    ),
    "conv preferred_element_type not a dtype": (
        lambda: cf.conv(X, K, preferred_element_type="abc"),
        r"preferred_element_type='abc' is not a dtype",
    ),
    "conv preferred_element_type bool": (
        lambda: cf.conv(X, K, preferred_element_type="bool"),
        r"preferred_element_type='bool' \(dtype bool\) is not a numeric dtype",
    ),
    "dense precision": (
        lambda: cf.dense(jnp.ones((2, 3)), jnp.ones((3, 4)), precision=3),
        r"precision=3 is not a precision dense understands",
    ),
    "conv string array": (
        lambda: cf.conv("abc", K),
        r"x='abc' must be an array of numbers for conv",
    ),
    "conv string kernel": (
        lambda: cf.conv(X, ["a", "b"]),
        r"kernel=\['a', 'b'\] is not an array of numbers \(list\)",
    ),
    "conv string bias": (
        lambda: cf.conv(X, K, "bias"),
        r"bias='bias' must be an array of numbers for conv",
    ),
    "conv_init int key": (
        lambda: cf.conv_init(0, 3, 2, 4),
        r"key=0 is not one jax.random key; conv_init needs e.g. jax.random.key\(0\)",
    ),
    "conv_init int dtype": (
        lambda: cf.conv_init(KEY, 3, 2, 4, dtype=jnp.int32),
        r"dtype=.*int32.* must be a floating-point dtype for conv_init",
    ),
    "dense_init int dtype": (
        lambda: cf.dense_init(KEY, 3, 4, dtype="int8"),
        r"dtype='int8' must be a floating-point dtype for dense_init",
    ),
    "Conv int param_dtype": (
        lambda: cnn.Conv(3, 4, (3, 3), param_dtype=jnp.int32, rngs=rngs()),
        r"Conv: param_dtype=.*int32.* must be a floating-point dtype",
    ),
    "Dense int param_dtype": (
        lambda: cnn.Dense(3, 4, param_dtype="int32", rngs=rngs()),
        r"Dense: param_dtype='int32' .* must be a floating-point dtype",
    ),
    "leaky_relu string slope": (
        lambda: cf.leaky_relu(X, "0.1"),
        r"negative_slope='0.1' must be a real number for leaky_relu",
    ),
    "elu string alpha": (
        lambda: cf.elu(X, alpha="one"),
        r"alpha='one' must be a real number for elu",
    ),
    "LeakyReLU string slope": (
        lambda: cnn.LeakyReLU("0.1"),
        r"negative_slope='0.1' must be a real number for LeakyReLU",
    ),
    "ELU bool alpha": (lambda: cnn.ELU(True), r"alpha=True must be a real number for ELU"),
    "transpose_kernel string groups": (
        lambda: cf.transpose_kernel(K, groups="two"),
        r"groups='two' must be an int >= 1",
    ),
    "label_smoothing None": (
        lambda: cf.softmax_cross_entropy(
            jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing=None
        ),
        r"label_smoothing=None must be a real number for softmax_cross_entropy",
    ),
    "label_smoothing string": (
        lambda: cf.softmax_cross_entropy(
            jnp.zeros((2, 3)), jnp.array([0, 1]), label_smoothing="abc"
        ),
        r"label_smoothing='abc' must be a real number",
    ),
    "margin None": (
        lambda: cf.multiclass_hinge_loss(jnp.zeros((2, 3)), jnp.array([0, 1]), margin=None),
        r"margin=None must be a real number for multiclass_hinge_loss",
    ),
    "gradcheck int key": (
        lambda: gradcheck(jnp.sin, jnp.ones(3), key=0),
        r"key=0 must be a jax.random key, e.g. key=jax.random.key\(0\)",
    ),
    "gradcheck batch_size 0": (
        lambda: gradcheck(jnp.sin, jnp.ones(3), batch_size=0),
        r"batch_size=0 must be an int >= 1",
    ),
    "gradcheck not callable": (
        lambda: gradcheck("sin", jnp.ones(3)),
        r"fn='sin' is not callable",
    ),
    "summary None": (
        lambda: ci.summary(None, (28, 28, 1), print_fn=None),
        r"model=None \(NoneType\) is not a flax.nnx.Module",
    ),
    # ---- messages that named the wrong thing
    "LeNet5 too small": (
        lambda: cm.LeNet5((28, 28, 1), 10, widths=(2, 2, 2), fc_width=4, rngs=rngs()),
        r"LeNet5: input_shape=\(28, 28, 1\) is too small .* needs at least \(32, 32, 1\)",
    ),
    "VGG too small": (
        lambda: cm.VGG11((16, 16, 3), 10, base_width=2, fc_width=4, rngs=rngs()),
        r"VGG: input_shape=\(16, 16, 3\) is too small .* at least \(32, 32, 3\)",
    ),
    "AllCNNC too small": (
        lambda: cm.AllCNNC((4, 4, 3), 10, widths=(2, 2), rngs=rngs()),
        r"AllCNNC: input_shape=\(4, 4, 3\) is too small .* at least \(9, 9, 3\)",
    ),
    "PatternCNN zero width": (
        lambda: cm.PatternCNN(widths=(0, 64), rngs=rngs()),
        r"PatternCNN: widths=\(0, 64\) contains 0; every entry must be an int >= 1",
    ),
    "PatternCNN negative fc width": (
        lambda: cm.PatternCNN(fc_widths=(-1,), rngs=rngs()),
        r"PatternCNN: fc_widths=\(-1,\) contains -1",
    ),
    "PatternCNN dropout rate": (
        lambda: cm.PatternCNN(dropout=1.5, rngs=rngs()),
        r"PatternCNN: dropout=1.5 must be a number in \[0, 1\)",
    ),
    "LeNet5 two widths": (
        lambda: cm.LeNet5(widths=(6, 16), rngs=rngs()),
        r"LeNet5: widths=\(6, 16\) has 2 entries but this model needs 3",
    ),
    "data dir is a file": (
        lambda: cdata.load_dataset("fashion_mnist", data_dir=__file__),
        r"data_dir='.*test_bad_inputs.py' is a file, not a folder",
    ),
    "source dir is a file": (
        lambda: check_fashion_mnist_files(__file__),
        r"source_dir='.*test_bad_inputs.py' is a file, not a folder",
    ),
    # ---- strings and bools where arrays or numbers go
    "conv bool input": (
        lambda: cf.conv(X > 0, K),
        r"x has dtype bool \(shape \(1, 8, 8, 3\)\), but conv needs numbers",
    ),
    "max_pool bool input": (
        lambda: cf.max_pool(X > 0, (2, 2)),
        r"x has dtype bool .* but max_pool needs numbers",
    ),
    "dense string input": (
        lambda: cf.dense("x", jnp.ones((3, 4))),
        r"x='x' must be an array of numbers for dense",
    ),
    "softmax string input": (lambda: cf.softmax("abc"), r"x='abc' must be an array"),
    "conv bool stride": (
        lambda: cf.conv(X, K, stride=True),
        r"stride=True must be an int or a sequence of 2 ints, not a bool",
    ),
    "dropout bool rate": (
        lambda: cf.dropout(X, True, KEY),
        r"dropout: rate=True must be a float in \[0, 1\)",
    ),
    "batch_norm bool momentum": (
        lambda: cf.batch_norm(
            jnp.ones((2, 3)), None, None, jnp.zeros(3), jnp.ones(3), training=True, momentum=True
        ),
        r"momentum=True must be a real number for batch_norm",
    ),
    "Conv string channels_last": (
        lambda: cnn.Conv(3, 4, (3, 3), channels_last="False", rngs=rngs()),
        r"Conv: channels_last='False' must be True or False",
    ),
    # ---- rank, layout, zero-size axes
    "conv rank": (
        lambda: cf.conv(jnp.ones((5, 5)), K),
        r"x.shape=\(5, 5\) has rank 2, but conv with the 2-D kernel .* x has no channel axis",
    ),
    "conv channels-first without the flag": (
        lambda: cf.conv(jnp.ones((1, 3, 8, 8)), K),
        r"x.shape=\(1, 3, 8, 8\) read as \(\.\.\., H, W, C\) has 8 input channels.*"
        r"pass channels_last=False",
    ),
    "conv_transpose channels-last read as channels-first": (
        lambda: cf.conv_transpose(jnp.ones((1, 8, 8, 3)), K, channels_last=False),
        r"read as \(\.\.\., C, H, W\) has 8 input channels.*pass channels_last=True",
    ),
    "summary without a channel axis (zoo model)": (
        lambda: ci.summary(cm.LeNet5(rngs=rngs()), (32, 32), print_fn=None),
        r"input_shape=\(32, 32\) has 2 axes, but LeNet5 takes one example of shape "
        r"\(32, 32, 1\) .* no channel axis: pass \(32, 32, 1\)",
    ),
    "summary without a channel axis (any model)": (
        lambda: ci.summary(
            cnn.Sequential(cnn.Conv(1, 4, (3, 3), rngs=rngs())), (32, 32), print_fn=None
        ),
        r"input_shape=\(32, 32\) has no channel axis: .* pass e.g. \(32, 32, 1\)",
    ),
    "conv zero-size spatial axis": (
        lambda: cf.conv(jnp.ones((1, 0, 5, 3)), K),
        r"x.shape=\(1, 0, 5, 3\) has a zero-size spatial axis \(axis 1",
    ),
    "avg_pool zero-size spatial axis": (
        lambda: cf.avg_pool(jnp.ones((1, 4, 0, 3)), (2, 2)),
        r"x has shape \(1, 4, 0, 3\) with a zero-size spatial axis \(axis 2",
    ),
    # ---- module options checked when the module is built
    "Conv padding_mode": (
        lambda: cnn.Conv(3, 4, (3, 3), padding_mode="mirror", rngs=rngs()),
        r"Conv: padding_mode='mirror' is not supported; use one of 'zeros'",
    ),
    "Conv padding name": (
        lambda: cnn.Conv(3, 4, (3, 3), padding="HALF", rngs=rngs()),
        r"Conv: padding='HALF' is not a known padding name",
    ),
    "Conv stride 0": (
        lambda: cnn.Conv(3, 4, (3, 3), stride=0, rngs=rngs()),
        r"Conv: stride=0 must be >= 1",
    ),
    "Conv precision": (
        lambda: cnn.Conv(3, 4, (3, 3), precision="best", rngs=rngs()),
        r"Conv: precision='best' is not a precision Conv understands",
    ),
    "ConvTranspose padding name": (
        lambda: cnn.ConvTranspose(3, 4, (3, 3), padding="FULL", rngs=rngs()),
        r"ConvTranspose: padding='FULL' is not a padding name a transposed convolution knows",
    ),
    "ConvTranspose padding_mode": (
        lambda: cnn.ConvTranspose(3, 4, (3, 3), padding_mode="wrap", rngs=rngs()),
        r"ConvTranspose: padding_mode='wrap' is not supported",
    ),
    "MaxPool padding_mode": (
        lambda: cnn.MaxPool((2, 2), padding_mode="edge"),
        r"MaxPool: padding_mode='edge' is not supported",
    ),
    "AvgPool negative padding": (
        lambda: cnn.AvgPool((2, 2), padding=-1),
        r"AvgPool: padding=-1 must be >= 0",
    ),
    "AdaptiveAvgPool zero size": (
        lambda: cnn.AdaptiveAvgPool((0, 2)),
        r"AdaptiveAvgPool: output_size=\(0, 2\) contains 0",
    ),
    "BatchNorm channels_last": (
        lambda: cnn.BatchNorm(3, channels_last=1),
        r"BatchNorm: channels_last=1 must be True or False",
    ),
    "Dropout broadcast_dims": (
        lambda: cnn.Dropout(0.5, broadcast_dims="12"),
        r"Dropout: broadcast_dims='12' must be a tuple of axes",
    ),
    "Dense scheme": (
        lambda: cnn.Dense(3, 4, scheme="xavier", rngs=rngs()),
        r"Dense: scheme='xavier' is not a known initialisation scheme",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_value_error_naming_it(name):
    call, match = CASES[name]
    with pytest.raises(ValueError, match=match):
        call()


def test_impl_is_checked_against_the_registered_implementations():
    # The valid names come from convjax.functional's registry, not from a list in convjax.nn.
    names = ", ".join(repr(k) for k in cf.CONV_IMPLS)
    for build in (
        lambda: cnn.Conv(3, 4, (3, 3), impl="toeplitz", rngs=rngs()),
        lambda: cnn.ConvTranspose(3, 4, (3, 3), impl="toeplitz", rngs=rngs()),
    ):
        with pytest.raises(ValueError, match=r"impl='toeplitz' is not supported; use one") as info:
            build()
        assert names in str(info.value)
    assert cnn.Conv(3, 4, (3, 3), impl=next(iter(cf.CONV_IMPLS)), rngs=rngs()).impl in cf.CONV_IMPLS


def test_garbage_data_file_names_the_file(tmp_path):
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(b"this is not gzip data")
    with pytest.raises(ValueError, match=rf"path='{re.escape(str(bad))}' is not a readable gzip"):
        cdata.read_idx(bad)
    truncated = tmp_path / "t10k-labels-idx1-ubyte.gz"
    truncated.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05ab")[:-6])
    with pytest.raises(ValueError, match=rf"path='{re.escape(str(truncated))}'"):
        cdata.read_idx(truncated)
    with pytest.raises(ValueError, match=rf"path='{re.escape(str(tmp_path))}' is a folder"):
        cdata.read_idx(tmp_path)
