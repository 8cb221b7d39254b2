"""Sweeps: search spaces (grid, random), grouping into populations, tables, best-config files."""

import csv
import importlib.util
import math
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from convjax.train import config as config_lib
from convjax.train import sweep_space as ss
from convjax.train.config_files import config_source
from convjax.train.runs import Run, group_runs


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


def _runs(trials, base):
    return [
        Run(f"t{i}", config_lib.apply_overrides(base, t), Path(f"/tmp/t{i}"))
        for i, t in enumerate(trials)
    ]


def test_group_runs_splits_on_structural_fields_only():
    base = tiny_base()
    trials = ss.grid_trials(
        (("learning_rate", (0.1, 0.2)), ("model.pool", ("max", "avg")), ("seed", (0, 1)))
    )
    groups = group_runs(_runs(trials, base))
    assert len(groups) == 2
    for idx in groups:
        assert len(idx) == 4 and len({trials[i]["model.pool"] for i in idx}) == 1
    assert sorted(i for idx in groups for i in idx) == list(range(8))
    assert len(group_runs(_runs(trials, base), ("seed",))) == 4  # learning rate now structural
    # a dropout rate is a population field, but rate 0 (no Dropout layer) is its own group
    drops = ss.grid_trials((("model.dropout", (0.0, 0.2, 0.5)),))
    assert group_runs(_runs(drops, base)) == [[0], [1, 2]]


def test_nest_and_flatten_are_inverses():
    flat = {"a.b": 1, "a.c": 2, "d": 3}
    assert config_lib.nest(flat) == {"a": {"b": 1, "c": 2}, "d": 3}
    assert config_lib.flatten(config_lib.nest(flat)) == flat


def test_config_source_round_trips(tmp_path):
    c = ml_collections.ConfigDict()
    c.seed = 3
    c.optimizer = ml_collections.ConfigDict({"learning_rate": 0.05, "name": "sgd"})
    c.model = ml_collections.ConfigDict({"widths": (32, 64), "pool": "max", "x": None})
    src = config_source(c, docstring="Best of sweep X.\n\n  cmd")
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
        config_source({"a": object()}, docstring="x")
    with pytest.raises(ValueError, match=r"field 'b' = nan is not finite"):
        config_source({"b": math.nan}, docstring="x")


# ---------------------------------------------------------------- real configs

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


@pytest.mark.parametrize(
    "name, sizes",
    [
        ("lr_smoothing", [12]),
        ("pooling_lr", [3, 3, 3]),
        ("random_optimizer", [8]),
        ("dropout_wd", [2, 6]),
        ("halving", [16]),
        ("pbt", [8]),
    ],
)
def test_ready_sweep_configs(name, sizes):
    from convjax.train import sweep

    for arg in (None, "smoke"):
        cfg, doc = load_cfg(f"configs/sweeps/{name}.py", arg)
        trials = sweep.expand_trials(cfg)
        assert [len(idx) for idx in group_runs(_runs(trials, cfg.base))] == sizes
    assert f"--config=configs/sweeps/{name}.py" in doc and "Expected time" in doc


class FakeFit:
    """fit's signature; val accuracy peaks at lr 0.1 and prefers avg pooling, test = val - 0.01."""

    def __init__(self):
        self.calls = []
        self.schedules = []

    def __call__(self, cfgs, workdir, *, member_dirs, strategy, mesh, log, **schedule):
        self.calls.append(len(cfgs))
        self.schedules.append(schedule)
        out = []
        for c, d in zip(cfgs, member_dirs):
            v = 0.9 - abs(c.learning_rate - 0.1) + (0.02 if c.model.pool == "avg" else 0.0)
            r = {
                "val_accuracy": v,
                "test_accuracy": v - 0.01,
                "epochs_run": 1,
                "members": len(cfgs),
                "status": "finished",
            }
            Path(d).mkdir(parents=True, exist_ok=True)
            (Path(d) / "results.json").write_text(__import__("json").dumps(r))
            out.append(r)
        return out


def test_run_sweep_tables_best_config_plots_and_resume(tmp_path):
    """run_sweep's bookkeeping with the engine replaced by a known function."""
    from convjax.train import sweep

    fake = FakeFit()
    cfg, _ = load_cfg("configs/sweeps/pooling_lr.py", "smoke")
    out = sweep.run_sweep(cfg, tmp_path, fit_fn=fake, log=lambda s: None)
    assert fake.calls == [3, 3, 3]
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
    sweep.run_sweep(cfg, tmp_path, fit_fn=fake, log=lambda s: None)  # all finished: no rerun
    assert fake.calls == [3, 3, 3]


def test_run_sweep_hands_its_schedule_to_every_population(tmp_path):
    from convjax.train import sweep

    fake = FakeFit()
    cfg, _ = load_cfg("configs/sweeps/halving.py", "halving_smoke")
    sweep.run_sweep(cfg, tmp_path, fit_fn=fake, log=lambda s: None, write_files=False)
    assert fake.calls == [16]
    assert fake.schedules == [{"halving": {"rung_epochs": (0.25, 1.0), "reduction_factor": 4}}]
    cfg, _ = load_cfg("configs/sweeps/pbt.py", "pbt_smoke")
    sweep.run_sweep(cfg, tmp_path / "pbt", fit_fn=fake, log=lambda s: None, write_files=False)
    assert set(fake.schedules[-1]) == {"pbt"} and fake.calls[-1] == 8


def test_sweep_config_errors():
    from convjax.train import sweep

    cfg, _ = load_cfg("configs/sweeps/lr_smoothing.py", "smoke")
    cfg.space = (("learning_rat", (0.1,)),)
    with pytest.raises(
        ValueError,
        match=r"space: unknown field 'learning_rat' \(did you mean "
        r"'learning_rate'\?\)",
    ):
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
