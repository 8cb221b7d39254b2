"""convjax.train, single runs: optimizer/schedules, pure steps, loop forms, exact resume,
SIGTERM, NaN stop, early stopping, metrics -- on tiny models and real Fashion-MNIST subsets."""

import json
import math
import os
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import convjax.functional as cf
from convjax import data as cdata
from convjax.models import PatternCNN
from convjax.train import config, engine, loops, metrics, optim
from convjax.train.checkpoint import Checkpointer
from convjax.train.config_files import load_config
from convjax.train.state import create_train_state, rng_stream_names
from convjax.train.steps import make_eval_step, make_train_step, smoothed_cross_entropy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    """The default config shrunk: smoke subsets and a 4/8-filter PatternCNN."""
    c = load_config(f"{ROOT}/configs/default.py", "smoke")
    c.model.widths = (4, 8)
    c.model.fc_widths = (16,)
    c.progress = False
    c.verbose = False
    c.loop = "unrolled"
    c.steps_per_call = 4  # 512 // 64 = 8 steps per epoch: two chunks, one compile
    for k, v in overrides.items():
        target = c
        *parents, leaf = k.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = v
    return c


@pytest.fixture(scope="module")
def fmnist():
    ds = cdata.load_dataset("fashion_mnist")
    return ds.train_images[:256], ds.train_labels[:256]


@pytest.fixture(scope="module")
def tiny():
    """One tiny model, state (with EMA) and jitted step shared by the step tests (one compile)."""
    model_def, state, step = _setup(tiny_config(schedule="constant", learning_rate=0.05), True)
    return model_def, state, step, jax.jit(step)


def _setup(cfg, ema=False):
    # A random head: with the zoo's default zero head the first steps train only the head, and
    # the 15-step loss test below was written for a network that learns from step one.
    model = PatternCNN(
        (28, 28, 1), 10, rngs=nnx.Rngs(0), widths=(4, 8), fc_widths=(16,), head_scheme="he_normal"
    )
    tx = optim.make_optimizer(config.prepare(cfg), 10)
    model_def, state = create_train_state(model, tx, ema=ema)
    step = make_train_step(
        model_def,
        tx,
        mean=[0.286],
        std=[0.353],
        ema_decay=0.9 if ema else 0.0,
        rng_streams=rng_stream_names(model),
    )
    return model_def, state, step


# ---------------------------------------------------------------------------- optimizer


def test_onecycle_schedule_hand_values():
    c = config.prepare(tiny_config(num_epochs=2, learning_rate=0.4))
    s = optim.make_schedule(c, steps_per_epoch=50)  # 100 steps, peak at step 25
    assert math.isclose(float(s(0)), 0.04, rel_tol=1e-6)  # lr / div_factor
    assert math.isclose(float(s(25)), 0.4, rel_tol=1e-6)
    assert math.isclose(float(s(100)), 0.4 / 1000, rel_tol=1e-4)  # lr / (div * final_div)
    c = config.prepare(tiny_config(num_epochs=2, learning_rate=0.4, schedule="cosine"))
    c.unlock().warmup_epochs = 0.5
    s = optim.make_schedule(c, steps_per_epoch=50)
    assert float(s(0)) == 0.0 and math.isclose(float(s(25)), 0.4, rel_tol=1e-6)
    assert math.isclose(float(s(100)), 0.0, abs_tol=1e-7)
    c.schedule = "constant"
    assert math.isclose(float(optim.make_schedule(c, 50)(60)), 0.4, rel_tol=1e-6)


def test_schedule_needs_a_step():
    with pytest.raises(ValueError, match=r"steps_per_epoch=0 must be >= 1"):
        optim.make_schedule(tiny_config(), 0)


