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
from convjax.train import sweep_tables
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


def _fit_writing(record):
    """A stand-in for ``engine.fit`` that trains nothing: member k's results are
    ``record(k, config_k, configs)``, written to its ``results.json`` as the engine would."""
    import json

    def fit(cfgs, workdir, *, member_dirs, strategy, mesh, log, **schedule):
        out = []
        for k, (c, d) in enumerate(zip(cfgs, member_dirs)):
            r = record(k, c, cfgs)
            Path(d).mkdir(parents=True, exist_ok=True)
            (Path(d) / "results.json").write_text(json.dumps(r))
            out.append(r)
        return out

    return fit


def test_sweep_json_counts_member_epochs_and_shares_the_population_time(tmp_path):
    """A halving population of 16 in which 12 stop at 0.25 epochs, 3 at 1 and one finishes 3:
    sweep.json says 9 of 48 member-epochs and the population's 100 s once, not 16 times."""
    import json

    from convjax.train import sweep

    stops = [0.25] * 12 + [1.0] * 3 + [3.0]

    def record(k, c, cfgs):
        return {
            "val_accuracy": 0.5 + 0.01 * k,
            "test_accuracy": 0.5,
            "stopped_epoch": stops[k],
            "status": "finished" if stops[k] == 3.0 else "stopped",
            "train_time_s": 100.0,
            "members": len(cfgs),
        }

    fit = _fit_writing(record)

    cfg, _ = load_cfg("configs/sweeps/halving.py", "halving_smoke")
    out = sweep.run_sweep(cfg, tmp_path, fit_fn=fit, log=lambda s: None)
    got = json.loads((tmp_path / "sweep.json").read_text())
    assert got["member_epochs"] == pytest.approx(9.0)
    assert got["full_budget_member_epochs"] == 16 * cfg.base.num_epochs
    assert got["train_time_s"] == pytest.approx(100.0)
    assert got["best_trial"] == 15 == out["records"][0]["trial"]  # the one that finished


def test_pbt_sweep_tables_show_end_values_copies_and_schedules(tmp_path):
    """Trial 1 copies trial 0 at step 4 and takes its learning rate x 1.25: the table shows the
    start and end values and one copy, the CSV the raw end value, pbt_learning_rate.png is
    drawn, and best_config.py says the start values do not reproduce the run."""

    from convjax.train import sweep

    def record(k, c, cfgs):
        start = {"step": 0, "copied_from": None, "learning_rate": c.learning_rate,
                 "weight_decay": c.weight_decay}  # fmt: skip
        hs = [start]
        if k == 1:
            hs.append({**start, "step": 4, "copied_from": 0,
                       "learning_rate": cfgs[0].learning_rate * 1.25})  # fmt: skip
        return {"val_accuracy": 0.9 - 0.1 * k, "test_accuracy": 0.8, "status": "finished",
                "stopped_epoch": 2.0, "steps": 8, "members": len(cfgs),
                "hparam_schedule": hs}  # fmt: skip

    fit = _fit_writing(record)

    cfg, _ = load_cfg("configs/sweeps/pbt.py", "pbt_smoke")
    out = sweep.run_sweep(cfg, tmp_path, fit_fn=fit, log=lambda s: None)
    lr0 = next(r["learning_rate"] for r in out["records"] if r["trial"] == 0)
    md = (tmp_path / "results.md").read_text()
    assert "| learning_rate at end | copies |" in md  # weight decay never changed: no column
    row = next(line for line in md.splitlines() if line.startswith("| 2 |"))
    assert row.endswith(f"| {1.25 * lr0:.4g} | 1 |")
    with open(tmp_path / "results.csv") as f:
        rows = {r["trial"]: r for r in csv.DictReader(f)}
    assert float(rows["1"]["learning_rate_end"]) == pytest.approx(1.25 * lr0)
    assert rows["0"]["copies"] == "0" and rows["1"]["copies"] == "1"
    assert (tmp_path / "pbt_learning_rate.png").stat().st_size > 1000
    assert not (tmp_path / "pbt_weight_decay.png").exists()
    assert (
        "training this config alone is a different run" in (tmp_path / "best_config.py").read_text()
    )


