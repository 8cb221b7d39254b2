"""The engine with N > 1 members: every member equals its solo run, a diverged member is frozen
and reported while the others finish as alone, stopped members leave the population, exact
resume after SIGTERM, per-member logs; and a model defined here trained through the engine, an
ablation and a sweep."""

import json
import os
import signal

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

import convjax.functional as cf
import convjax.nn as cnn
from convjax.train import config as config_lib
from convjax.train import engine, loops
from convjax.train.checkpoint import Checkpointer
from convjax.train.config_files import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def base():
    c = load_config(f"{ROOT}/configs/default.py", "smoke")
    c.model.widths = (4, 8)
    c.model.fc_widths = (16,)
    # A random head: the zoo's zero head would make the exploding member's first update touch
    # the head only, and its divergence step depend on that.
    c.model.head_scheme = "he_normal"
    c.progress = False
    c.verbose = False
    c.tensorboard = True
    c.figures = False
    c.validation_size = 64
    c.train_subset = 256  # 192 training images after the split: 3 steps of 64 per epoch
    c.loop = "step"
    c.tta_flip = True  # evaluation on each image and its mirror, in populations too
    return c


# Member 1's rate makes its first update explode: its second loss is not finite.
MEMBERS = [
    {
        "learning_rate": 0.05,
        "seed": 0,
        "label_smoothing": 0.1,
        "momentum": 0.9,
        "model.dropout": 0.2,
    },
    {
        "learning_rate": 1e30,
        "seed": 0,
        "label_smoothing": 0.1,
        "momentum": 0.9,
        "model.dropout": 0.2,
    },
    {
        "learning_rate": 0.2,
        "seed": 1,
        "label_smoothing": 0.0,
        "momentum": 0.5,
        "model.dropout": 0.5,
    },
]


def member_configs():
    return [config_lib.apply_overrides(base(), m) for m in MEMBERS]


@pytest.fixture(scope="module")
def population(tmp_path_factory):
    wd = tmp_path_factory.mktemp("population")
    return wd, engine.fit(member_configs(), wd, strategy="unrolled", log=lambda s: None)


@pytest.fixture(scope="module")
def solos(tmp_path_factory):
    cfgs = member_configs()
    return {
        i: engine.train_and_evaluate(cfgs[i], tmp_path_factory.mktemp(f"solo{i}")) for i in (0, 2)
    }


def without_times(h):
    return {k: v for k, v in h.items() if k not in ("epoch_time_s", "images_per_s", "elapsed_s")}


def test_members_equal_their_solo_runs_and_the_diverged_one_is_frozen(population, solos):
    wd, got = population
    for i in (0, 2):
        r, solo = got[i], solos[i]
        assert r["status"] == "finished" and r["epochs_run"] == 2
        assert r["val_accuracy"] == solo["val_accuracy"]
        assert r["test_accuracy"] == solo["test_accuracy"]
        # float32 rounding of a unit-rate schedule times the member's rate vs the rate inside
        # the schedule; losses near 1-2, so rtol covers it
        np.testing.assert_allclose(r["test_loss"], solo["test_loss"], rtol=1e-5)
        for k in ("train_loss", "val_loss", "learning_rate"):
            np.testing.assert_allclose(r["history"][k], solo["history"][k], rtol=1e-5)
    bad = got[1]
    assert bad["status"] == "diverged" and bad["diverged_step"] == 2
    assert bad["epochs_run"] == 1 and bad["steps"] == 1
    # frozen at the state after step 1: its evaluation is finite
    assert np.isfinite(bad["test_loss"]) and np.isfinite(bad["history"]["val_loss"][0])
    assert got[0]["members"] == 3


def test_per_member_folders_logs_and_results(population):
    wd, got = population
    for i, r in enumerate(got):
        d = wd / "members" / str(i)
        assert json.loads((d / "results.json").read_text())["status"] == r["status"]
        recs = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
        epochs = [x["epoch"] for x in recs if x["kind"] == "epoch"]
        assert epochs == ([1] if i == 1 else [1, 2])
        assert any(f.startswith("events.out") for f in os.listdir(d / "tensorboard"))
        assert (d / "config.json").exists()
    assert (wd / "summary.txt").exists() and Checkpointer(wd).latest_step() == 6


