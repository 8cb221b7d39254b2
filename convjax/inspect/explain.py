"""Why a prediction was made: saliency (and SmoothGrad) and Grad-CAM for any ``convjax.nn`` model.

* Saliency (Simonyan, Vedaldi & Zisserman, "Deep Inside Convolutional Networks", 2014): the
  gradient of the class score (the logit, before the softmax) with respect to the input; the
  map is ``max_c |gradient|`` over the input's channels.
* SmoothGrad (Smilkov et al. 2017): that gradient averaged over ``samples`` copies of the
  input with Gaussian noise of standard deviation ``noise * (max(x) - min(x))`` per example
  (the paper's 10-20% noise level), which removes much of the gradient's pixel noise.
* Grad-CAM (Selvaraju et al., ICCV 2017): for a layer's output ``A`` (``(N, h, w, K)``) and
  the class score ``y``, channel weights ``alpha_k = mean_{ij} dy / dA_{ijk}`` and the map
  ``relu(sum_k alpha_k A_k)`` at the layer's resolution, upsampled bilinearly to the input.

The layer is chosen by name (as :func:`convjax.inspect.summary` and
:func:`convjax.inspect.layer_names` list them) and reached with
:func:`convjax.inspect.forward`'s perturbation: ``dy / dA`` is the gradient with respect to
an array added to the layer's output, at zero. The model's code is not changed.

All three run a copy of the model in evaluation mode (BatchNorm on running statistics,
Dropout off): in training mode batch statistics would mix the examples of a batch, so one
example's gradient would depend on the others.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convjax.inspect import capture as _capture

__all__ = ["Saliency", "saliency", "GradCAM", "grad_cam"]


@dataclasses.dataclass(frozen=True)
class Saliency:
    """Result of :func:`saliency`.

    Attributes:
      gradient: ``d score / d x``, the input's shape ``(N, H, W, C)`` (averaged over the
        noisy copies for SmoothGrad).
      map: ``max_c |gradient|``, ``(N, H, W)`` (channels-last) for display.
      target: ``(N,)`` class index of each example's score (the predicted class by default;
        -1 when a ``score`` function chose what to explain).
    """

    gradient: np.ndarray
    map: np.ndarray
    target: np.ndarray


@dataclasses.dataclass(frozen=True)
class GradCAM:
    """Result of :func:`grad_cam`.

    Attributes:
      layer: the layer name.
      cam: ``relu(sum_k alpha_k A_k)`` at the layer's resolution, ``(N, h, w)``.
      weights: ``alpha``, ``(N, K)``: the mean over positions of ``d score / d A``.
      heatmap: ``cam`` upsampled bilinearly to the input's spatial size and divided by its
        maximum per example (all zero where ``cam`` is), ``(N, H, W)``.
      target: ``(N,)`` class index of each example's score.
    """

    layer: str
    cam: np.ndarray
    weights: np.ndarray
    heatmap: np.ndarray
    target: np.ndarray


def _check_x(x):
    x = jnp.asarray(x)
    if x.ndim < 3:
        raise ValueError(
            f"x has shape {tuple(x.shape)}; pass a batch of inputs (N, *spatial, C), e.g. "
            f"images[:8] of shape (8, 28, 28, 1), or add a batch axis with x[None]."
        )
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"x has dtype {x.dtype}; gradients need a float input: normalise the images as "
            f"for training (e.g. (x / 255 - mean) / std) or cast with x.astype(jnp.float32)."
        )
    return x


def _check_target(target, n: int):
    """None (predicted class) or ``(N,)`` ints."""
    if target is None:
        return None
    arr = np.asarray(target)
    if arr.ndim == 0:
        arr = np.full((n,), arr)
    if arr.shape != (n,) or not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(
            f"target={target!r} must be None (each example's predicted class), one int class "
            f"index, or {n} ints (one per example)."
        )
    return arr.astype(np.int32)


def _scores(out, target, score):
    """Per-example scalar scores ``(N,)`` from the model output."""
    if score is not None:
        s = score(out)
        if jnp.shape(s) != out.shape[:1]:
            raise ValueError(
                f"score(output) returned shape {jnp.shape(s)}; it must return one scalar per "
                f"example, shape ({out.shape[0]},)."
            )
        return s
    if out.ndim != 2:
        raise ValueError(
            f"the model output has shape {tuple(out.shape)}, not (N, num_classes) logits; pass "
            f"score=lambda out: ... returning one scalar per example (e.g. the logit of a "
            f"class summed over the pixels of a dense prediction)."
        )
    return jnp.take_along_axis(out, target[:, None], axis=1)[:, 0]


def _resolve_target(out, target, score):
    if score is not None:  # the score picks what to explain; -1 marks "no class index"
        return jnp.full(out.shape[:1], -1, jnp.int32) if target is None else jnp.asarray(target)
    if out.ndim != 2:
        _scores(out, None, None)  # raises the message above
    if target is None:
        return jnp.argmax(out, axis=-1).astype(jnp.int32)
    return jnp.asarray(target)


def _check_target_range(target, out_struct, score):
    if target is None or score is not None or len(out_struct.shape) != 2:
        return
    k = out_struct.shape[-1]
    bad = target[(target < 0) | (target >= k)]
    if bad.size:
        raise ValueError(
            f"target contains {bad.tolist()}, outside the model's {k} classes; use class "
            f"indices in [0, {k - 1}]."
        )


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _saliency_core(graphdef, state, x, target, score, channels_last):
    model_out = lambda x: _capture._run(graphdef, state, x, (), {}, True)[0]  # noqa: E731
    out, vjp = jax.vjp(model_out, x)
    target = _resolve_target(out, target, score)
    cot = jax.grad(lambda o: _scores(o, target, score).sum())(out)
    (grad,) = vjp(cot)
    return grad, target


def saliency(
    model,
    x,
    target=None,
    *,
    score: Callable | None = None,
    samples: int = 0,
    noise: float = 0.15,
    key=None,
    channels_last: bool = True,
) -> Saliency:
    """Gradient of the class score with respect to the input (SmoothGrad with ``samples``).

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers (not modified; a copy
        runs in evaluation mode).
      x: ``(N, *spatial, C)`` float inputs, normalised as the model was trained.
      target: None for each example's predicted class, one class index, or ``(N,)`` ints.
      score: optional ``score(output) -> (N,)`` replacing the logit of ``target`` (for
        outputs that are not ``(N, num_classes)`` logits, e.g. dense predictions).
      samples: 0 for the plain gradient; > 0 averages the gradient over that many noisy
        copies of ``x`` (SmoothGrad), evaluated as one batch of ``samples * N`` inputs.
        The class of each example stays the one chosen on the clean input.
      noise: SmoothGrad's noise standard deviation as a fraction of ``max(x) - min(x)``
        of each example.
      key: ``jax.random`` key for the noise (required when ``samples > 0``).
      channels_last: layout of ``x`` (the channel axis is reduced for :attr:`Saliency.map`).

    Returns:
      :class:`Saliency`.

    Raises:
      ValueError: a bad ``x``, ``target``, ``samples``, ``noise`` or ``key``, or an output
        that is not ``(N, num_classes)`` without ``score``.
    """
    x = _check_x(x)
    n = x.shape[0]
    target = _check_target(target, n)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise ValueError(
            f"samples={samples!r} must be an int >= 0 (0: plain gradient; SmoothGrad uses e.g. "
            f"samples=16)."
        )
    if samples and key is None:
        raise ValueError(
            f"samples={samples} asks for SmoothGrad, which needs key=jax.random.key(seed) "
            f"for its noise."
        )
    if not (isinstance(noise, (int, float)) and 0 < noise):
        raise ValueError(f"noise={noise!r} must be a positive float; the paper uses 0.1-0.2.")
    graphdef, state = nnx.split(model)
    out_struct = jax.eval_shape(
        lambda s, x: _capture._run(graphdef, s, x, (), {}, True)[0], state, x
    )
    _check_target_range(target, out_struct, score)
    tgt = None if target is None else jnp.asarray(target)
    grad, tgt = _saliency_core(graphdef, state, x, tgt, score, channels_last)
    if samples:
        axes = tuple(range(1, x.ndim))
        span = jnp.max(x, axis=axes, keepdims=True) - jnp.min(x, axis=axes, keepdims=True)
        eps = jax.random.normal(key, (samples, *x.shape), x.dtype)
        noisy = (x[None] + noise * span[None] * eps).reshape(samples * n, *x.shape[1:])
        g, _ = _saliency_core(graphdef, state, noisy, jnp.tile(tgt, samples), score, channels_last)
        grad = g.reshape(samples, *x.shape).mean(axis=0)
    channel_axis = -1 if channels_last else 1
    grad = np.asarray(grad)
    return Saliency(gradient=grad, map=np.abs(grad).max(axis=channel_axis), target=np.asarray(tgt))


@functools.partial(jax.jit, static_argnums=(0, 3, 5, 6))
def _grad_cam_core(graphdef, state, x, layer, target, score, channels_last):
    shape = jax.eval_shape(lambda x: _capture._run(graphdef, state, x, (layer,), {}, True)[1], x)
    zero = jnp.zeros(shape[layer].shape, shape[layer].dtype)

    def run(delta):
        out, acts = _capture._run(graphdef, state, x, (layer,), {layer: delta}, True)
        return out, acts[layer]

    (out, act), vjp = jax.vjp(run, zero)
    target = _resolve_target(out, target, score)
    cot = jax.grad(lambda o: _scores(o, target, score).sum())(out)
    (grad,) = vjp((cot, jnp.zeros_like(act)))
    channel_axis = act.ndim - 1 if channels_last else 1
    spatial = tuple(a for a in range(1, act.ndim) if a != channel_axis)
    weights = jnp.mean(grad, axis=spatial)  # (N, K): alpha_k, Selvaraju et al. eq. (1)
    shape = [1] * act.ndim
    shape[0], shape[channel_axis] = weights.shape
    cam = jax.nn.relu(jnp.sum(act * weights.reshape(shape), axis=channel_axis))  # eq. (2)
    return cam, weights, target


def grad_cam(
    model,
    x,
    layer: str,
    target=None,
    *,
    score: Callable | None = None,
    channels_last: bool = True,
) -> GradCAM:
    """Grad-CAM map of ``layer`` for the class score (see the module docstring).

    Args:
      model: a ``flax.nnx`` model built from ``convjax.nn`` layers (not modified; a copy
        runs in evaluation mode).
      x: ``(N, *spatial, C)`` float inputs.
      layer: name of a layer with a spatial output, usually the last convolutional block's
        activation (``"features.layers.12"`` in the default PatternCNN,
        ``"stages.layers.2.relu2"`` in ResNet-20).
      target: None for each example's predicted class, one class index, or ``(N,)`` ints.
      score: optional ``score(output) -> (N,)`` replacing the logit of ``target``.
      channels_last: layout of ``x`` and of the layer's output.

    Returns:
      :class:`GradCAM`.

    Raises:
      ValueError: a bad ``x`` or ``target``; a ``layer`` that is no layer call of the model
        or has no spatial axes.
    """
    x = _check_x(x)
    target = _check_target(target, x.shape[0])
    if not isinstance(layer, str):
        raise ValueError(
            f"layer={layer!r} must be a layer name, e.g. 'features.layers.12' (see "
            f"convjax.inspect.layer_names(model, input_shape))."
        )
    graphdef, state = nnx.split(model)
    out_struct, acts = jax.eval_shape(
        lambda s, x: _capture._run(graphdef, s, x, (layer,), {}, True), state, x
    )
    if len(acts[layer].shape) != x.ndim:
        raise ValueError(
            f"layer={layer!r} outputs shape {tuple(acts[layer].shape)}, which has no spatial "
            f"axes of the input's {x.ndim - 2}; choose a convolutional layer or its activation "
            f"(the last one before global pooling or flattening)."
        )
    _check_target_range(target, out_struct, score)
    tgt = None if target is None else jnp.asarray(target)
    cam, weights, tgt = _grad_cam_core(graphdef, state, x, layer, tgt, score, channels_last)
    spatial = x.shape[1:-1] if channels_last else x.shape[2:]
    up = jax.image.resize(cam, (cam.shape[0], *spatial), "bilinear")
    peak = jnp.max(up.reshape(up.shape[0], -1), axis=1).reshape((-1,) + (1,) * len(spatial))
    heat = jnp.where(peak > 0, up / jnp.where(peak > 0, peak, 1), 0.0)
    return GradCAM(
        layer=layer,
        cam=np.asarray(cam),
        weights=np.asarray(weights),
        heatmap=np.asarray(heat),
        target=np.asarray(tgt),
    )
