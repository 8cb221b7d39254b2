"""Batch normalisation layer :class:`BatchNorm` over :func:`convjax.functional.batch_norm`.

The math (Ioffe & Szegedy 2015, PyTorch's conventions) lives in
:mod:`convjax.functional.normalization`; this layer holds ``scale``/``bias`` as
:class:`flax.nnx.Param` and the running ``mean``/``var`` as :class:`flax.nnx.BatchStat`,
and writes back the statistics the function returns. ``momentum=0.9`` here is PyTorch's
``momentum=0.1``; ``flax.nnx.BatchNorm`` means the same as this one but defaults to 0.99.
PyTorch's ``BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)`` ports
as ``BatchNorm(num_features, epsilon=eps, momentum=1 - momentum, use_scale=affine,
use_bias=affine)``, with ``channels_last=False`` for NCHW input.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

import convjax.functional as cf
from convjax.nn import _checks, _trace

__all__ = ["BatchNorm"]


class BatchNorm(nnx.Module):
    """Batch normalisation over every axis but the channel axis.

    Training mode (``model.train()``, ``use_running_average=False``) normalises with the
    batch's statistics and updates the running ones; evaluation mode (``model.eval()``)
    uses the running statistics and changes nothing.

    Args:
      num_features: channels C.
      channels_last: channel axis last (NHWC, and ``(N, C)`` dense outputs) or at axis 1.
      momentum: running-average factor (PyTorch's ``1 - momentum``; see module docstring).
      epsilon: added to the variance.
      use_running_average: True for evaluation; set by ``.train()`` / ``.eval()``.
      use_scale, use_bias: hold ``scale`` (gamma, starts at 1) / ``bias`` (beta, starts at 0).
      param_dtype: dtype of parameters and statistics.

    Parameters: ``scale``, ``bias`` (:class:`flax.nnx.Param`, ``(C,)``); statistics ``mean``,
    ``var`` (:class:`flax.nnx.BatchStat`, ``(C,)``, start at 0 and 1).
    """

    def __init__(
        self,
        num_features: int,
        *,
        channels_last: bool = True,
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        use_running_average: bool = False,
        use_scale: bool = True,
        use_bias: bool = True,
        param_dtype=jnp.float32,
    ):
        owner = type(self).__name__
        self.num_features = _checks.positive_int(num_features, "num_features", owner)
        if (
            isinstance(momentum, bool)
            or not isinstance(momentum, (int, float))
            or not (0.0 <= momentum <= 1.0)
        ):
            raise ValueError(
                f"BatchNorm: momentum={momentum!r} must be in [0, 1]; it weighs the old running "
                f"statistics (0.9 = PyTorch's momentum 0.1)."
            )
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not epsilon > 0:
            raise ValueError(f"BatchNorm: epsilon={epsilon!r} must be > 0; use e.g. 1e-5.")
        self.channels_last = _checks.check_bool(channels_last, "channels_last", owner)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.use_running_average = _checks.check_bool(
            use_running_average, "use_running_average", owner
        )
        self.use_scale = _checks.check_bool(use_scale, "use_scale", owner)
        self.use_bias = _checks.check_bool(use_bias, "use_bias", owner)
        _checks.check_param_dtype(param_dtype, owner)
        c = self.num_features
        self.scale = nnx.Param(jnp.ones((c,), param_dtype)) if use_scale else None
        self.bias = nnx.Param(jnp.zeros((c,), param_dtype)) if use_bias else None
        self.mean = nnx.BatchStat(jnp.zeros((c,), param_dtype))
        self.var = nnx.BatchStat(jnp.ones((c,), param_dtype))

    def set_view(self, use_running_average: bool | None = None):
        """Used by ``nnx.view(model, use_running_average=...)`` (evaluation without mutating)."""
        if use_running_average is not None:
            self.use_running_average = use_running_average

    def __call__(self, x):
        """Normalise ``x`` (``(N, *spatial, C)`` or ``(N, C, *spatial)``); same shape out."""
        shape = getattr(x, "shape", ())
        axis = len(shape) - 1 if self.channels_last else 1
        if len(shape) >= 2 and shape[axis] != self.num_features:
            raise ValueError(
                f"BatchNorm: input shape {tuple(shape)} has {shape[axis]} channels on axis "
                f"{axis} but num_features={self.num_features}; build the layer with "
                f"num_features={shape[axis]} or check channels_last={self.channels_last}."
            )
        y, (mean, var) = cf.batch_norm(
            x,
            None if self.scale is None else self.scale[...],
            None if self.bias is None else self.bias[...],
            self.mean[...],
            self.var[...],
            training=not self.use_running_average,
            momentum=self.momentum,
            epsilon=self.epsilon,
            channels_last=self.channels_last,
        )
        if not self.use_running_average:
            self.mean[...] = mean
            self.var[...] = var
        return _trace.record(self, x, y)
