"""Batch normalisation as pure functions: :func:`batch_moments` and :func:`batch_norm`.

Ioffe & Szegedy 2015: in training, normalise each channel with the mean and (biased)
variance of the batch over every axis but the channel axis, then scale and shift; keep
exponential running averages for evaluation. Conventions follow PyTorch, so its
``batch_norm`` is an oracle, with Flax's name for the factor: ``momentum=0.9`` here is
PyTorch's ``momentum=0.1`` (``running = momentum * running + (1 - momentum) * batch``), and
the running variance is updated with the unbiased batch variance ``n / (n - 1) * var``
(PyTorch's rule; Flax's ``BatchNorm`` keeps the biased one).

The functions hold no state: the running statistics go in and the new ones come out, so
``jax.jit``, ``jax.vmap`` and ``jax.grad`` see plain arrays. :class:`convjax.nn.BatchNorm`
holds them as ``nnx.BatchStat`` and calls :func:`batch_norm`.

Derivative. Differentiating the training-mode formula op by op gives a backward pass with
five or six full-size intermediates, which XLA's CPU backend runs at a fraction of memory
speed once the activation outgrows the cache (19 ms for a ``(128, 28, 28, 32)`` activation
against 6 ms for the closed form, ``benchmarks/results/batch_norm.md``). The training path is
therefore a ``jax.custom_jvp`` whose tangent is the closed form

    dy = k dx + (dbias - k mean(dx)) + (x - mu) (inv dscale - k inv^2 mean((x - mu) dx))

with ``inv = 1 / sqrt(var + epsilon)`` and ``k = inv * scale`` per channel. It is linear in
the tangents, so reverse mode transposes it into the classic backward formula (two
reductions and one full-size pass), and forward mode and second order (``jax.jvp``,
``jax.hessian``) keep working. ``mean(x - mu) = 0`` is used once, so the derivative equals
the op-by-op one up to float rounding.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from convjax.functional import _checks

__all__ = ["batch_moments", "batch_norm"]


def _feature_axis(ndim: int, channels_last: bool, fn: str) -> int:
    if ndim < 2:
        raise ValueError(
            f"x has {ndim} axis/axes but {fn} needs a batch axis and a channel axis (shape "
            f"(N, ..., C)); add a batch axis, e.g. x[None]."
        )
    return ndim - 1 if channels_last else 1


def _stat_shape(x, axis: int):
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return shape


def batch_moments(x, *, channels_last: bool = True):
    """Per-channel mean and biased variance over every axis but the channel axis.

    Args:
      x: ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``; ``(N, C)`` for
        dense activations.

    Returns:
      ``(mean, var)``, each of shape ``(C,)``. Two passes (``mean((x - mean)**2)``) rather
      than ``E[x^2] - E[x]^2``, which loses every digit when the mean is large.
    """
    x = _checks.as_array(x, "x", "batch_moments", floating=True)
    return _moments(x, _feature_axis(x.ndim, channels_last, "batch_moments"))


def _reduced_axes(x, axis: int) -> tuple[int, ...]:
    return tuple(a for a in range(x.ndim) if a != axis)


def _moments(x, axis: int):
    axes = _reduced_axes(x, axis)
    mean = jnp.mean(x, axis=axes)
    var = jnp.mean(jnp.square(x - mean.reshape(_stat_shape(x, axis))), axis=axes)
    return mean, var


def _normalize_forward(x, scale, bias, axis: int, epsilon: float):
    """``(y, mu, var, inv, centred)``: the output, the batch's statistics ``(C,)``,
    ``1 / sqrt(var + epsilon)`` ``(C,)`` and ``x - mu`` (x's shape)."""
    mu, var = _moments(x, axis)
    shape = _stat_shape(x, axis)
    inv = jax.lax.rsqrt(var + epsilon)
    centred = x - mu.reshape(shape)
    y = centred * (inv * scale).reshape(shape) + bias.reshape(shape)
    return y, mu, var, inv, centred


@functools.partial(jax.custom_jvp, nondiff_argnums=(3, 4))
def _normalize_with_batch_stats(x, scale, bias, axis: int, epsilon: float):
    """Training-mode normalisation: ``(y, mu, var)`` with the batch's mean and biased variance
    (``(C,)`` each) over every axis but ``axis``; ``scale``, ``bias`` are ``(C,)`` arrays."""
    return _normalize_forward(x, scale, bias, axis, epsilon)[:3]


@_normalize_with_batch_stats.defjvp
def _normalize_with_batch_stats_jvp(axis, epsilon, primals, tangents):
    """The closed-form tangent (module docstring); linear in ``tangents``, so its transpose is
    the classic two-reduction backward pass."""
    x, scale, bias = primals
    dx, dscale, dbias = tangents
    y, mu, var, inv, centred = _normalize_forward(x, scale, bias, axis, epsilon)
    axes, shape = _reduced_axes(x, axis), _stat_shape(x, axis)
    k = inv * scale
    dmu = jnp.mean(dx, axis=axes)
    half_dvar = jnp.mean(centred * dx, axis=axes)  # d var = 2 mean((x - mu) dx): mean(x - mu) = 0
    coef = inv * dscale - k * inv * inv * half_dvar
    dy = dx * k.reshape(shape) + (dbias - k * dmu).reshape(shape) + centred * coef.reshape(shape)
    return (y, mu, var), (dy, dmu, 2 * half_dvar)


def _check_stat(value, name: str, c: int):
    if value is None:
        return None
    value = _checks.as_array(value, name, "batch_norm")
    if tuple(value.shape) != (c,):
        raise ValueError(
            f"{name}.shape={tuple(value.shape)} must be ({c},), one value per channel of x."
        )
    return value


def batch_norm(
    x,
    scale,
    bias,
    mean,
    var,
    *,
    training: bool,
    momentum: float = 0.9,
    epsilon: float = 1e-5,
    channels_last: bool = True,
):
    """Batch normalisation, returning the output and the new running statistics.

    ``y = (x - mu) / sqrt(sigma^2 + epsilon) * scale + bias`` per channel, where in training
    ``mu, sigma^2`` are the batch's mean and biased variance and the running statistics are
    updated (``momentum * running + (1 - momentum) * batch``, the variance with the unbiased
    ``n / (n - 1)`` factor); in evaluation ``mu, sigma^2 = mean, var`` and the statistics
    come back unchanged.

    Args:
      x: ``(N, *spatial, C)`` (``channels_last``) or ``(N, C, *spatial)``; ``(N, C)`` for
        dense activations.
      scale, bias: ``(C,)`` affine parameters (gamma, beta), or None for 1 and 0.
      mean, var: ``(C,)`` running statistics.
      training: use the batch's statistics and update the running ones (a Python bool).
      momentum: weight of the old running statistics, in ``[0, 1]``. The default 0.9 is
        PyTorch's ``momentum=0.1`` (PyTorch names the weight of the *new* batch);
        ``flax.nnx.BatchNorm`` and Keras use this meaning with a default of 0.99.
      epsilon: added to the variance, > 0; 1e-5 as in PyTorch and Flax (Keras: 1e-3).
      channels_last: where the channel axis is.

    Returns:
      ``(y, (new_mean, new_var))``: ``y`` of ``x``'s shape and the running statistics. No
      gradient flows into the new statistics (they are not trained).

    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.0], [2.0]])  # two examples, one channel: mean 1, variance 1
    >>> y, (m, v) = batch_norm(x, None, None, jnp.zeros(1), jnp.ones(1), training=True)
    >>> y[:, 0].round(4).tolist(), m.tolist(), v.round(6).tolist()
    ([-1.0, 1.0], [0.10000000149011612], [1.100000023841858])
    """
    x = _checks.as_array(x, "x", "batch_norm", floating=True)
    if not isinstance(training, bool):
        raise ValueError(
            f"training={training!r} must be True (batch statistics, update the running "
            f"ones) or False (use the running statistics)."
        )
    momentum = _checks.check_number(
        momentum,
        "momentum",
        "batch_norm",
        minimum=0.0,
        maximum=1.0,
        allow_traced=False,
        hint="It weighs the old running statistics; 0.9 is PyTorch's momentum=0.1.",
    )
    epsilon = _checks.check_number(epsilon, "epsilon", "batch_norm", allow_traced=False)
    if not epsilon > 0:
        raise ValueError(f"epsilon={epsilon!r} must be > 0 for batch_norm; use e.g. 1e-5.")
    axis = _feature_axis(x.ndim, channels_last, "batch_norm")
    c = x.shape[axis]
    scale = _check_stat(scale, "scale", c)
    bias = _check_stat(bias, "bias", c)
    mean = _check_stat(mean, "mean", c)
    var = _check_stat(var, "var", c)
    if mean is None or var is None:
        raise ValueError(
            "mean and var (the running statistics, shape (C,)) are needed; start them at "
            "zeros(C) and ones(C)."
        )
    if training:
        y, mu, sigma2 = _normalize_with_batch_stats(
            x,
            jnp.ones((c,), x.dtype) if scale is None else scale,
            jnp.zeros((c,), x.dtype) if bias is None else bias,
            axis,
            epsilon,
        )
        n = x.size // c
        unbiased = sigma2 * (n / max(n - 1, 1))
        new_mean = jax.lax.stop_gradient(momentum * mean + (1 - momentum) * mu)
        new_var = jax.lax.stop_gradient(momentum * var + (1 - momentum) * unbiased)
        return y, (new_mean, new_var)
    shape = _stat_shape(x, axis)  # evaluation: the running statistics, unchanged
    inv = jax.lax.rsqrt(var + epsilon)
    if scale is not None:
        inv = inv * scale
    y = (x - mean.reshape(shape)) * inv.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y, (mean, var)
