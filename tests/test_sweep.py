"""Sweeps: search spaces (grid, random), grouping into populations, best-config files."""

import importlib.util
import math

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
