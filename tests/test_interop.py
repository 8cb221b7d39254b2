"""`convjax.interop`: real PyTorch layers ported to convjax give PyTorch's outputs."""

import subprocess
import sys

import jax
import numpy as np
import pytest

import convjax.functional as cf
from convjax import interop

torch = pytest.importorskip("torch")
F = torch.nn.functional
# PyTorch's note that an even kernel with padding='same' copies the input: expected here.
pytestmark = pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")

CONV = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
CONV_T = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


def test_no_torch_import_at_module_import():
    code = "import sys, convjax.interop; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _port_conv(module, x_nchw, channels_last):
    kw = interop.conv_kwargs_from_torch(module)
    kernel, bias = kw.pop("kernel"), kw.pop("bias")
    op = cf.conv_transpose if module.transposed else cf.conv
    if channels_last:
        y = op(np.moveaxis(x_nchw, 1, -1), kernel, bias, **kw)
        return np.moveaxis(np.asarray(y), -1, 1)
    return np.asarray(op(x_nchw, kernel, bias, channels_last=False, **kw))


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize(
    "padding,padding_mode,stride",
    [
        (0, "zeros", 2),
        (1, "zeros", 1),
        ("same", "zeros", 1),
        ("valid", "zeros", 2),
        (2, "reflect", 1),
        (1, "replicate", 2),
        (2, "circular", 1),
        ("same", "circular", 1),
    ],
)
def test_conv_layers(n, padding, padding_mode, stride, x64):
    torch.manual_seed(n)
    tuple_padding = padding if isinstance(padding, str) else tuple(padding + i for i in range(n))
    layer = CONV[n](
        4,
        6,
        kernel_size=tuple(3 + (i % 2) for i in range(n)),  # odd and even kernel sizes
        stride=stride,
        padding=tuple_padding,
        dilation=tuple(1 + (i % 3 == 2) for i in range(n)),
        groups=2,
        padding_mode=padding_mode,
    ).double()
    x = torch.randn((2, 4) + (7,) * n, dtype=torch.float64)
    want = layer(x).detach().numpy()
    for channels_last in (False, True):
        got = _port_conv(layer, x.numpy(), channels_last)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_conv_transpose_layers(n, x64):
    torch.manual_seed(10 + n)
    layer = CONV_T[n](
        4,
        6,
        kernel_size=3,
        stride=tuple(2 + (i % 2) for i in range(n)),
        padding=1,
        output_padding=1,
        dilation=tuple(1 + (i % 2) for i in range(n)),
        groups=2,
    ).double()
    x = torch.randn((2, 4) + (4,) * n, dtype=torch.float64)
    want = layer(x).detach().numpy()
    for channels_last in (False, True):
        got = _port_conv(layer, x.numpy(), channels_last)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_float32_layer_without_bias():
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=False)
    x = torch.randn(1, 3, 16, 16)
    kw = interop.conv_kwargs_from_torch(layer)
    assert kw["bias"] is None and kw["kernel"].shape == (5, 5, 3, 8)
    got = _port_conv(layer, x.numpy(), True)
    np.testing.assert_allclose(got, layer(x).detach().numpy(), rtol=1e-4, atol=1e-5)


def test_weight_round_trips_and_torch_tensors():
    w = torch.randn(6, 2, 3, 4)  # Conv2d(4, 6, (3, 4), groups=2)
    k = interop.conv_weight_from_torch(w)  # a tensor with requires_grad would work too
    assert k.shape == (3, 4, 2, 6) and k[1, 2, 0, 5] == w[5, 0, 1, 2].item()
    np.testing.assert_array_equal(interop.conv_weight_to_torch(k), w.numpy())
    wt = torch.randn(4, 3, 3, 3, 3, requires_grad=True)  # ConvTranspose3d(4, 6, 3, groups=2)
    kt = interop.conv_transpose_weight_from_torch(wt, groups=2)
    assert kt.shape == (3, 3, 3, 2, 6)
    # input channel 3 = group 1, index 1; output 2 of group 1 = channel 1 * 3 + 2 = 5
    assert kt[0, 1, 2, 1, 5] == wt[3, 2, 0, 1, 2].item()
    np.testing.assert_array_equal(
        interop.conv_transpose_weight_to_torch(kt, groups=2), wt.detach().numpy()
    )


def test_padding_conversion():
    assert interop.conv_padding_from_torch(2) == {"padding": 2, "padding_mode": "zeros"}
    assert interop.conv_padding_from_torch((1, 2), "reflect") == {
        "padding": (1, 2),
        "padding_mode": "reflect",
    }
    assert interop.conv_padding_from_torch("same")["padding"] == "SAME"
    assert interop.conv_padding_from_torch("valid", "circular") == {
        "padding": "VALID",
        "padding_mode": "circular",
    }


def test_same_with_stride_pitfall(x64):
    """TF/convjax SAME at stride 2 is not PyTorch's symmetric padding=1 (same size!)."""
    torch.manual_seed(0)
    layer = torch.nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False).double()
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    k = interop.conv_weight_from_torch(layer.weight)
    sym = layer(x).detach().numpy()
    same = np.asarray(cf.conv(x.numpy(), k, stride=2, padding="SAME", channels_last=False))
    assert same.shape == sym.shape == (1, 1, 4, 4)
    assert not np.allclose(same, sym)  # same size, shifted windows: the silent porting bug
    # the port of padding=1 is the int 1
    # PyTorch sums the 9 float64 products in its own order: rounding <= 9 * 2.2e-16 * 10,
    # about 2e-14, so an atol of 1e-12 covers outputs near zero.
    ported = cf.conv(x.numpy(), k, stride=2, padding=1, channels_last=False)
    np.testing.assert_allclose(ported, sym, rtol=1e-12, atol=1e-12)
    # TensorFlow's SAME reproduced in PyTorch: explicit asymmetric F.pad with resolve_padding
    (lo_h, hi_h), (lo_w, hi_w) = cf.resolve_padding("SAME", (8, 8), (3, 3), 2)
    assert (lo_h, hi_h) == (0, 1)
    tf_like = F.conv2d(F.pad(x, (lo_w, hi_w, lo_h, hi_h)), layer.weight, stride=2)
    np.testing.assert_allclose(same, tf_like.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match=r"padding='same' with stride=2: PyTorch forbids"):
        interop.conv_padding_from_torch("same", stride=2)
    with pytest.raises(ValueError, match=r"padding='half' is not a PyTorch padding string"):
        interop.conv_padding_from_torch("half")
    with pytest.raises(ValueError, match=r"padding_mode='mirror' is not a PyTorch padding mode"):
        interop.conv_padding_from_torch(1, "mirror")
    with pytest.raises(ValueError, match=r"padding=-1 must be >= 0"):
        interop.conv_padding_from_torch(-1)
    with pytest.raises(ValueError, match=r"padding=\(1, 'a'\) must contain ints only"):
        interop.conv_padding_from_torch((1, "a"))
    with pytest.raises(ValueError, match=r"weight.shape=\(3, 3\) must have rank 3, 4 or 5"):
        interop.conv_weight_from_torch(np.zeros((3, 3)))
    with pytest.raises(ValueError, match=r"groups=3 does not divide the 4 input channels"):
        interop.conv_transpose_weight_from_torch(np.zeros((4, 2, 3, 3)), groups=3)
    with pytest.raises(ValueError, match=r"module=Linear is not a PyTorch convolution"):
        interop.conv_kwargs_from_torch(torch.nn.Linear(2, 3))
