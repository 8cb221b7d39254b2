"""Batch normalisation: pure functions :func:`batch_moments`, :func:`batch_norm` and the
layer :class:`BatchNorm`.

Layer 1 has no batch-norm op, so the math lives here as two small pure functions (jax only)
that the layer calls; they can move to ``convjax.functional`` unchanged.

Ioffe & Szegedy 2015: in training, normalise each channel with the mean and (biased)
variance of the batch over every axis but the channel axis, then scale and shift; keep
exponential running averages for evaluation. Conventions follow PyTorch so its
``BatchNorm`` is an oracle: ``momentum=0.9`` here is PyTorch's ``momentum=0.1``
(``running = momentum * running + (1 - momentum) * batch``), and the running variance is
updated with the unbiased batch variance ``n / (n - 1) * var``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from convjax.nn import _checks, _trace

__all__ = ["batch_moments", "batch_norm", "BatchNorm"]


def _feature_axis(ndim: int, channels_last: bool, owner: str) -> int:
    if ndim < 2:
        raise ValueError(
            f"{owner}: x has {ndim} axis/axes but batch norm needs a batch axis and a channel "
            f"axis (shape (N, ..., C)); add a batch axis, e.g. x[None]."
        )
    return ndim - 1 if channels_last else 1


def batch_moments(x, *, channels_last: bool = True):
    """Per-channel mean and biased variance over every axis but the channel axis.

    Args:
      x: ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``.

    Returns:
      ``(mean, var)``, each of shape ``(C,)``. Two passes (``mean((x - mean)**2)``) rather
      than ``E[x^2] - E[x]^2``, which loses every digit when the mean is large.
    """
    axis = _feature_axis(x.ndim, channels_last, "batch_moments")
    axes = tuple(a for a in range(x.ndim) if a != axis)
    mean = jnp.mean(x, axis=axes)
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    var = jnp.mean(jnp.square(x - mean.reshape(shape)), axis=axes)
    return mean, var


def batch_norm(x, mean, var, scale=None, bias=None, *, epsilon=1e-5, channels_last=True):
    """``(x - mean) / sqrt(var + epsilon) * scale + bias``, per channel.

    Args:
      x: ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``.
      mean, var: ``(C,)`` statistics (the batch's in training, running ones in evaluation).
      scale, bias: optional ``(C,)`` affine parameters (gamma, beta).
      epsilon: added to the variance for stability.

    Returns:
      array of ``x``'s shape.
    """
    axis = _feature_axis(x.ndim, channels_last, "batch_norm")
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    inv = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        inv = inv * scale
    y = (x - mean.reshape(shape)) * inv.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


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
        if isinstance(momentum, bool) or not 0.0 <= momentum <= 1.0:
            raise ValueError(
                f"BatchNorm: momentum={momentum!r} must be in [0, 1]; it weighs the old running "
                f"statistics (0.9 = PyTorch's momentum 0.1)."
            )
        if not epsilon > 0:
            raise ValueError(f"BatchNorm: epsilon={epsilon!r} must be > 0; use e.g. 1e-5.")
        self.channels_last = channels_last
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.use_running_average = use_running_average
        self.use_scale = use_scale
        self.use_bias = use_bias
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
        axis = _feature_axis(x.ndim, self.channels_last, "BatchNorm")
        if x.shape[axis] != self.num_features:
            raise ValueError(
                f"BatchNorm: input shape {tuple(x.shape)} has {x.shape[axis]} channels on axis "
                f"{axis} but num_features={self.num_features}; build the layer with "
                f"num_features={x.shape[axis]} or check channels_last={self.channels_last}."
            )
        scale = None if self.scale is None else self.scale[...]
        bias = None if self.bias is None else self.bias[...]
        if self.use_running_average:
            mean, var = self.mean[...], self.var[...]
        else:
            mean, var = batch_moments(x, channels_last=self.channels_last)
            n = x.size // x.shape[axis]
            unbiased = var * (n / max(n - 1, 1))
            m = self.momentum
            # The statistics are not trained: no gradient flows into the running averages.
            self.mean[...] = jax.lax.stop_gradient(m * self.mean[...] + (1 - m) * mean)
            self.var[...] = jax.lax.stop_gradient(m * self.var[...] + (1 - m) * unbiased)
        y = batch_norm(
            x, mean, var, scale, bias, epsilon=self.epsilon, channels_last=self.channels_last
        )
        return _trace.record(self, x, y)
