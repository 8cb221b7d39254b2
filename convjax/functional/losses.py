"""Classification losses on integer labels: softmax cross-entropy and the multiclass SVM loss.

Both take scores (logits) of shape ``(..., classes)`` (class axis last, channels-last like
the rest of convjax) and integer labels of shape ``(...)``, and reduce with
``reduction="mean"`` (default), ``"sum"`` or ``"none"``.

Labels outside ``[0, classes)``: when the labels are concrete (not traced) this is a
``ValueError`` before anything runs. Under ``jax.jit``/``vmap``/``grad`` with traced labels
their values are unknown at trace time, so the check cannot happen in Python; instead the
loss of every such example is NaN (and so is a mean or sum that includes it), so a bad label
shows up in the training curve instead of silently contributing zero.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from convjax.functional.activations import log_softmax

__all__ = ["softmax_cross_entropy", "multiclass_hinge_loss", "REDUCTIONS"]

#: Reductions understood by every loss.
REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(scores, labels, fn: str, scores_name: str):
    scores = jnp.asarray(scores)
    labels = labels if isinstance(labels, jax.Array) else jnp.asarray(labels)
    if scores.ndim < 1:
        raise ValueError(
            f"{scores_name}.shape={scores.shape} must be (..., classes) with at least one "
            f"axis for {fn}."
        )
    if not jnp.issubdtype(scores.dtype, jnp.floating):
        raise ValueError(
            f"{scores_name}.dtype={scores.dtype} must be floating point for {fn}; "
            f"cast with .astype(jnp.float32)."
        )
    if not jnp.issubdtype(labels.dtype, jnp.integer):
        raise ValueError(
            f"labels.dtype={labels.dtype} must be an integer dtype (class indices) for {fn}; "
            f"for one-hot or soft targets take argmax or use optax.softmax_cross_entropy."
        )
    if labels.shape != scores.shape[:-1]:
        raise ValueError(
            f"labels.shape={labels.shape} must equal {scores_name}.shape[:-1]="
            f"{scores.shape[:-1]} ({scores_name} is (..., classes) with the class axis last); "
            f"give one integer label per row of {scores_name}."
        )
    num_classes = scores.shape[-1]
    if num_classes < 1:
        raise ValueError(f"{scores_name}.shape={scores.shape} has no classes on its last axis.")
    if not isinstance(labels, jax.core.Tracer) and labels.size:
        # Concrete labels can be checked before XLA sees them; traced ones cannot (see the
        # module docstring: they give NaN instead).
        lab = np.asarray(labels)
        lo, hi = int(lab.min()), int(lab.max())
        if lo < 0 or hi >= num_classes:
            bad = lo if lo < 0 else hi
            raise ValueError(
                f"labels contains {bad}, outside [0, {num_classes}) for {scores_name} with "
                f"{num_classes} classes; labels must be class indices 0..{num_classes - 1}."
            )
    return scores, labels


def _check_reduction(reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction={reduction!r} is not known; use one of {', '.join(map(repr, REDUCTIONS))}."
        )


def _reduce(loss, reduction: str):
    if reduction == "mean":
        return jnp.mean(loss)
    if reduction == "sum":
        return jnp.sum(loss)
    return loss


def _mark_out_of_range(loss, labels, num_classes: int):
    # Traced labels cannot be range-checked in Python; make a bad label visible as NaN.
    valid = (labels >= 0) & (labels < num_classes)
    return jnp.where(valid, loss, jnp.nan)


def softmax_cross_entropy(logits, labels, *, label_smoothing: float = 0.0, reduction="mean"):
    """Cross-entropy between ``softmax(logits)`` and integer class labels.

    With label smoothing ``eps`` the target distribution is ``(1 - eps) * onehot(y) + eps / C``
    (PyTorch's ``F.cross_entropy(..., label_smoothing=eps)``), so per example

        loss = (1 - eps) * (-log p_y) + eps * mean_j(-log p_j),   p = softmax(logits).

    Args:
      logits: unnormalised scores, shape ``(..., C)``.
      labels: integer class indices, shape ``(...)``, values in ``[0, C)``.
      label_smoothing: ``eps`` in ``[0, 1]``.
      reduction: ``"mean"`` over every example, ``"sum"``, or ``"none"`` (shape ``(...)``).

    Returns:
      scalar, or per-example losses of shape ``(...)`` for ``reduction="none"``.

    Example (PyTorch puts the class axis at 1, convjax last; for ``(N, C)`` they agree):

    >>> import jax.numpy as jnp
    >>> float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
    1.3862943649291992
    """
    _check_reduction(reduction)
    if isinstance(label_smoothing, bool) or not (0.0 <= float(label_smoothing) <= 1.0):
        raise ValueError(
            f"label_smoothing={label_smoothing!r} must be a number in [0, 1]; 0 disables it, "
            f"0.1 is a common choice."
        )
    logits, labels = _check_inputs(logits, labels, "softmax_cross_entropy", "logits")
    num_classes = logits.shape[-1]
    logp = log_softmax(logits, axis=-1)
    onehot = jax.nn.one_hot(labels, num_classes, dtype=logp.dtype)
    nll = -jnp.sum(onehot * logp, axis=-1)
    if label_smoothing:
        eps = float(label_smoothing)
        loss = (1.0 - eps) * nll + eps * (-jnp.mean(logp, axis=-1))
    else:
        loss = nll
    loss = _mark_out_of_range(loss, labels, num_classes)
    return _reduce(loss, reduction)


def multiclass_hinge_loss(scores, labels, margin: float = 1.0, *, reduction="mean"):
    """Multiclass SVM (Weston-Watkins / CS231n) loss.

    Per example with correct class ``y``:

        loss = sum_{j != y} max(0, s_j - s_y + margin)

    Relation to PyTorch: ``F.multi_margin_loss(s, y, p=1, margin=m, reduction="none")``
    divides the same sum by the number of classes ``C``, so
    ``multiclass_hinge_loss(s, y, m, reduction="none") == C * F.multi_margin_loss(...)``
    (and likewise for "mean" and "sum").

    At a kink (``s_j - s_y + margin == 0`` exactly) the derivative is taken as 0.

    Args:
      scores: class scores, shape ``(..., C)``.
      labels: integer class indices, shape ``(...)``.
      margin: the margin ``Delta >= 0``.
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    >>> import jax.numpy as jnp
    >>> float(multiclass_hinge_loss(jnp.array([[3.2, 5.1, -1.7]]), jnp.array([0])))
    2.9000000953674316
    """
    _check_reduction(reduction)
    if isinstance(margin, bool) or not float(margin) >= 0.0:
        raise ValueError(
            f"margin={margin!r} must be a number >= 0 (the SVM's Delta); 1.0 is the usual value."
        )
    scores, labels = _check_inputs(scores, labels, "multiclass_hinge_loss", "scores")
    num_classes = scores.shape[-1]
    onehot = jax.nn.one_hot(labels, num_classes, dtype=jnp.bool_)
    correct = jnp.sum(jnp.where(onehot, scores, 0), axis=-1, keepdims=True)
    diff = scores - correct + margin
    # where(diff > 0, ...) instead of maximum: derivative 0 at the kink, no 0.5 split.
    hinge = jnp.where(diff > 0, diff, 0)
    # The j == y term would always contribute `margin`; it is excluded by definition.
    hinge = jnp.where(onehot, 0, hinge)
    loss = jnp.sum(hinge, axis=-1)
    loss = _mark_out_of_range(loss, labels, num_classes)
    return _reduce(loss, reduction)
