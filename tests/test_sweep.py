"""Sweeps: search spaces (grid, random), grouping into populations, best-config files."""

import csv
import importlib.util
import math
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from convjax.train import sweep_space as ss


def test_grid_is_the_cartesian_product_in_order():
    trials = ss.grid_trials((("lr", (0.1, 0.2)), ("model.pool", ("max", "avg", "l2"))))
    assert len(trials) == 6
    assert trials[0] == {"lr": 0.1, "model.pool": "max"}
    assert trials[3] == {"lr": 0.2, "model.pool": "max"}
    assert {(t["lr"], t["model.pool"]) for t in trials} == {
        (a, b) for a in (0.1, 0.2) for b in ("max", "avg", "l2")
    }


def test_random_draws_follow_their_distributions_and_seed():
    space = {
        "lr": {"dist": "log_uniform", "low": 1e-3, "high": 1.0},
        "ls": {"dist": "uniform", "low": 0.0, "high": 0.2},
        "seed": {"dist": "int_uniform", "low": 0, "high": 3},
        "pool": ("max", "avg"),
        "k": {"dist": "choice", "values": (3, 5)},
    }
    a = ss.random_trials(space, 400, seed=1)
    assert a == ss.random_trials(space, 400, seed=1)
    assert a != ss.random_trials(space, 400, seed=2)
    lr = np.array([t["lr"] for t in a])
    assert lr.min() >= 1e-3 and lr.max() <= 1.0
    # log-uniform: log10(lr) is uniform on [-3, 0], so its mean is near -1.5 (std of the
    # mean of 400 draws = 0.87/20 = 0.043)
    assert abs(np.log10(lr).mean() + 1.5) < 0.2
    assert {t["seed"] for t in a} == {0, 1, 2, 3}
    assert {t["pool"] for t in a} == {"max", "avg"} and {t["k"] for t in a} == {3, 5}
    assert all(0.0 <= t["ls"] <= 0.2 for t in a)


def test_group_trials_splits_on_structural_fields_only():
    trials = ss.grid_trials(
        (("optimizer.learning_rate", (0.1, 0.2)), ("model.pool", ("max", "avg")), ("seed", (0, 1)))
    )
    groups = ss.group_trials(trials, {"optimizer.learning_rate", "seed"})
    assert [g[0] for g in groups] == [{"model.pool": "max"}, {"model.pool": "avg"}]
    for structural, idx in groups:
        assert len(idx) == 4
        assert all(trials[i]["model.pool"] == structural["model.pool"] for i in idx)
    assert sorted(i for _, idx in groups for i in idx) == list(range(8))
    one = ss.group_trials(trials, {"optimizer.learning_rate", "seed", "model.pool"})
    assert len(one) == 1 and one[0][0] == {}
    # a dropout rate is a population field, but rate 0 (no Dropout layer) is its own group
    drops = ss.grid_trials((("model.dropout", (0.0, 0.2, 0.5)),))
    groups = ss.group_trials(drops, {"model.dropout"}, ("model.dropout",))
    assert groups == [({"model.dropout > 0": False}, [0]), ({"model.dropout > 0": True}, [1, 2])]