def test_member_rates_scale_a_unit_schedule():
    # A population's optimizer: unit-rate schedule times each member's step_size. With plain
    # SGD (no momentum, no decay) one update is -lr * g either way.
    c = config.prepare(
        tiny_config(schedule="constant", learning_rate=0.3, momentum=0.0, weight_decay=0.0)
    )
    p, g = {"w": jnp.array([1.0])}, {"w": jnp.array([2.0])}
    single = optim.make_optimizer(c, 10)
    pop_tx = optim.make_optimizer(c, 10, member_rates=True)
    u1, _ = single.update(g, single.init(p), p)
    u2, s2 = pop_tx.update(g, pop_tx.init(p), p)
    np.testing.assert_allclose(u1["w"], [-0.6], rtol=1e-6)
    np.testing.assert_allclose(u2["w"], [-0.6], rtol=1e-6)
    assert optim.member_hyperparams(c) == {"step_size": 0.3, "weight_decay": 0.0, "momentum": 0.0}
    from convjax.train.population import get_hyperparams

    np.testing.assert_allclose(optim.learning_rates(get_hyperparams(s2)), 0.3, rtol=1e-6)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_weight_decay_only_on_kernels(name):
    c = tiny_config(
        optimizer=name, schedule="constant", learning_rate=0.1, weight_decay=0.5, momentum=0.0
    )
    c = config.prepare(c)
    tx = optim.make_optimizer(c, 10)
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones((3,))}
    zeros = jax.tree.map(jnp.zeros_like, params)
    upd, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, upd)
    # SGD (no momentum): g = 0 + 0.5 * w -> w - 0.1 * 0.5 = 0.95.
    # AdamW (decoupled; Adam's part is 0 for zero gradients): w - 0.1 * 0.5 * w = 0.95.
    np.testing.assert_allclose(new["kernel"], 0.95, rtol=1e-6)
    np.testing.assert_allclose(new["bias"], 1.0)


def test_sgd_nesterov_matches_hand_update():
    c = tiny_config(schedule="constant", learning_rate=0.1, weight_decay=0.0, momentum=0.9)
    tx = optim.make_optimizer(config.prepare(c), 10)
    p = {"w": jnp.array([1.0])}
    g = {"w": jnp.array([2.0])}
    s = tx.init(p)
    u1, s = tx.update(g, s, p)
    u2, s = tx.update(g, s, p)
    # Nesterov: v1 = g = 2, step = -(g + 0.9 v1) * lr = -0.38; v2 = 0.9*2 + 2 = 3.8,
    # step = -(2 + 0.9 * 3.8) * 0.1 = -0.542.
    np.testing.assert_allclose(u1["w"], [-0.38], rtol=1e-6)
    np.testing.assert_allclose(u2["w"], [-0.542], rtol=1e-6)


# ---------------------------------------------------------------------------- steps


def test_smoothed_cross_entropy_traced_equals_concrete():
    logits = jax.random.normal(jax.random.key(0), (5, 7))
    labels = jnp.array([0, 3, 6, 2, 2])
    want = cf.softmax_cross_entropy(logits, labels, label_smoothing=0.3)
    got = jax.jit(smoothed_cross_entropy)(logits, labels, jnp.float32(0.3))
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # Hand formula for one example: (1 - eps) * (-log p_y) + eps * mean_j(-log p_j).
    logp = np.asarray(jax.nn.log_softmax(logits[:1]))
    hand = 0.7 * -logp[0, 0] + 0.3 * -logp[0].mean()
    np.testing.assert_allclose(smoothed_cross_entropy(logits[:1], labels[:1], 0.3), hand, 1e-6)


def test_train_step_decreases_loss(fmnist, tiny):
    images, labels = fmnist
    _, state, _, jstep = tiny
    batch = {"image": jnp.asarray(images[:32]), "label": jnp.asarray(labels[:32])}
    losses = []
    for i in range(15):
        state, m = jstep(state, batch, jax.random.key(i), {"label_smoothing": 0.1})
        losses.append(float(m["loss"]))
    assert losses[-1] < 0.5 * losses[0], losses
    assert int(state.step) == 15


def test_train_step_is_deterministic_in_key_and_uses_dropout(fmnist):
    images, labels = fmnist
    c = config.prepare(tiny_config())
    # A random head: a zero head's logits (and so the loss) do not depend on the dropout mask.
    model = PatternCNN(
        (28, 28, 1),
        10,
        rngs=nnx.Rngs(0),
        widths=(4,),
        fc_widths=(16,),
        dropout=0.5,
        head_scheme="he_normal",
    )
    tx = optim.make_optimizer(c, 10)
    model_def, state = create_train_state(model, tx)
    step = jax.jit(
        make_train_step(model_def, tx, mean=[0.3], std=[0.3], rng_streams=rng_stream_names(model))
    )
    batch = {"image": jnp.asarray(images[:32]), "label": jnp.asarray(labels[:32])}
    hp = {"label_smoothing": 0.0}
    l1 = float(step(state, batch, jax.random.key(1), hp)[1]["loss"])
    l2 = float(step(state, batch, jax.random.key(1), hp)[1]["loss"])
    l3 = float(step(state, batch, jax.random.key(2), hp)[1]["loss"])
    assert l1 == l2 and l1 != l3  # same key, same masks; another key, other masks