def test_sigterm_mid_epoch_resumes_every_member_exactly(population, tmp_path, monkeypatch):
    _, full = population
    calls = {"n": 0}
    real_get = loops.StepCache.get

    def get(self, n):
        fn = real_get(self, n)

        def wrapped(*args):
            out = fn(*args)
            calls["n"] += 1
            if calls["n"] == 4:  # the first step of epoch 2 (3 steps per epoch)
                os.kill(os.getpid(), signal.SIGTERM)
            return out

        return wrapped

    monkeypatch.setattr(loops.StepCache, "get", get)
    with pytest.raises(engine.TrainingInterrupted, match=r"SIGTERM received: checkpoint saved"):
        engine.fit(member_configs(), tmp_path, strategy="unrolled", log=lambda s: None)
    assert Checkpointer(tmp_path).latest_step() == 4
    monkeypatch.setattr(loops.StepCache, "get", real_get)
    resumed = engine.fit(member_configs(), tmp_path, strategy="unrolled", log=lambda s: None)
    for a, b in zip(full, resumed):
        assert without_times(a["history"]) == without_times(b["history"])
        assert (a["status"], a["test_loss"]) == (b["status"], b["test_loss"])
    recs = [json.loads(x) for x in (tmp_path / "members/0/metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in recs if x["kind"] == "epoch"] == [1, 2]


def test_population_refuses_structural_differences():
    cfgs = [config_lib.prepare(c) for c in member_configs()[:2]]
    other = config_lib.prepare(
        config_lib.apply_overrides(member_configs()[0], {"model.pool": "avg"})
    )
    with pytest.raises(ValueError, match=r"configs\[1\] differs .* \['model.pool'\]"):
        engine.check_population([cfgs[0], other])
    with pytest.raises(ValueError, match=r"configs=\[\] is empty"):
        engine.check_population([])
    no_drop = config_lib.prepare(
        config_lib.apply_overrides(member_configs()[0], {"model.dropout": 0.0})
    )
    with pytest.raises(ValueError, match=r"configs\[1\] differs .* \['model.dropout > 0'\]"):
        engine.check_population([cfgs[0], no_drop])
    engine.check_population(cfgs)  # rates, seeds, smoothing, momentum may differ
    with pytest.raises(ValueError, match=r"2 member_dirs for 3 configs"):
        engine.fit(member_configs(), "/tmp/unused", member_dirs=["a", "b"])


# ---------------------------------------------------------------- a model defined here


class TinyNet(nnx.Module):
    """conv(width)-relu-global average-dense: the zoo's signature, built from convjax.nn."""

    def __init__(self, input_shape, num_classes, *, rngs, width=4):
        self.conv = cnn.Conv(input_shape[-1], width, (3, 3), padding="SAME", rngs=rngs)
        self.head = cnn.Dense(width, num_classes, rngs=rngs)

    def __call__(self, x):
        return self.head(jnp.mean(cf.relu(self.conv(x)), axis=(1, 2)))


def user_config(**model):
    c = base()
    c.model = ml_collections.ConfigDict({"name": TinyNet, **model})
    c.num_epochs = 1
    c.train_subset = 192
    c.validation_size = 0
    c.figures = True
    return c


def test_user_model_through_engine_ablation_and_sweep(tmp_path):
    from convjax.train import run_ablation, run_sweep

    cfg = user_config()
    cfg.grad_health_every_steps = 1
    r = engine.train_and_evaluate(cfg, tmp_path / "run")
    assert r["num_params"] == 3 * 3 * 1 * 4 + 4 + 4 * 10 + 10 and r["status"] == "finished"
    for name in ("learning_curves.png", "gradient_health.png", "explanations.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000, name
    health = [
        json.loads(x)
        for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
        if '"kind": "health"' in x
    ]
    assert [h["step"] for h in health] == [1, 2, 3]
    assert set(health[0]["grad_norm"]) == {"conv", "head"}
    assert all(v > 0 for v in health[0]["update_to_param"].values())
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["name"].endswith(
        "TinyNet"
    )
    with pytest.raises(
        config_lib.ConfigError,
        match=r"unknown field 'model.widht' \(did you "
        r"mean 'model.width'\?\)",
    ):
        config_lib.prepare(user_config(widht=8))

    abl = ml_collections.ConfigDict(
        {
            "name": "width",
            "base": user_config(),
            "seeds": (0,),
            "variants": {"w4": {"model": {"width": 4}}, "w8": {"model": {"width": 8}}},
            "order": ("w4", "w8"),
        }
    )
    out = run_ablation(abl, tmp_path / "abl", stats_fn=lambda c: {}, log=lambda s: None)
    assert [row["variant"] for row in out["table"]] == ["w4", "w8"]
    assert (tmp_path / "abl" / "runs" / "w8" / "seed_0" / "results.json").exists()

    sweep = ml_collections.ConfigDict(
        {
            "name": "lr",
            "base": user_config(),
            "search": "grid",
            "metric": "test_accuracy",
            "space": (("learning_rate", (0.05, 0.2)),),
        }
    )
    out = run_sweep(sweep, tmp_path / "sweep", log=lambda s: None)
    assert [r["members"] for r in out["records"]] == [2, 2]  # one population of two
    assert (tmp_path / "sweep" / "trials" / "1" / "results.json").exists()