def test_pbt_schedule_figure_draws_every_member_to_the_end():
    from convjax.train.schedules import pbt_schedule_figure

    schedules = [
        [{"step": 0, "copied_from": None, "learning_rate": 0.1}],
        [
            {"step": 0, "copied_from": None, "learning_rate": 0.2},
            {"step": 5, "copied_from": 0, "learning_rate": 0.125},
        ],
    ]
    fig = pbt_schedule_figure(schedules, "learning_rate", 10, total_steps=20, labels=["a", "b"])
    ax = fig.axes[0]
    a, b, dots = ax.lines  # two step lines, then the copy's dot
    assert list(a.get_xdata()) == [0.0, 2.0] and list(b.get_xdata()) == [0.0, 0.5, 2.0]
    assert list(dots.get_xdata()) == [0.5] and list(dots.get_ydata()) == [0.125]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]


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


class SeedFit:
    """fit's signature; validation accuracy per (learning rate, seed) from a table: lr 0.1
    gives 0.90, 0.92, 0.91 on seeds 0, 1, 2; lr 0.05 gives 0.87, 0.90, 0.90 (3, 2 and 1
    points below). Test accuracy = validation - 0.01."""

    VAL = {(0.1, 0): 0.90, (0.1, 1): 0.92, (0.1, 2): 0.91}
    VAL.update({(0.05, 0): 0.87, (0.05, 1): 0.90, (0.05, 2): 0.90})

    def __call__(self, cfgs, workdir, *, member_dirs, strategy, mesh, log):
        out = []
        for c, d in zip(cfgs, member_dirs):
            v = self.VAL[(c.learning_rate, c.seed)]
            r = {"val_accuracy": v, "test_accuracy": v - 0.01, "epochs_run": 1}
            r.update(members=len(cfgs), status="finished")
            Path(d).mkdir(parents=True, exist_ok=True)
            (Path(d) / "results.json").write_text(__import__("json").dumps(r))
            out.append(r)
        return out


def seed_sweep(space):
    cfg, _ = load_cfg("configs/sweeps/lr_smoothing.py", "smoke")
    cfg.space = space
    return cfg


def test_sweep_over_seeds_compares_configurations_with_the_best(tmp_path):
    from convjax.train import sweep

    cfg = seed_sweep((("learning_rate", (0.05, 0.1)), ("seed", (0, 1, 2))))
    out = sweep.run_sweep(cfg, tmp_path, fit_fn=SeedFit(), log=lambda s: None)
    assert len(out["records"]) == 6
    md = (tmp_path / "results.md").read_text()
    head = "| rank | learning_rate | seeds | val acc (%) | test acc (%) | Δ vs best (points) |"
    assert head in md
    # best: lr 0.1, mean 91.00 ± 1.00 (0.90, 0.92, 0.91). lr 0.05 - best per seed: -3, -2, -1
    # points: mean -2, bootstrap interval of 3 differences = their range [-3, -1];
    # t = -2 / (1 / sqrt(3)) = -3.464 with 2 degrees of freedom, two-sided p =
    # 1 - |t| / sqrt(2 + t^2) = 0.074; Wilcoxon 2 / 2^3 = 0.25; std of the differences 1
    # point, 10x the 0.1-point target: 787 seeds (normal formula 784.9)
    assert "| 1 | 0.1 | 3 | 91.00 ± 1.00 | 90.00 ± 1.00 | best | - | - | - | - |" in md
    assert (
        "| 2 | 0.05 | 3 | 89.00 ± 1.73 | 88.00 ± 1.73 | -2.00 | [-3.00, -1.00] | 0.074 | 0.25 "
        "| 787 |" in md
    )
    assert "picked on these same val_accuracy numbers" in md
    with open(tmp_path / "configurations.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["rank"], r["learning_rate"], r["trials"]) for r in rows] == [
        ("1", "0.1", "3 4 5"),
        ("2", "0.05", "0 1 2"),
    ]
    assert float(rows[1]["t_pvalue"]) == pytest.approx(1 - 2 * math.sqrt(3) / math.sqrt(14))
    assert float(rows[1]["diff_ci_high"]) == pytest.approx(-0.01, abs=1e-12)
    assert rows[0]["diff_mean"] == "" and rows[1]["seeds_for_0.1_point"] == "787"
    # the per-trial table is still there, best trial first
    assert md.index("| 1 | 0.1 | 1 | 92.00 | 91.00 | finished |") < md.index("#### configurations")


