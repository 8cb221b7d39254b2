"""Pooling layers over :mod:`convjax.functional` pooling ops (no parameters).

The number of spatial dimensions comes from the length of ``window`` (``output_size`` for
adaptive pools), or from ``num_spatial_dims`` when an int is given, exactly as in the
functional ops; the resolved tuple is stored, so ``layer.window`` is always a tuple.
Attributes have the functional arguments' names. ``stride=None`` means "equal to the
window" (the CS231n notes' F=2, S=2 pool), as in PyTorch and Keras; Flax's pooling functions
(``flax.linen.max_pool``, ``flax.nnx.max_pool``) default to a stride of 1, so pass the stride
when porting from Flax.
Windowed pools take ``padding_mode`` (``"reflect"``, ``"replicate"``, ``"circular"``; the
default ``"zeros"`` pads with the reduction's neutral value). Options are checked when a layer
is built.
"""

from __future__ import annotations

from flax import nnx

import convjax.functional as cf
from convjax.nn import _checks, _trace

__all__ = [
    "MaxPool",
    "AvgPool",
    "LpPool",
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "GlobalAvgPool",
    "GlobalMaxPool",
]


def _check_nsd(value, owner: str):
    if value is not None and (isinstance(value, bool) or value not in (1, 2, 3)):
        raise ValueError(
            f"{owner}: num_spatial_dims={value!r} must be 1, 2 or 3 (or None when the window "
            f"is a tuple)."
        )
    return value


class _WindowPool(nnx.Module):
    def _set_window(
        self, window, stride, padding, dilation, ceil_mode, channels_last, nsd, padding_mode
    ):
        owner = type(self).__name__
        self.window = _checks.spatial_tuple(window, "window", owner, _check_nsd(nsd, owner))
        self.num_spatial_dims = len(self.window)
        _checks.check_geometry(
            owner, self.window, stride=stride, padding=padding, dilation=dilation, pool=True
        )
        self.stride = _checks.freeze(stride)
        self.padding = _checks.freeze(padding)
        self.dilation = _checks.freeze(dilation)
        self.ceil_mode = _checks.check_bool(ceil_mode, "ceil_mode", owner)
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)
        self.padding_mode = _checks.check_padding_mode(padding_mode, owner)

    def _common(self):
        return dict(
            dilation=self.dilation,
            ceil_mode=self.ceil_mode,
            padding_mode=self.padding_mode,
            channels_last=self.channels_last,
            num_spatial_dims=self.num_spatial_dims,
        )


class MaxPool(_WindowPool):
    """Max pooling (:func:`convjax.functional.max_pool`); pads with -inf.

    Args:
      window, stride, padding, dilation, ceil_mode, padding_mode, channels_last,
        num_spatial_dims: as in :func:`convjax.functional.max_pool`.

    Shapes: ``(N, *spatial, C) -> (N, *spatial_out, C)`` with
    ``out = (W - F_eff + P_lo + P_hi) // S + 1`` (ceil with ``ceil_mode``).
    """

    def __init__(
        self,
        window,
        stride=None,
        padding=0,
        *,
        dilation=1,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        channels_last: bool = True,
        num_spatial_dims: int | None = None,
    ):
        self._set_window(
            window,
            stride,
            padding,
            dilation,
            ceil_mode,
            channels_last,
            num_spatial_dims,
            padding_mode,
        )

    def __call__(self, x):
        y = cf.max_pool(x, self.window, self.stride, self.padding, **self._common())
        return _trace.record(self, x, y)


class AvgPool(_WindowPool):
    """Average pooling (:func:`convjax.functional.avg_pool`).

    Args:
      window, stride, padding, dilation, ceil_mode, count_include_pad, divisor_override,
        padding_mode, channels_last, num_spatial_dims: as in
        :func:`convjax.functional.avg_pool` (PyTorch's semantics for ``count_include_pad``
        and ``divisor_override``).
    """

    def __init__(
        self,
        window,
        stride=None,
        padding=0,
        *,
        dilation=1,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
        padding_mode: str = "zeros",
        channels_last: bool = True,
        num_spatial_dims: int | None = None,
    ):
        self._set_window(
            window,
            stride,
            padding,
            dilation,
            ceil_mode,
            channels_last,
            num_spatial_dims,
            padding_mode,
        )
        owner = type(self).__name__
        self.count_include_pad = _checks.check_bool(count_include_pad, "count_include_pad", owner)
        if divisor_override is not None and (
            isinstance(divisor_override, bool)
            or not hasattr(divisor_override, "__index__")
            or int(divisor_override) < 1
        ):
            raise ValueError(
                f"{owner}: divisor_override={divisor_override!r} must be a positive int or None."
            )
        self.divisor_override = divisor_override

    def __call__(self, x):
        y = cf.avg_pool(
            x,
            self.window,
            self.stride,
            self.padding,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
            **self._common(),
        )
        return _trace.record(self, x, y)