def test_ema_tracks_params(fmnist, tiny):
    images, labels = fmnist
    _, state, _, jstep = tiny
    batch = {"image": jnp.asarray(images[:32]), "label": jnp.asarray(labels[:32])}
    new, _ = jstep(state, batch, jax.random.key(0), {"label_smoothing": 0.1})
    # ema = 0.9 * old + 0.1 * new params
    for e, old, p in zip(
        jax.tree.leaves(new.ema_params), jax.tree.leaves(state.params), jax.tree.leaves(new.params)
    ):
        np.testing.assert_allclose(e, 0.9 * old + 0.1 * p, rtol=1e-5, atol=1e-7)


def test_eval_step_counts_correct(fmnist, tiny):
    images, labels = fmnist
    model_def, state, _, _ = tiny
    ev = jax.jit(make_eval_step(model_def, mean=[0.286], std=[0.353]))
    m = ev(state, jnp.asarray(images[:50]), jnp.asarray(labels[:50]))
    from convjax.train.state import merge_model

    model = merge_model(model_def, state.params, state.batch_stats)
    model.eval()
    logits = model(cdata.normalize(images[:50], [0.286], [0.353]))
    assert int(m["correct"]) == int(np.sum(np.argmax(np.asarray(logits), -1) == labels[:50]))
    np.testing.assert_allclose(
        float(m["loss_sum"]) / 50, float(cf.softmax_cross_entropy(logits, labels[:50])), rtol=1e-5
    )


def test_health_norms_equal_the_update_they_describe(fmnist):
    """Plain SGD at rate 1 (no momentum, no decay): update = -gradient, so the step's per-layer
    gradient and update norms must equal the norm of (new - old) parameters, computed here."""
    from convjax.train.steps import health_layers

    images, labels = fmnist
    c = config.prepare(
        tiny_config(schedule="constant", learning_rate=1.0, momentum=0.0, weight_decay=0.0)
    )
    model = PatternCNN((28, 28, 1), 10, rngs=nnx.Rngs(0), widths=(4, 8), fc_widths=(16,))
    tx = optim.make_optimizer(c, 10)
    model_def, state = create_train_state(model, tx)
    step = make_train_step(model_def, tx, mean=[0.286], std=[0.353], health=True)
    batch = {"image": jnp.asarray(images[:32]), "label": jnp.asarray(labels[:32])}
    new, m = jax.jit(step)(state, batch, jax.random.key(0), {"label_smoothing": 0.0})
    groups = health_layers(state.params)
    old_leaves, new_leaves = jax.tree.leaves(state.params), jax.tree.leaves(new.params)
    for i, (name, idx) in enumerate(groups):
        diff = np.sqrt(
            sum(
                np.sum(
                    (np.asarray(new_leaves[j]) - np.asarray(old_leaves[j])) ** 2, dtype=np.float64
                )
                for j in idx
            )
        )
        param = np.sqrt(sum(np.sum(np.asarray(old_leaves[j], np.float64) ** 2) for j in idx))
        # float32 differences of numbers near 1: relative error ~1e-6 of the parameter norm
        tol = 1e-5 * param + 1e-7
        np.testing.assert_allclose(float(m["health"]["update"][i]), diff, atol=tol, err_msg=name)
        np.testing.assert_allclose(float(m["health"]["grad"][i]), diff, atol=tol, err_msg=name)
        np.testing.assert_allclose(float(m["health"]["param"][i]), param, rtol=1e-6)
    assert [name for name, _ in groups][:2] == ["classifier.layers.1", "classifier.layers.2"]


# ---------------------------------------------------------------------------- loop forms


