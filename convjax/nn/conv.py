"""Convolution modules: :class:`Conv` (1, 2 or 3-D), thin ``Conv1d/2d/3d``, :class:`ConvTranspose`.

Each module holds ``kernel`` (HWIO: ``(*kernel_size, in_features // groups, out_features)``)
and ``bias`` (``(out_features,)``) as :class:`flax.nnx.Param`, the same names and layouts as
:func:`convjax.functional.conv`, so a module's parameter tree is exactly the functional
op's arguments. Every functional option is a public attribute with the functional name;
``__call__`` gathers the parameters and calls the op once.

Initialisation: :func:`convjax.functional.conv_init` with ``scheme="he_normal"`` by default
(He et al. 2015: variance ``2 / fan_in``, the right scale for ReLU networks); pass
``scheme="glorot_uniform"`` or ``"lecun_normal"`` for tanh/sigmoid/SELU nets. Biases start at 0.

Defaults that differ elsewhere: ``flax.nnx.Conv`` draws LeCun normal kernels (variance
``1 / fan_in``, truncated) and pads ``"SAME"``; PyTorch's ``Conv2d`` draws He *uniform* with
``a = sqrt(5)`` (variance ``1 / (3 fan_in)``) and a uniform bias, and pads 0 (= ``"VALID"``,
this module's default). Every option is checked when the module is built, not on its first
call.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

import convjax.functional as cf
from convjax.nn import _checks, _trace

__all__ = ["Conv", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose"]


class Conv(nnx.Module):
    """N-d convolution layer (cross-correlation by default, as in every CNN framework).

    The number of spatial dimensions is ``len(kernel_size)`` (1, 2 or 3).

    Args:
      in_features: input channels C.
      out_features: filters K (output channels).
      kernel_size: tuple of window sizes F, one per spatial dimension.
      stride, padding, dilation, groups, padding_mode, channels_last, flip, impl, strict,
        precision,
        preferred_element_type: as in :func:`convjax.functional.conv` (same names, same defaults).
      use_bias: whether to hold a ``bias`` parameter (off before a batch norm).
      scheme: initialiser scheme for :func:`convjax.functional.conv_init`.
      param_dtype: dtype of the parameters.
      rngs: :class:`flax.nnx.Rngs`; the ``params`` stream draws the kernel.

    Shapes: ``(N, *spatial, C) -> (N, *spatial_out, K)`` (channels-last), or unbatched
    ``(*spatial, C) -> (*spatial_out, K)``; channels-first with ``channels_last=False``.

    >>> import jax.numpy as jnp
    >>> from flax import nnx
    >>> layer = Conv(3, 10, (5, 5), padding=2, rngs=nnx.Rngs(0))
    >>> layer(jnp.ones((1, 32, 32, 3))).shape   # the CS231n notes' 32x32x3 -> 32x32x10 example
    (1, 32, 32, 10)
    """

    _num_spatial: int | None = None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        *,
        stride=1,
        padding="VALID",
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        channels_last: bool = True,
        flip: bool = False,
        impl: str = "lax",
        strict: bool = False,
        precision=None,
        preferred_element_type=None,
        use_bias: bool = True,
        scheme: str = "he_normal",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        owner = type(self).__name__
        self.in_features = _checks.positive_int(in_features, "in_features", owner)
        self.out_features = _checks.positive_int(out_features, "out_features", owner)
        self.kernel_size = _checks.spatial_tuple(
            kernel_size, "kernel_size", owner, self._num_spatial
        )
        self.groups = _checks.positive_int(groups, "groups", owner)
        if self.in_features % self.groups or self.out_features % self.groups:
            raise ValueError(
                f"{owner}: groups={groups} must divide both in_features={in_features} and "
                f"out_features={out_features}; pick a common divisor (groups=in_features "
                f"for a depthwise convolution)."
            )
        _checks.check_geometry(
            owner, self.kernel_size, stride=stride, padding=padding, dilation=dilation
        )
        self.stride = _checks.freeze(stride)
        self.padding = _checks.freeze(padding)
        self.dilation = _checks.freeze(dilation)
        self.padding_mode = _checks.check_padding_mode(padding_mode, owner)
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)
        self.flip = _checks.check_bool(flip, "flip", owner)
        self.impl = _checks.check_impl(impl, owner)
        self.strict = _checks.check_bool(strict, "strict", owner)
        self.precision = _checks.check_precision(precision, owner)
        self.preferred_element_type = _checks.check_element_type(preferred_element_type, owner)
        self.use_bias = _checks.check_bool(use_bias, "use_bias", owner)
        self.scheme = _checks.check_scheme(scheme, owner)
        _checks.check_param_dtype(param_dtype, owner)
        params = cf.conv_init(
            rngs.params(),
            self.kernel_size,
            self.in_features,
            self.out_features,
            scheme=scheme,
            use_bias=use_bias,
            groups=self.groups,
            dtype=param_dtype,
        )
        _checks.set_params(self, params, use_bias)

    def __call__(self, x):
        """Convolve ``x``; see the class docstring for shapes."""
        y = cf.conv(
            x,
            self.kernel[...],
            None if self.bias is None else self.bias[...],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
            channels_last=self.channels_last,
            flip=self.flip,
            impl=self.impl,
            strict=self.strict,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        return _trace.record(self, x, y)


class Conv1d(Conv):
    """:class:`Conv` with one spatial dimension; ``kernel_size`` may be an int."""

    _num_spatial = 1


class Conv2d(Conv):
    """:class:`Conv` with two spatial dimensions; ``kernel_size`` may be an int."""

    _num_spatial = 2


class Conv3d(Conv):
    """:class:`Conv` with three spatial dimensions; ``kernel_size`` may be an int."""

    _num_spatial = 3


class ConvTranspose(nnx.Module):
    """N-d transposed convolution (PyTorch's ``ConvTranspose``; the gradient of conv w.r.t. x).

    The number of spatial dimensions is ``len(kernel_size)``. The kernel layout is the one
    :func:`convjax.functional.conv_transpose` documents:
    ``(*kernel_size, in_features // groups, out_features)``.

    Args:
      in_features, out_features: channels of the input and of the output.
      kernel_size: tuple of window sizes, one per spatial dimension.
      stride, padding, output_padding, output_size, dilation, groups, padding_mode,
        channels_last, impl, precision, preferred_element_type: as in
        :func:`convjax.functional.conv_transpose` (same names, same defaults; ``padding``
        may be ``"SAME"``/``"VALID"`` with Flax's meaning).
      use_bias, scheme, param_dtype, rngs: as in :class:`Conv`.

    Output size per dimension (PyTorch's rule):
    ``(W - 1) * S - P_lo - P_hi + dilation * (F - 1) + output_padding + 1``, or
    ``output_size``; a call may pass ``output_size=`` for that call, as PyTorch's
    ``forward(x, output_size)`` does.

    The kernel is used flipped, as the gradient of a convolution uses it (PyTorch's and
    TensorFlow's convention); Flax's ``ConvTranspose`` does not flip (see
    :func:`convjax.functional.conv_transpose` for porting its kernel).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        kernel_size,
        *,
        stride=1,
        padding=0,
        output_padding=0,
        output_size=None,
        dilation=1,
        groups: int = 1,
        padding_mode: str = "zeros",
        channels_last: bool = True,
        impl: str = "lax",
        precision=None,
        preferred_element_type=None,
        use_bias: bool = True,
        scheme: str = "he_normal",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        owner = type(self).__name__
        self.in_features = _checks.positive_int(in_features, "in_features", owner)
        self.out_features = _checks.positive_int(out_features, "out_features", owner)
        self.kernel_size = _checks.spatial_tuple(kernel_size, "kernel_size", owner, None)
        self.groups = _checks.positive_int(groups, "groups", owner)
        if self.in_features % self.groups or self.out_features % self.groups:
            raise ValueError(
                f"{owner}: groups={groups} must divide both in_features={in_features} and "
                f"out_features={out_features}; pick a common divisor."
            )
        n = len(self.kernel_size)
        if isinstance(padding, str):
            if padding.upper() not in ("SAME", "VALID"):
                raise ValueError(
                    f"{owner}: padding={padding!r} is not a padding name a transposed "
                    f"convolution knows; use 'SAME', 'VALID' or PyTorch's amounts."
                )
        else:
            _checks.check_geometry(
                owner, self.kernel_size, stride=stride, padding=padding, dilation=dilation
            )
        try:
            cf.normalize_tuple(output_padding, n, "output_padding", minimum=0)
            cf.normalize_tuple(stride, n, "stride")
            cf.normalize_tuple(dilation, n, "dilation")
        except ValueError as err:
            raise ValueError(f"{owner}: {err}") from None
        self.stride = _checks.freeze(stride)
        self.padding = _checks.freeze(padding)
        self.output_padding = _checks.freeze(output_padding)
        if output_size is not None:
            try:
                cf.normalize_tuple(output_size, n, "output_size")
            except ValueError as err:
                raise ValueError(f"{owner}: {err}") from None
        self.output_size = _checks.freeze(output_size)
        self.dilation = _checks.freeze(dilation)
        self.padding_mode = _checks.check_padding_mode(padding_mode, owner)
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)
        self.impl = _checks.check_impl(impl, owner)
        self.precision = _checks.check_precision(precision, owner)
        self.preferred_element_type = _checks.check_element_type(preferred_element_type, owner)
        self.use_bias = _checks.check_bool(use_bias, "use_bias", owner)
        self.scheme = _checks.check_scheme(scheme, owner)
        _checks.check_param_dtype(param_dtype, owner)
        # Same kernel layout as Conv, (*F, in/groups, out), so the same initialiser applies.
        params = cf.conv_init(
            rngs.params(),
            self.kernel_size,
            self.in_features,
            self.out_features,
            scheme=scheme,
            use_bias=use_bias,
            groups=self.groups,
            dtype=param_dtype,
        )
        _checks.set_params(self, params, use_bias)

    def __call__(self, x, *, output_size=None):
        """Transposed convolution of ``x``: ``(N, *spatial, C_in) -> (N, *spatial_out, C_out)``.

        ``output_size`` (spatial sizes) picks the output padding for this call, as
        PyTorch's ``ConvTranspose2d.forward(x, output_size)`` (default: the layer's own
        ``output_size``); ``output_padding`` must then be 0.
        """
        if output_size is None:
            output_size = self.output_size
        y = cf.conv_transpose(
            x,
            self.kernel[...],
            None if self.bias is None else self.bias[...],
            stride=self.stride,
            padding=self.padding,
            output_padding=self.output_padding,
            output_size=output_size,
            dilation=self.dilation,
            groups=self.groups,
            padding_mode=self.padding_mode,
            channels_last=self.channels_last,
            impl=self.impl,
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        return _trace.record(self, x, y)
