"""Fully-connected layer :class:`Dense` and :class:`Flatten`.

``Dense`` holds ``kernel`` ``(in_features, out_features)`` and ``bias`` ``(out_features,)``,
the arguments of :func:`convjax.functional.dense`. Initialisation: He normal by default
(:func:`convjax.functional.dense_init`), right for a layer followed by ReLU. For a
classifier's last layer pass ``scheme="zeros"`` (the model zoo's heads do): its logits start
at 0, so the loss starts at ``ln(classes)``; a He-normal head starts higher (measured on
PatternCNN's default network: 2.6 to 3.2 instead of 2.30 for 10 classes). Other libraries'
defaults: Flax's ``nnx.Linear`` draws LeCun normal (variance ``1 / fan_in``), PyTorch's
``Linear`` ``U(-b, b)`` with ``b = 1 / sqrt(fan_in)`` and a uniform bias.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

import convjax.functional as cf
from convjax.nn import _checks, _trace

__all__ = ["Dense", "Flatten"]


class Dense(nnx.Module):
    """Affine layer ``y = x @ kernel + bias`` over the last axis.

    Args:
      in_features: D, size of the input's last axis.
      out_features: M, size of the output's last axis.
      use_bias: whether to hold a ``bias`` parameter.
      precision,
        preferred_element_type: as in :func:`convjax.functional.dense`.
      scheme: initialiser scheme for :func:`convjax.functional.dense_init`.
      param_dtype: dtype of the parameters.
      rngs: :class:`flax.nnx.Rngs`; the ``params`` stream draws the kernel.

    Shapes: ``(..., D) -> (..., M)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        use_bias: bool = True,
        precision=None,
        preferred_element_type=None,
        scheme: str = "he_normal",
        param_dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        owner = type(self).__name__
        self.in_features = _checks.positive_int(in_features, "in_features", owner)
        self.out_features = _checks.positive_int(out_features, "out_features", owner)
        self.use_bias = _checks.check_bool(use_bias, "use_bias", owner)
        self.precision = _checks.check_precision(precision, owner)
        self.preferred_element_type = _checks.check_element_type(preferred_element_type, owner)
        self.scheme = _checks.check_scheme(scheme, owner)
        _checks.check_param_dtype(param_dtype, owner)
        params = cf.dense_init(
            rngs.params(),
            self.in_features,
            self.out_features,
            scheme=scheme,
            use_bias=use_bias,
            dtype=param_dtype,
        )
        _checks.set_params(self, params, use_bias)

    def __call__(self, x):
        """``(..., in_features) -> (..., out_features)``."""
        y = cf.dense(
            x,
            self.kernel[...],
            None if self.bias is None else self.bias[...],
            precision=self.precision,
            preferred_element_type=self.preferred_element_type,
        )
        return _trace.record(self, x, y)


class Flatten(nnx.Module):
    """Merge every axis from ``start_axis`` on: ``(N, H, W, C) -> (N, H*W*C)``.

    ``start_axis=1`` (default) keeps a leading batch axis; use 0 for an unbatched input.
    """

    def __init__(self, start_axis: int = 1):
        if isinstance(start_axis, bool) or not isinstance(start_axis, int):
            raise ValueError(
                f"Flatten: start_axis={start_axis!r} must be an int (1 keeps a batch axis, 0 for "
                f"an unbatched input)."
            )
        self.start_axis = start_axis

    def __call__(self, x):
        y = cf.flatten(x, start_axis=self.start_axis)
        return _trace.record(self, x, y)