def _chunks(start, num_batches, k, breaks=()):
    """The (first batch, steps) calls an epoch makes from ``start``, as the engine cuts them."""
    out, b = [], start
    while b < num_batches:
        out.append((b, loops.next_chunk(b, num_batches, k, breaks)))
        b += out[-1][1]
    return out


def test_chunks_align_to_k():
    assert _chunks(0, 8, 3) == [(0, 3), (3, 3), (6, 2)]
    assert _chunks(3, 8, 3) == [(3, 3), (6, 2)]  # a resumed run calls as the uninterrupted one
    assert _chunks(4, 8, 3) == [(4, 2), (6, 2)]
    assert _chunks(8, 8, 3) == []
    assert _chunks(0, 8, 3, breaks=(4,)) == [(0, 3), (3, 1), (4, 2), (6, 2)]


def test_loop_forms_agree(fmnist, tiny):
    images, labels = fmnist
    _, state0, step, _ = tiny  # constant lr 0.05: small steps keep float32 differences small
    x, y = jnp.asarray(images), jnp.asarray(labels)
    order = cdata.epoch_permutation(jax.random.key(0), 256, 32)
    key = jax.random.key(7)
    hp = {"label_smoothing": 0.1}
    results = {}
    for form, k in (("step", 1), ("scan", 2), ("unrolled", 2)):
        st = jax.tree.map(jnp.array, state0)
        multi = loops.make_multi_step(step, form, k, single=True)
        losses = []
        for b in range(0, 2, k):
            st, m = multi(st, x, y, order, b, key, hp)
            losses += list(np.asarray(m["loss"][:, 0]))
        results[form] = (st, losses)
    for form in ("scan", "unrolled"):
        np.testing.assert_allclose(results[form][1], results["step"][1], rtol=1e-5)
        for a, b in zip(jax.tree.leaves(results[form][0]), jax.tree.leaves(results["step"][0])):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=2e-4)  # float32 reassociation


def test_loop_form_errors():
    with pytest.raises(ValueError, match=r"loop form 'while' is not one of"):
        loops.check_form("while", 2)
    with pytest.raises(ValueError, match=r"steps_per_call=0 must be an int >= 1"):
        loops.check_form("scan", 0)
    with pytest.raises(ValueError, match=r"loop form 'step' runs one step per call"):
        loops.make_multi_step(lambda *a: a, "step", 2)
    # about best_form's k member steps per call: 4 for one member, 2 for two, then 1
    assert [loops.steps_per_call(4, n) for n in (1, 2, 3, 8)] == [4, 2, 1, 1]


# ---------------------------------------------------------------------------- whole runs


def _history_without_times(results):
    h = dict(results["history"])
    for k in ("epoch_time_s", "images_per_s", "elapsed_s"):
        h.pop(k)
    return h


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    wd = tmp_path_factory.mktemp("full")
    return wd, engine.train_and_evaluate(tiny_config(), wd)