def test_sweep_statistics_need_two_seeds_per_configuration(tmp_path):
    from convjax.train import sweep

    # one seed per configuration
    cfg = seed_sweep((("learning_rate", (0.05, 0.1)), ("seed", (1,))))
    sweep.run_sweep(cfg, tmp_path / "a", fit_fn=SeedFit(), log=lambda s: None)
    md = (tmp_path / "a" / "results.md").read_text()
    assert "Statistics need at least two seeds per configuration; here every" in md
    assert not (tmp_path / "a" / "configurations.csv").exists()
    # no seed in the space at all (the pooling x learning rate sweep)
    fake = FakeFit()
    cfg, _ = load_cfg("configs/sweeps/pooling_lr.py", "smoke")
    sweep.run_sweep(cfg, tmp_path / "b", fit_fn=fake, log=lambda s: None)
    md = (tmp_path / "b" / "results.md").read_text()
    assert "Statistics need at least two seeds per configuration; this sweep does not vary" in md
    # a trial without the metric (diverged) is left out of its configuration, with a note
    ranked = [
        {"trial": 0, "lr": 0.1, "seed": 0, "val_accuracy": 0.9, "test_accuracy": 0.9},
        {"trial": 1, "lr": 0.1, "seed": 1, "val_accuracy": None, "test_accuracy": None},
        {"trial": 2, "lr": 0.2, "seed": 0, "val_accuracy": 0.8, "test_accuracy": 0.8},
        {"trial": 3, "lr": 0.2, "seed": 1, "val_accuracy": 0.7, "test_accuracy": 0.7},
    ]
    got = sweep_tables.compare_configurations(ranked, ["lr", "seed"], "val_accuracy")
    assert [(r["lr"], r["seeds"]) for r in got["rows"]] == [(0.1, 1), (0.2, 2)]
    assert got["notes"][0] == "trial 1 (seed 1) has no val_accuracy: left out"
    # the runner-up shares one seed with the best: a difference, but no statistics
    assert got["rows"][1]["comparison"].n == 1 and got["rows"][1]["diff_mean"] is None
    md = sweep_tables.configurations_markdown(got, ["lr", "seed"], "val_accuracy")
    assert "| 2 | 0.2 | 2 | 75.00 ± 7.07 | 75.00 ± 7.07 | - | - | - | - | - |" in md


def test_log_axis_labels_the_swept_values_and_nothing_between():
    from convjax.train import report

    fig = report.metric_vs_field_figure(
        [0.025, 0.05, 0.1, 0.2] * 2, [0.5] * 8, "learning_rate", "val_accuracy"
    )
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    np.testing.assert_allclose(ax.get_xticks(), [0.025, 0.05, 0.1, 0.2])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0.025", "0.05", "0.1", "0.2"]
    assert not [t for t in ax.get_xticklabels(minor=True) if t.get_text()]


def test_trials_a_schedule_stopped_are_drawn_hollow():
    from convjax.train import report

    fig = report.metric_vs_field_figure(
        [0.05, 0.1, 0.2],
        [0.9, 0.8, 0.7],
        "learning_rate",
        "val_accuracy",
        stopped=[False, True, True],
    )
    filled, hollow = fig.axes[0].collections
    assert len(filled.get_offsets()) == 1 and len(hollow.get_offsets()) == 2
    assert hollow.get_facecolors().size == 0  # no fill: measured at a smaller budget
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "trained to the end",
        "stopped early (at its last rung)",
    ]
