"""Classification losses: softmax cross-entropy and the multiclass SVM loss.

Both take scores (logits) of shape ``(..., classes)`` (class axis last, channels-last like
the rest of convjax) and integer labels of shape ``(...)``, and reduce with
``reduction="mean"`` (default), ``"sum"`` or ``"none"``. ``softmax_cross_entropy`` also
takes soft targets: a probability row per example, shape ``(..., classes)``, as
``optax.softmax_cross_entropy`` does (mixup, distillation, one-hot labels).

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

from convjax.functional import _checks
from convjax.functional.activations import log_softmax

__all__ = ["softmax_cross_entropy", "multiclass_hinge_loss", "REDUCTIONS"]

#: Reductions understood by every loss.
REDUCTIONS = ("mean", "sum", "none")


def _check_inputs(scores, labels, fn: str, scores_name: str):
    scores = _checks.as_array(scores, scores_name, fn)
    labels = _checks.as_array(labels, "labels", fn)
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
        soft = (
            "; soft targets (one probability row per example) need shape "
            f"{scores_name}.shape={tuple(scores.shape)}"
            if fn == "softmax_cross_entropy"
            else "; for one-hot targets take argmax(-1)"
        )
        raise ValueError(
            f"labels.dtype={labels.dtype} must be an integer dtype (class indices; "
            f"labels.shape={tuple(labels.shape)}) for {fn}{soft}."
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


def _check_soft_targets(logits, targets):
    """Soft targets: floats of the logits' shape, each row a probability distribution."""
    if logits.ndim < 1:
        raise ValueError(
            f"logits.shape={logits.shape} must be (..., classes) with at least one axis for "
            f"softmax_cross_entropy."
        )
    if targets.shape == logits.shape[:-1]:
        raise ValueError(
            f"labels.dtype={targets.dtype} must be an integer dtype for class indices of shape "
            f"{tuple(targets.shape)}; cast them with .astype(jnp.int32), or pass soft targets "
            f"(one probability row per example) of the logits' shape {tuple(logits.shape)}."
        )
    if targets.shape != logits.shape:
        raise ValueError(
            f"labels.shape={tuple(targets.shape)} with dtype {targets.dtype}: soft targets "
            f"need one probability row per example, the shape of logits "
            f"{tuple(logits.shape)}; integer class indices need shape "
            f"{tuple(logits.shape[:-1])}."
        )
    if logits.shape[-1] < 1:
        raise ValueError(f"logits.shape={logits.shape} has no classes on its last axis.")
    if isinstance(targets, jax.core.Tracer) or not targets.size:
        return
    t = np.asarray(targets, np.float64)
    if not np.all(np.isfinite(t)) or t.min() < 0:
        bad = t[~np.isfinite(t) | (t < 0)].flat[0]
        raise ValueError(
            f"labels (soft targets) contains {bad:g}; every entry must be a probability >= 0 "
            f"(pass integer class indices, or e.g. jax.nn.one_hot(y, classes))."
        )
    # A row sum off by more than rounding is a mistake (logits or percentages passed as
    # targets). Rounding: C entries each within eps/2 of their value, summed, can be off by
    # about C * eps (float32, 10 classes: 1.2e-6; bfloat16, 10 classes: 0.08); 1e-4 at least.
    tol = max(1e-4, logits.shape[-1] * float(jnp.finfo(targets.dtype).eps))
    sums = t.sum(axis=-1)
    worst = np.unravel_index(np.argmax(np.abs(sums - 1.0)), sums.shape)
    if abs(sums[worst] - 1.0) > tol:
        raise ValueError(
            f"labels (soft targets) row {tuple(int(i) for i in worst)} sums to "
            f"{sums[worst]:.6g}, not 1; each row must be a probability distribution over the "
            f"{logits.shape[-1]} classes (normalise it, e.g. t / t.sum(-1, keepdims=True))."
        )


def _check_reduction(reduction):
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
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


def _check_smoothing(label_smoothing) -> float:
    return _checks.check_number(
        label_smoothing,
        "label_smoothing",
        "softmax_cross_entropy",
        minimum=0.0,
        maximum=1.0,
        allow_traced=False,
        hint="0 disables it, 0.1 is a common choice.",
    )


def softmax_cross_entropy(logits, labels, *, label_smoothing: float = 0.0, reduction="mean"):
    """Cross-entropy between ``softmax(logits)`` and integer labels or soft targets.

    With integer labels ``y`` the target is the one-hot row of ``y``; soft targets ``t``
    (floats of the logits' shape, each row a probability distribution, as
    ``optax.softmax_cross_entropy`` takes them) are used as given. Per example

        loss = -sum_j t_j log p_j,   p = softmax(logits).

    Label smoothing ``eps`` replaces the target by ``(1 - eps) * t + eps / C``, for integer
    labels (PyTorch's ``F.cross_entropy(..., label_smoothing=eps)``) and soft targets alike
    (PyTorch's rule for probability targets, and ``optax.smooth_labels(t, eps)``), so

        loss = (1 - eps) * (-sum_j t_j log p_j) + eps * mean_j(-log p_j).

    Args:
      logits: unnormalised scores, shape ``(..., C)``.
      labels: integer class indices of shape ``(...)``, values in ``[0, C)``; or soft
        targets, floats of shape ``(..., C)`` whose rows are non-negative and sum to 1
        (checked when concrete).
      label_smoothing: ``eps`` in ``[0, 1]``.
      reduction: ``"mean"`` over every example, ``"sum"``, or ``"none"`` (shape ``(...)``).

    Returns:
      scalar, or per-example losses of shape ``(...)`` for ``reduction="none"``.

    Example (PyTorch puts the class axis at 1, convjax last; for ``(N, C)`` they agree):

    >>> import jax.numpy as jnp
    >>> float(softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3])))  # log 4
    1.3862943649291992
    >>> float(softmax_cross_entropy(jnp.zeros((1, 4)), jnp.array([[0.5, 0.5, 0.0, 0.0]])))
    1.3862943649291992
    """
    _check_reduction(reduction)
    eps = _check_smoothing(label_smoothing)
    logits_arr = _checks.as_array(logits, "logits", "softmax_cross_entropy")
    labels_arr = _checks.as_array(labels, "labels", "softmax_cross_entropy")
    soft = jnp.issubdtype(labels_arr.dtype, jnp.floating)
    if soft:
        if not jnp.issubdtype(logits_arr.dtype, jnp.floating):
            raise ValueError(
                f"logits.dtype={logits_arr.dtype} must be floating point for "
                f"softmax_cross_entropy; cast with .astype(jnp.float32)."
            )
        _check_soft_targets(logits_arr, labels_arr)
        logp = log_softmax(logits_arr, axis=-1)
        targets = labels_arr.astype(logp.dtype)
    else:
        logits_arr, labels_arr = _check_inputs(
            logits_arr, labels_arr, "softmax_cross_entropy", "logits"
        )
        logp = log_softmax(logits_arr, axis=-1)
        targets = jax.nn.one_hot(labels_arr, logits_arr.shape[-1], dtype=logp.dtype)
    nll = -jnp.sum(targets * logp, axis=-1)
    if eps:
        loss = (1.0 - eps) * nll + eps * (-jnp.mean(logp, axis=-1))
    else:
        loss = nll
    if not soft:
        loss = _mark_out_of_range(loss, labels_arr, logits_arr.shape[-1])
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
    margin = _checks.check_number(
        margin,
        "margin",
        "multiclass_hinge_loss",
        minimum=0.0,
        allow_traced=False,
        hint="It is the SVM's Delta; 1.0 is the usual value.",
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
