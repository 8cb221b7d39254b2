"""Losses: hand-computed cases, PyTorch parity (values and gradients), jit behaviour, errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import convjax.functional as cf

# CS231n's multiclass SVM example: three images (cat, car, frog), three classes.
SVM_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
SVM_LABELS = np.array([0, 1, 2])


def test_hinge_hand_computed():
    # cat:  max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9 + 0     = 2.9
    # car:  max(0, 1.3 - 4.9 + 1) + max(0,  2.0 - 4.9 + 1) = 0   + 0     = 0
    # frog: max(0, 2.2 + 3.1 + 1) + max(0,  2.5 + 3.1 + 1) = 6.3 + 6.6   = 12.9
    with jax.enable_x64(True):
        per = cf.multiclass_hinge_loss(SVM_SCORES, SVM_LABELS, reduction="none")
        np.testing.assert_allclose(per, [2.9, 0.0, 12.9], rtol=1e-12)
        mean = cf.multiclass_hinge_loss(SVM_SCORES, SVM_LABELS)
        assert float(mean) == pytest.approx((2.9 + 0.0 + 12.9) / 3, rel=1e-12)
        total = cf.multiclass_hinge_loss(SVM_SCORES, SVM_LABELS, reduction="sum")
        assert float(total) == pytest.approx(15.8, rel=1e-12)
        # margin 0: cat 1.9, car 0, frog 5.3 + 5.6
        per0 = cf.multiclass_hinge_loss(SVM_SCORES, SVM_LABELS, 0.0, reduction="none")
        np.testing.assert_allclose(per0, [1.9, 0.0, 10.9], rtol=1e-12)
        # Gradient w.r.t. the cat row: +1 on each violating class, -(#violations) on the label.
        g = jax.grad(lambda s: cf.multiclass_hinge_loss(s, SVM_LABELS, reduction="sum"))(
            jnp.asarray(SVM_SCORES)
        )
        np.testing.assert_array_equal(g, [[-1, 1, 0], [0, 0, 0], [1, 1, -2]])


def test_cross_entropy_hand_computed():
    # Uniform logits over 4 classes: -log(1/4) = log 4 for every label.
    assert float(cf.softmax_cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))) == pytest.approx(
        math.log(4), rel=1e-6
    )
    # logits log([1, 2, 1]) -> p = [1/4, 1/2, 1/4], label 1: -log p_1 = log 2.
    # With eps = 0.3: 0.7 log 2 + 0.3 * (log 4 + log 2 + log 4) / 3 = 0.7 log 2 + 0.5 log 2.
    logits = jnp.log(jnp.array([[1.0, 2.0, 1.0]]))
    lab = jnp.array([1])
    assert float(cf.softmax_cross_entropy(logits, lab)) == pytest.approx(math.log(2), rel=1e-6)
    smoothed = cf.softmax_cross_entropy(logits, lab, label_smoothing=0.3)
    assert float(smoothed) == pytest.approx(1.2 * math.log(2), rel=1e-6)


def test_cross_entropy_stable_for_huge_logits():
    logits = jnp.array([[1e4, 0.0, -1e4]], jnp.float32)
    assert float(cf.softmax_cross_entropy(logits, jnp.array([0]))) == 0.0
    assert float(cf.softmax_cross_entropy(logits, jnp.array([2]))) == pytest.approx(2e4)
    g = jax.grad(lambda z: cf.softmax_cross_entropy(z, jnp.array([2])))(logits)
    np.testing.assert_allclose(g, [[1, 0, -1]], atol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.1, 0.55, 1.0])
def test_cross_entropy_matches_torch(reduction, eps):
    rng = np.random.default_rng(3)
    logits = rng.normal(scale=2.0, size=(7, 5))
    labels = rng.integers(0, 5, size=(7,))
    t = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(
        t, torch.tensor(labels), label_smoothing=eps, reduction=reduction
    )
    g = rng.normal(size=ref.shape)
    (ref * torch.tensor(g)).sum().backward()
    with jax.enable_x64(True):
        fn = lambda z: cf.softmax_cross_entropy(z, labels, label_smoothing=eps, reduction=reduction)
        y, vjp = jax.vjp(fn, jnp.asarray(logits))
        (dz,) = vjp(jnp.asarray(g))
        np.testing.assert_allclose(y, ref.detach().numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dz, t.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_cross_entropy_extra_batch_dims_match_torch_class_axis_1():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 3, 4, 6))  # (N, H, W, C): per-pixel classification
    labels = rng.integers(0, 6, size=(2, 3, 4))
    ref = torch.nn.functional.cross_entropy(
        torch.tensor(logits).permute(0, 3, 1, 2), torch.tensor(labels), label_smoothing=0.2
    )
    with jax.enable_x64(True):
        y = cf.softmax_cross_entropy(logits, labels, label_smoothing=0.2)
        assert float(y) == pytest.approx(float(ref), rel=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("margin", [1.0, 0.3])
def test_hinge_is_num_classes_times_torch_multi_margin(reduction, margin):
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(9, 4))
    labels = rng.integers(0, 4, size=(9,))
    t = torch.tensor(scores, requires_grad=True)
    ref = torch.nn.functional.multi_margin_loss(
        t, torch.tensor(labels), p=1, margin=margin, reduction=reduction
    )
    ref.sum().backward()
    with jax.enable_x64(True):
        fn = lambda s: cf.multiclass_hinge_loss(s, labels, margin, reduction=reduction)
        y = fn(jnp.asarray(scores))
        # PyTorch divides the CS231n sum by the number of classes C = 4.
        # PyTorch adds the <= 3 float64 hinge terms (magnitudes < 10) in its own order:
        # rounding about 3 * 2.2e-16 * 10, so an atol of 1e-13 covers a hinge near zero.
        np.testing.assert_allclose(y, 4 * ref.detach().numpy(), rtol=1e-12, atol=1e-13)
        dz = jax.grad(lambda s: jnp.sum(fn(s)))(jnp.asarray(scores))
        np.testing.assert_allclose(dz, 4 * t.grad.numpy(), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("loss", [cf.softmax_cross_entropy, cf.multiclass_hinge_loss])
def test_unbatched_jit_vmap(loss):
    rng = np.random.default_rng(6)
    s = jnp.asarray(rng.normal(size=(5, 3)), jnp.float32)
    lab = jnp.asarray(rng.integers(0, 3, size=(5,)))
    per = loss(s, lab, reduction="none")
    # float32 per-example losses from 3 logits of N(0, 1): another summation order changes
    # them by a few ulps of values < 10, about 1e-6 at most; a hinge loss can be near zero.
    tol = dict(rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jax.vmap(lambda a, b: loss(a, b))(s, lab), per, **tol)
    np.testing.assert_allclose(jax.jit(loss)(s, lab), jnp.mean(per), **tol)
    assert loss(s[0], lab[0]).shape == ()


@pytest.mark.parametrize("loss", [cf.softmax_cross_entropy, cf.multiclass_hinge_loss])
def test_out_of_range_labels_are_nan_under_jit(loss):
    # Traced labels cannot be checked in Python; the documented behaviour is NaN per example.
    s = jnp.zeros((3, 4))
    per = jax.jit(lambda a, b: loss(a, b, reduction="none"))(s, jnp.array([0, 4, -1]))
    assert np.isfinite(per[0]) and np.isnan(per[1]) and np.isnan(per[2])
    assert np.isnan(jax.jit(loss)(s, jnp.array([0, 4, 1])))


@pytest.mark.parametrize(
    "loss,name", [(cf.softmax_cross_entropy, "logits"), (cf.multiclass_hinge_loss, "scores")]
)
def test_loss_errors(loss, name):
    s = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match=r"labels contains 4, outside \[0, 4\)"):
        loss(s, jnp.array([0, 4, 1]))
    with pytest.raises(ValueError, match=r"labels contains -1, outside \[0, 4\)"):
        loss(s, np.array([0, -1, 1]))
    with pytest.raises(ValueError, match=r"reduction='avg' is not known; use one of 'mean'"):
        loss(s, jnp.array([0, 1, 2]), reduction="avg")
    with pytest.raises(ValueError, match=r"labels.dtype=float32 must be an integer dtype"):
        loss(s, jnp.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=rf"labels.shape=\(3, 1\) must equal {name}.shape\[:-1\]"):
        loss(s, jnp.zeros((3, 1), jnp.int32))
    with pytest.raises(ValueError, match=rf"{name}.dtype=int32 must be floating point"):
        loss(jnp.zeros((3, 4), jnp.int32), jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match=rf"{name}.shape=\(\) must be \(..., classes\)"):
        loss(jnp.zeros(()), jnp.array(0))


def test_loss_specific_errors():
    s, lab = jnp.zeros((2, 3)), jnp.array([0, 1])
    with pytest.raises(ValueError, match=r"label_smoothing=1.5 must be a number in \[0, 1\]"):
        cf.softmax_cross_entropy(s, lab, label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"label_smoothing=-0.1 must be a number in \[0, 1\]"):
        cf.softmax_cross_entropy(s, lab, label_smoothing=-0.1)
    with pytest.raises(ValueError, match=r"margin=-1.0 must be a number >= 0"):
        cf.multiclass_hinge_loss(s, lab, margin=-1.0)