class LpPool(_WindowPool):
    """Power-average pooling ``(sum x^p)^(1/p)`` (:func:`convjax.functional.lp_pool`);
    ``p=2`` is the CS231n notes' L2-norm pooling.

    Args:
      p: the power (> 0).
      window, stride, padding, dilation, ceil_mode, padding_mode, channels_last,
        num_spatial_dims: as in :func:`convjax.functional.lp_pool`.
    """

    def __init__(
        self,
        p: float,
        window,
        stride=None,
        padding=0,
        *,
        dilation=1,
        ceil_mode: bool = False,
        padding_mode: str = "zeros",
        channels_last: bool = True,
        num_spatial_dims: int | None = None,
    ):
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not p > 0 or p == float("inf"):
            raise ValueError(
                f"LpPool: p={p!r} must be a number > 0 and finite; use p=2 for L2 pooling, "
                f"MaxPool for p=inf."
            )
        self.p = float(p)
        self._set_window(
            window,
            stride,
            padding,
            dilation,
            ceil_mode,
            channels_last,
            num_spatial_dims,
            padding_mode,
        )

    def __call__(self, x):
        y = cf.lp_pool(x, self.window, self.stride, self.padding, p=self.p, **self._common())
        return _trace.record(self, x, y)


class _AdaptivePool(nnx.Module):
    def __init__(
        self, output_size, *, channels_last: bool = True, num_spatial_dims: int | None = None
    ):
        owner = type(self).__name__
        _check_nsd(num_spatial_dims, owner)
        if isinstance(output_size, int) and not isinstance(output_size, bool):
            if num_spatial_dims is None:
                raise ValueError(
                    f"{owner}: output_size={output_size!r} is an int, which does not say how "
                    f"many spatial dimensions the input has; pass a tuple such as "
                    f"({output_size}, {output_size}) or num_spatial_dims=1, 2 or 3."
                )
            output_size = (output_size,) * num_spatial_dims
        if not isinstance(output_size, (tuple, list)) or not 1 <= len(output_size) <= 3:
            raise ValueError(
                f"{owner}: output_size={output_size!r} must be an int (with num_spatial_dims) "
                f"or a tuple of 1 to 3 entries, each an int >= 1 or None (keep that size)."
            )
        for o in output_size:
            if o is not None and (isinstance(o, bool) or not hasattr(o, "__index__") or o < 1):
                raise ValueError(
                    f"{owner}: output_size={tuple(output_size)!r} contains {o!r}; each entry must "
                    f"be an int >= 1 or None (keep that size)."
                )
        if num_spatial_dims is not None and len(output_size) != num_spatial_dims:
            raise ValueError(
                f"{owner}: output_size={tuple(output_size)!r} has {len(output_size)} entries but "
                f"num_spatial_dims={num_spatial_dims}; make them agree."
            )
        self.output_size = _checks.freeze(output_size)
        self.num_spatial_dims = len(self.output_size)
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)


class AdaptiveAvgPool(_AdaptivePool):
    """Average pooling to a fixed ``output_size`` (PyTorch's bin rule);
    see :func:`convjax.functional.adaptive_avg_pool`. ``None`` entries keep that size."""

    def __call__(self, x):
        y = cf.adaptive_avg_pool(
            x,
            self.output_size,
            channels_last=self.channels_last,
            num_spatial_dims=self.num_spatial_dims,
        )
        return _trace.record(self, x, y)


class AdaptiveMaxPool(_AdaptivePool):
    """Max pooling to a fixed ``output_size``; see :func:`convjax.functional.adaptive_max_pool`."""

    def __call__(self, x):
        y = cf.adaptive_max_pool(
            x,
            self.output_size,
            channels_last=self.channels_last,
            num_spatial_dims=self.num_spatial_dims,
        )
        return _trace.record(self, x, y)


class _GlobalPool(nnx.Module):
    def __init__(
        self, num_spatial_dims: int = 2, *, channels_last: bool = True, keepdims: bool = False
    ):
        if isinstance(num_spatial_dims, bool) or num_spatial_dims not in (1, 2, 3):
            raise ValueError(
                f"{type(self).__name__}: num_spatial_dims={num_spatial_dims!r} must be 1, 2 or "
                f"3 (2 for images)."
            )
        owner = type(self).__name__
        self.num_spatial_dims = num_spatial_dims
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)
        self.keepdims = _checks.check_bool(keepdims, "keepdims", owner)


class GlobalAvgPool(_GlobalPool):
    """Mean over all spatial positions: ``(N, *spatial, C) -> (N, C)``
    (``keepdims=True``: spatial axes kept with size 1). ``num_spatial_dims`` defaults to 2."""

    def __call__(self, x):
        y = cf.global_avg_pool(
            x, self.num_spatial_dims, channels_last=self.channels_last, keepdims=self.keepdims
        )
        return _trace.record(self, x, y)


class GlobalMaxPool(_GlobalPool):
    """Max over all spatial positions: ``(N, *spatial, C) -> (N, C)``."""

    def __call__(self, x):
        y = cf.global_max_pool(
            x, self.num_spatial_dims, channels_last=self.channels_last, keepdims=self.keepdims
        )
        return _trace.record(self, x, y)