def test_run_writes_artifacts_and_learns(uninterrupted):
    wd, r = uninterrupted
    for name in (
        "config.json",
        "summary.txt",
        "metrics.jsonl",
        "results.json",
        "learning_curves.png",
        "filters.png",
        "explanations.png",
        "activation_maps.png",
    ):
        assert (wd / name).stat().st_size > 0, name
    assert any(f.startswith("events.out.tfevents") for f in os.listdir(wd / "tensorboard"))
    assert json.loads((wd / "results.json").read_text())["test_accuracy"] == r["test_accuracy"]
    assert r["epochs_run"] == 2 and r["steps"] == 16
    assert r["test_accuracy"] > 0.3  # 10 classes: chance is 0.1
    recs = [json.loads(line) for line in (wd / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in recs if x["kind"] == "epoch"] == [1, 2]
    assert "Total params" in (wd / "summary.txt").read_text()


def test_load_model_gives_back_the_trained_network(uninterrupted):
    from convjax.train import load_model
    from convjax.train.inputs import load_data

    wd, r = uninterrupted
    model = load_model(wd)
    ds = load_data(config.prepare(tiny_config()))
    x = cdata.normalize(ds.test_images, *ds.train_mean_std)
    accuracy = float(np.mean(np.argmax(np.asarray(model(x)), -1) == ds.test_labels))
    assert accuracy == r["test_accuracy"]
    with pytest.raises(ValueError, match=r"member=3 is not in the newest checkpoint"):
        load_model(wd, member=3)


def test_sigterm_checkpoints_and_resume_is_exact(uninterrupted, tmp_path, monkeypatch):
    """A real SIGTERM mid-epoch 1: clean stop with a checkpoint; resuming ends bit-identical."""
    _, full = uninterrupted
    calls = {"n": 0}
    real_get = loops.StepCache.get

    def get(self, n):
        fn = real_get(self, n)

        def wrapped(*args):
            out = fn(*args)
            calls["n"] += 1
            if calls["n"] == 3:  # first chunk of epoch 2 (epoch 1 = 2 chunks)
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        return wrapped

    monkeypatch.setattr(loops.StepCache, "get", get)
    with pytest.raises(engine.TrainingInterrupted, match=r"SIGTERM received: checkpoint saved"):
        engine.train_and_evaluate(tiny_config(), tmp_path)
    assert Checkpointer(tmp_path).latest_step() == 8 + 4  # epoch 1 (8) + one chunk of 4
    monkeypatch.setattr(loops.StepCache, "get", real_get)
    resumed = engine.train_and_evaluate(tiny_config(), tmp_path)
    assert _history_without_times(resumed) == _history_without_times(full)
    assert resumed["test_accuracy"] == full["test_accuracy"]
    assert resumed["test_loss"] == full["test_loss"]
    epochs = [
        json.loads(line)
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["kind"] == "epoch"
    ]
    assert [e["epoch"] for e in epochs] == [1, 2]


def test_nan_loss_stops_naming_step_and_keeps_checkpoint(uninterrupted, tmp_path):
    import shutil

    # Resume the 2-epoch run from its epoch-1 checkpoint with an absurd learning rate: the
    # loss overflows to inf/NaN in epoch 2 and the epoch-1 checkpoint must stay the newest.
    shutil.copytree(uninterrupted[0] / "checkpoints" / "8", tmp_path / "checkpoints" / "8")
    assert Checkpointer(tmp_path).latest_step() == 8
    c = tiny_config(schedule="constant", learning_rate=1e30)
    with pytest.raises(engine.NonFiniteLossError, match=r"loss is (nan|inf) at step \d+ \(epoch 2"):
        engine.train_and_evaluate(c, tmp_path)
    assert Checkpointer(tmp_path).latest_step() == 8  # the last good one
    assert not (tmp_path / "results.json").exists()


def test_early_stopping_on_validation(tmp_path):
    # No batch norm (its running statistics move even at lr 0) and a learning rate of ~0 leave
    # validation accuracy unchanged: no improvement after epoch 1, stop after epoch 1 + 2.
    # A random head too: a zero head's logits tie exactly, so even a 1e-12 step changes argmax.
    c = tiny_config(
        **{"model.batch_norm": False, "model.head_scheme": "he_normal"},
        num_epochs=5,
        schedule="constant",
        learning_rate=1e-12,
        validation_size=64,
        early_stopping_patience=2,
    )
    c.smoke = False  # keep patience 2 and 5 epochs; sizes set by hand
    c.train_subset, c.test_subset, c.batch_size, c.eval_batch_size = 256, 64, 64, 64
    r = engine.train_and_evaluate(c, tmp_path)
    assert r["stopped_early"] and r["epochs_run"] == 3 and r["status"] == "stopped_early"
    assert len(set(r["history"]["val_accuracy"])) == 1
    assert r["val_accuracy"] is not None


# ---------------------------------------------------------------------------- metrics


def test_metrics_writer_truncates_after_resume(tmp_path):
    w = metrics.MetricsWriter(tmp_path, tensorboard=False)
    for s in (5, 10, 15):
        w.write("train_log", s, loss=1.0 / s)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train_lo')  # a line cut by SIGKILL
    w.truncate_after(10)
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [5, 10]


def test_progress_bar_text():
    bar = metrics.ProgressBar(10, "epoch 1/3")
    assert bar.text(5, 0.5, 0.8, 700.0) == (
        "epoch 1/3 [##########..........] 5/10 loss 0.5000 acc 80.0% 700 img/s"
    )