def test_nest():
    assert ss.nest({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}


def test_config_source_round_trips(tmp_path):
    c = ml_collections.ConfigDict()
    c.seed = 3
    c.optimizer = ml_collections.ConfigDict({"learning_rate": 0.05, "name": "sgd"})
    c.model = ml_collections.ConfigDict({"widths": (32, 64), "pool": "max", "x": None})
    src = ss.config_source(c, docstring="Best of sweep X.\n\n  cmd")
    path = tmp_path / "best.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("best", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    got = mod.get_config()
    assert got.to_dict() == c.to_dict() and got.is_locked
    assert mod.__doc__.startswith("Best of sweep X.")


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"space: it is empty"):
        ss.grid_trials(())
    with pytest.raises(ValueError, match=r"entry \('lr',\) must be a \(field_path, values\)"):
        ss.grid_trials((("lr",),))
    with pytest.raises(ValueError, match=r"repeat a path"):
        ss.grid_trials((("lr", (1,)), ("lr", (2,))))
    with pytest.raises(ValueError, match=r"space\['lr'\]=\(\): grid search needs a non-empty"):
        ss.grid_trials((("lr", ()),))
    with pytest.raises(ValueError, match=r"distributions only work with search='random'"):
        ss.grid_trials({"lr": {"dist": "uniform", "low": 0, "high": 1}})
    with pytest.raises(ValueError, match=r"dist='normal' is not one of"):
        ss.random_trials({"lr": {"dist": "normal"}}, 2)
    with pytest.raises(ValueError, match=r"low=1, high=0 must both be set with low <= high"):
        ss.random_trials({"lr": {"dist": "uniform", "low": 1, "high": 0}}, 2)
    with pytest.raises(ValueError, match=r"log_uniform needs low > 0, got low=0"):
        ss.random_trials({"lr": {"dist": "log_uniform", "low": 0, "high": 1}}, 2)
    with pytest.raises(ValueError, match=r"num_trials=0 must be a positive int"):
        ss.random_trials({"lr": (1,)}, 0)
    with pytest.raises(ValueError, match=r"search='bayes' must be 'grid' or 'random'"):
        ss.make_trials("bayes", {"lr": (1,)})
    with pytest.raises(ValueError, match=r"search='random' needs num_trials"):
        ss.make_trials("random", {"lr": (1,)})
    with pytest.raises(ValueError, match=r"field 'a' holds object"):
        ss.config_source({"a": object()}, docstring="x")
    with pytest.raises(ValueError, match=r"field 'b' = nan is not finite"):
        ss.config_source({"b": math.nan}, docstring="x")


# ---------------------------------------------------------------- populations of real configs

ROOT = Path(__file__).resolve().parents[1]


def load_cfg(rel, arg=None):
    spec = importlib.util.spec_from_file_location("cfg_" + rel.replace("/", "_"), ROOT / rel)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg), mod.__doc__


def tiny_base():
    base, _ = load_cfg("configs/default.py", "smoke")
    base.progress = False
    base.tensorboard = False
    base.verbose = False
    base.validation_size = 64
    base.train_subset = 256
    base.num_epochs = 1
    base.loop = "step"
    return base


def test_each_member_equals_train_and_evaluate_alone(tmp_path):
    """Members differing in lr, momentum, label smoothing, dropout rate and seed (so in init,
    data order, validation split and normalisation) trained as one population vs each alone."""
    from convjax.train import sweep, trainer
    from convjax.train.ablation import apply_overrides

    base = tiny_base()
    cfgs = [
        apply_overrides(
            base,
            {
                "learning_rate": lr,
                "seed": s,
                "label_smoothing": ls,
                "momentum": mo,
                "model": {"dropout": dr},
            },
        )
        for lr, s, ls, mo, dr in [(0.05, 0, 0.1, 0.9, 0.2), (0.2, 1, 0.0, 0.5, 0.5)]
    ]
    got = sweep.train_population(cfgs, strategy="unrolled", log=lambda s: None)
    for i, (c, r) in enumerate(zip(cfgs, got)):
        solo = trainer.train_and_evaluate(c, tmp_path / str(i))
        assert r["val_accuracy"] == solo["val_accuracy"]
        assert r["test_accuracy"] == solo["test_accuracy"]
        np.testing.assert_allclose(r["test_loss"], solo["test_loss"], rtol=1e-5)
        np.testing.assert_allclose(
            r["history"]["train_loss"], solo["history"]["train_loss"], rtol=1e-5
        )
        np.testing.assert_allclose(
            r["history"]["learning_rate"], solo["history"]["learning_rate"], rtol=1e-5
        )
        assert r["strategy"] == "unrolled" and r["members"] == 2


def test_population_refuses_structural_differences():
    from convjax.train import sweep
    from convjax.train.ablation import apply_overrides

    base = tiny_base()
    other = apply_overrides(base, {"model": {"pool": "avg"}})
    with pytest.raises(ValueError, match=r"configs\[1\] differs .* \['model.pool'\]"):
        sweep.train_population([base, other])
    with pytest.raises(ValueError, match=r"configs=\[\] is empty"):
        sweep.check_population([])
    # dropout rates may differ inside a population, dropout on/off may not
    no_drop, drop = (apply_overrides(base, {"model": {"dropout": r}}) for r in (0.0, 0.3))
    with pytest.raises(ValueError, match=r"configs\[1\] differs .* \['model.dropout > 0'\]"):
        sweep.check_population([no_drop, drop])
    sweep.check_population([drop, apply_overrides(base, {"model": {"dropout": 0.1}})])
    tta = apply_overrides(base, {"tta_flip": True})
    with pytest.raises(ValueError, match=r"config.tta_flip=True is not supported"):
        sweep.check_population([tta])


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("lr_smoothing", [12]),
        ("pooling_lr", [3, 3, 3]),
        ("random_optimizer", [8]),
        ("dropout_wd", [2, 6]),
    ],
)
def test_ready_sweep_configs(name, sizes):
    from convjax.train import sweep

    for arg in (None, "smoke"):
        cfg, doc = load_cfg(f"configs/sweeps/{name}.py", arg)
        trials = sweep.expand_trials(cfg)
        g = ss.group_trials(trials, sweep.POPULATION_FIELDS, sweep.PRESENCE_FIELDS)
        assert [len(idx) for _, idx in g] == sizes
    assert f"--config=configs/sweeps/{name}.py" in doc and "Expected time" in doc


def test_run_sweep_tables_best_config_plots_and_resume(tmp_path, monkeypatch):
    """run_sweep's bookkeeping with the population trainer replaced by a known function."""
    from convjax.train import sweep

    calls = []

    def fake(cfgs, strategy, mesh, log):
        calls.append(len(cfgs))
        # val accuracy peaks at lr 0.1 and prefers avg pooling, test = val - 0.01
        out = []
        for c in cfgs:
            v = 0.9 - abs(c.learning_rate - 0.1) + (0.02 if c.model.pool == "avg" else 0.0)
            out.append(
                {"val_accuracy": v, "test_accuracy": v - 0.01, "epochs_run": 1, "members": 3}
            )
        return out

    monkeypatch.setattr(sweep, "train_population", fake)
    cfg, _ = load_cfg("configs/sweeps/pooling_lr.py", "smoke")
    out = sweep.run_sweep(cfg, tmp_path, log=lambda s: None)
    assert calls == [3, 3, 3]
    ranked = out["records"]
    assert (ranked[0]["model.pool"], ranked[0]["learning_rate"]) == ("avg", 0.1)
    vals = [r["val_accuracy"] for r in ranked]
    assert vals == sorted(vals, reverse=True)
    md = (tmp_path / "results.md").read_text()
    assert md.index("| 1 | avg | 0.1 |") < md.index("| 2 |")
    spec = importlib.util.spec_from_file_location("best", tmp_path / "best_config.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    best = mod.get_config()
    assert best.model.pool == "avg" and best.learning_rate == 0.1
    assert best.to_dict() == {
        **cfg.base.to_dict(),
        "learning_rate": 0.1,
        "model": {**cfg.base.model.to_dict(), "pool": "avg"},
    }
    for f in ("metric_vs_model_pool.png", "metric_vs_learning_rate.png"):
        assert (tmp_path / f).stat().st_size > 1000
    with open(tmp_path / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == 9
    sweep.run_sweep(cfg, tmp_path, log=lambda s: None)  # every group finished: nothing reruns
    assert calls == [3, 3, 3]


def test_sweep_config_errors():
    from convjax.train import sweep

    cfg, _ = load_cfg("configs/sweeps/lr_smoothing.py", "smoke")
    cfg.space = (("learning_rat", (0.1,)),)
    with pytest.raises(ValueError, match=r"space: 'learning_rat' is not a field of the base"):
        sweep.expand_trials(cfg)
    cfg, _ = load_cfg("configs/sweeps/lr_smoothing.py", "smoke")
    cfg.base.validation_size = 0
    with pytest.raises(ValueError, match=r"metric='val_accuracy' needs base.validation_size"):
        sweep.expand_trials(cfg)
    cfg.metric = "loss"
    with pytest.raises(ValueError, match=r"metric='loss' must be 'val_accuracy' or"):
        sweep.expand_trials(cfg)
    cfg, _ = load_cfg("configs/sweeps/lr_smoothing.py", "smoke")
    cfg.population_fields = ("learning_rate", "model.pool")
    with pytest.raises(ValueError, match=r"population_fields has \['model.pool'\]"):
        sweep.run_sweep(cfg, "/tmp/unused", write_files=False)
    with pytest.raises(ValueError, match=r"arg='big' is not a preset"):
        load_cfg("configs/sweeps/lr_smoothing.py", "big")
