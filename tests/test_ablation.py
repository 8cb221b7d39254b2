"""Ablation runner: variants x seeds, resume without rerunning, tables, plots, errors.

A fake ``fit`` (records its calls, writes each member's results JSON like the engine) keeps
these tests fast; the real end-to-end run is in test_ablate_script_smoke (slow).
"""

import csv
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import ml_collections
import numpy as np
import pytest

from convjax.train import ablation, ablation_tables
from convjax.train import config as config_lib
from convjax.train.config_files import load_config

ROOT = Path(__file__).resolve().parents[1]


def base_config():
    c = load_config(ROOT / "configs" / "default.py", "smoke")
    c.model.dilation = 1
    c.lock()
    return c


def ablation_config(seeds=(0, 1, 2)):
    c = ml_collections.ConfigDict()
    c.name = "toy pooling"
    c.base = base_config()
    c.variants = {"max": {}, "avg": {"model": {"pool": "avg"}}, "d2": {"model": {"dilation": 2}}}
    c.order = ("max", "avg", "d2")
    c.seeds = seeds
    c.seed_field = "seed"
    return c


class FakeFit:
    """fit's signature; accuracy = f(variant, seed), known in advance, so the table can be
    checked by hand. ``fail_on`` (pool, dilation, seed) raises before anything is written.

    Seeds 0, 1, 2 give max 0.90, 0.91, 0.92; avg 0.87, 0.89, 0.91 (0.03, 0.02, 0.01 below
    max); d2 0.80, 0.81, 0.82 (0.10 below max on every seed)."""

    ACC = {"max": 0.90, "avg": 0.87, "d2": 0.80}
    STEP = {"max": 0.01, "avg": 0.02, "d2": 0.01}

    def __init__(self, fail_on=None):
        self.calls = []
        self.fail_on = fail_on

    def __call__(self, cfgs, workdir, *, member_dirs, strategy, mesh, log):
        keys = [(c.model.pool, c.model.dilation, c.seed) for c in cfgs]
        self.calls.append(keys)
        if self.fail_on in keys:
            raise KeyboardInterrupt("simulated interruption")
        out = []
        for c, d in zip(cfgs, member_dirs):
            name = "d2" if c.model.dilation == 2 else c.model.pool
            acc = self.ACC[name] + self.STEP[name] * c.seed
            res = {
                "test_accuracy": acc,
                "train_time_s": 10.0 + c.seed,
                "images_per_s": 100.0,
                "history": {"val_accuracy": [acc - 0.1, acc - 0.05, acc]},
            }
            Path(d).mkdir(parents=True, exist_ok=True)
            with open(Path(d) / "results.json", "w") as f:
                json.dump(res, f)
            out.append(res)
        return out


def stats(config):
    return {"params": 1000 * config.model.dilation, "flops": 2_000_000, "receptive_field": (5, 5)}


def test_runs_every_variant_and_seed_and_writes_tables(tmp_path):
    fit = FakeFit()
    out = ablation.run_ablation(
        ablation_config(), tmp_path, fit_fn=fit, stats_fn=stats, log=lambda s: None
    )
    # one population per variant, its three seeds together
    assert fit.calls == [
        [(p, d, s) for s in (0, 1, 2)] for p, d in [("max", 1), ("avg", 1), ("max", 2)]
    ]
    rows = {r["variant"]: r for r in out["table"]}
    assert list(rows) == ["max", "avg", "d2"]
    # mean of 0.90, 0.91, 0.92 and its sample std (ddof=1) = 0.01
    assert rows["max"]["test_accuracy_mean"] == pytest.approx(0.91)
    assert rows["max"]["test_accuracy_std"] == pytest.approx(0.01)
    assert rows["d2"]["params"] == 2000 and rows["max"]["train_time_s"] == pytest.approx(11.0)
    # t-interval of max's mean: 0.91 ± t_{0.975,2} * 0.01 / sqrt(3) = 0.91 ± 4.302653 * 0.005774
    assert rows["max"]["test_accuracy_ci_low"] == pytest.approx(0.91 - 0.0248414, abs=1e-7)
    md = (tmp_path / "results.md").read_text()
    # avg - max per seed: -3, -2, -1 points. Mean -2; the bootstrap interval of 3 differences
    # is their range, [-3, -1]. t = -2 / (1 / sqrt(3)) = -3.4641 with 2 degrees of freedom,
    # whose two-sided p is closed-form, 1 - |t| / sqrt(2 + t^2) = 1 - 3.4641 / 3.7417 = 0.074.
    # Wilcoxon: all three of one sign, 2 / 2^3 = 0.25. Seeds: the std of the differences is
    # 1 point, 10x the 0.1-point target: normal formula 7.849 * 10^2 = 784.9, the t-test's
    # exact power needs 787. d2 - max is -10 points on every seed: no spread, so no t-test
    # and no seeds figure.
    assert (
        "| avg | 89.00 ± 2.00 | 3 | 1.00k | 2.00M | 5x5 | 11.0 | 100 | -2.00 | [-3.00, -1.00] "
        "| 0.074 | 0.25 | 787 |" in md
    )
    assert "| max | 91.00 ± 1.00 | 3 | 1.00k | 2.00M | 5x5 | 11.0 | 100 | baseline | - |" in md
    assert "| 2.00k | 2.00M | 5x5 | 11.0 | 100 | -10.00 | [-10.00, -10.00] | - | 0.25 | - |" in md
    assert "| Δ vs max (points) | 95% CI of Δ | t-test p | Wilcoxon p | seeds for 0.1 point |" in md
    assert "Wilcoxon p cannot fall below 0.25" in md and "only 10 distinct resamples" in md
    assert "- d2: the differences are identical on every seed (std 0)" in md
    with open(tmp_path / "results.csv") as f:
        got = list(csv.DictReader(f))
    assert [r["variant"] for r in got] == ["max", "avg", "d2"]
    assert float(got[2]["test_accuracy_mean"]) == pytest.approx(0.81)
    t_p = 1 - 2 * math.sqrt(3) / math.sqrt(2 + 12)
    assert float(got[1]["t_pvalue"]) == pytest.approx(t_p, rel=1e-9)
    assert float(got[1]["diff_mean"]) == pytest.approx(-0.02, abs=1e-12)
    assert float(got[1]["diff_ci_low"]) == pytest.approx(-0.03, abs=1e-12)
    assert (got[1]["wilcoxon_pvalue"], got[1]["seeds_for_0.1_point"]) == ("0.25", "787")
    assert (got[0]["baseline"], got[0]["diff_mean"], got[1]["paired_seeds"]) == ("max", "", "3")
    with open(tmp_path / "runs.csv") as f:
        assert len(list(csv.DictReader(f))) == 9
    for name in ("accuracy.png", "differences.png", "learning_curves.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tmp_path / "runs" / "avg" / "seed_2" / "results.json").exists()
    assert out["runs"][0]["curve"] == [(1.0, pytest.approx(0.8)), (2.0, 0.85), (3.0, 0.9)]


def test_named_baseline_and_tables_rebuilt_from_runs_csv(tmp_path):
    cfg = ablation_config()
    cfg.baseline = "avg"
    out = ablation.run_ablation(cfg, tmp_path, fit_fn=FakeFit(), stats_fn=stats, log=print)
    rows = {r["variant"]: r for r in out["table"]}
    # max - avg per seed: +3, +2, +1 points
    assert rows["max"]["diff_mean"] == pytest.approx(0.02, abs=1e-12)
    assert rows["avg"]["comparison"] is None and rows["avg"]["baseline"] == "avg"
    first = {n: (tmp_path / n).read_text() for n in ("results.md", "results.csv")}
    curves = (tmp_path / "learning_curves.png").read_bytes()
    for name in ("results.md", "results.csv", "accuracy.png", "differences.png"):
        (tmp_path / name).unlink()
    rebuilt = ablation_tables.tables_from_runs(
        tmp_path / "runs.csv", baseline="avg", title="toy pooling"
    )
    # the CSV round trip (str of a float, read back) loses nothing the tables print
    assert {n: (tmp_path / n).read_text() for n in ("results.md", "results.csv")} == first
    assert (tmp_path / "differences.png").exists() and "learning_curves.png" not in rebuilt["files"]
    assert (tmp_path / "learning_curves.png").read_bytes() == curves
    # default baseline: the first variant in the file; title: the folder's name
    again = ablation_tables.tables_from_runs(tmp_path)
    assert again["table"][0]["baseline"] == "max"
    assert (tmp_path / "results.md").read_text().startswith(f"### {tmp_path.name}\n")


def test_resume_skips_finished_runs(tmp_path):
    cfg = ablation_config(seeds=(0, 1))
    fit = FakeFit(fail_on=("avg", 1, 1))
    with pytest.raises(KeyboardInterrupt):
        ablation.run_ablation(cfg, tmp_path, fit_fn=fit, stats_fn=stats, log=lambda s: None)
    assert len(fit.calls) == 2  # max (both seeds), then avg interrupted
    fit2 = FakeFit()
    out = ablation.run_ablation(cfg, tmp_path, fit_fn=fit2, stats_fn=stats, log=print)
    # only the interrupted group and the one never started are trained again
    assert fit2.calls == [[("avg", 1, 0), ("avg", 1, 1)], [("max", 2, 0), ("max", 2, 1)]]
    assert len(out["runs"]) == 6
    fit3 = FakeFit()
    ablation.run_ablation(cfg, tmp_path, fit_fn=fit3, stats_fn=stats, log=lambda s: None)
    assert fit3.calls == []
    # populations=False: every run alone
    fit4 = FakeFit()
    cfg.populations = False
    ablation.run_ablation(cfg, tmp_path / "alone", fit_fn=fit4, stats_fn=stats, log=print)
    assert all(len(call) == 1 for call in fit4.calls) and len(fit4.calls) == 6


def test_apply_overrides_nested_and_dotted():
    b = base_config()
    c = config_lib.apply_overrides(b, {"model": {"pool": "l2"}, "learning_rate": 0.5})
    assert (c.model.pool, c.learning_rate, b.model.pool) == ("l2", 0.5, "max")
    c2 = config_lib.apply_overrides(b, {"model.dilation": 4})
    assert c2.model.dilation == 4 and c2.is_locked
    # a model argument the base does not spell out, and a run field it leaves to the default
    c3 = config_lib.apply_overrides(b, {"model.kernel_size": 5, "ema_decay": 0.9})
    assert c3.model.kernel_size == 5 and c3.ema_decay == 0.9


def test_errors_name_the_field():
    b = base_config()
    with pytest.raises(ValueError, match=r"unknown field 'model.pol' \(did you mean 'model.pool'"):
        config_lib.apply_overrides(b, {"model": {"pol": "avg"}})
    with pytest.raises(ValueError, match=r"variants\['x'\]: unknown field 'learning_rat'"):
        bad = ablation_config()
        bad.order = None
        bad.variants = {"x": {"learning_rat": 1.0}}
        ablation.expand_runs(bad)
    c = ablation_config()
    del c["seeds"]
    with pytest.raises(ValueError, match=r"field 'seeds' is missing"):
        ablation.expand_runs(c)
    c = ablation_config(seeds=())
    with pytest.raises(ValueError, match=r"seeds=\(\) must be a non-empty tuple of ints"):
        ablation.expand_runs(c)
    c = ablation_config(seeds=(1, 1))
    with pytest.raises(ValueError, match=r"seeds=\(1, 1\) repeats a seed"):
        ablation.expand_runs(c)
    c = ablation_config()
    c.order = None
    c.variants = {}
    with pytest.raises(ValueError, match=r"variants=\{\} must be a non-empty dict"):
        ablation.expand_runs(c)
    c = ablation_config()
    c.order = None
    c.variants = {"a/b": {}}
    with pytest.raises(ValueError, match=r"variant name 'a/b' is not usable as a folder"):
        ablation.expand_runs(c)
    c = ablation_config()
    c.order = ("max", "avg")
    with pytest.raises(ValueError, match=r"order=\('max', 'avg'\) must list each variant once"):
        ablation.expand_runs(c)
    c = ablation_config()
    c.seed_field = "rng"
    with pytest.raises(ValueError, match=r"seed_field='rng' is not a field of base"):
        ablation.expand_runs(c)
    c = ablation_config()
    c.baseline = "min"
    with pytest.raises(ValueError, match=r"baseline='min' is not a variant; use one of"):
        ablation.expand_runs(c)


def test_summary_and_rebuild_errors(tmp_path):
    recs = [{"variant": "a", "seed": 0, "test_accuracy": 0.5}]
    with pytest.raises(ValueError, match=r"baseline='b' is not a variant of these runs"):
        ablation_tables.summarize(recs, baseline="b")
    with pytest.raises(ValueError, match=r"records is empty"):
        ablation_tables.summarize([])
    with pytest.raises(ValueError, match=r"runs='.*nowhere.csv' is not a file; pass the runs.csv"):
        ablation_tables.tables_from_runs(tmp_path / "nowhere.csv")
    (tmp_path / "runs.csv").write_text("name,acc\na,0.5\n")
    with pytest.raises(ValueError, match=r"lacks the columns \['variant', 'seed', 'test_acc"):
        ablation_tables.tables_from_runs(tmp_path)


def test_single_seed_prints_no_spread(tmp_path):
    recs = [
        {"variant": "a", "test_accuracy": 0.5, "train_time_s": 1, "images_per_s": 2, "curve": []}
    ]
    rows = ablation_tables.summarize(recs)
    assert rows[0]["test_accuracy_std"] is None and np.isclose(rows[0]["test_accuracy_mean"], 0.5)
    ablation_tables.write_outputs(rows, recs, tmp_path)
    md = (tmp_path / "results.md").read_text()
    assert "| a | 50.00 | 1 |" in md and "±" not in md
    # two variants, one seed each: no statistics, a dash in every column, and no picture of
    # differences
    recs.append({**recs[0], "variant": "b", "test_accuracy": 0.6})
    rows = ablation_tables.summarize(recs)
    files = ablation_tables.write_outputs(rows, recs, tmp_path / "two")
    md = (tmp_path / "two" / "results.md").read_text()
    assert "| b | 60.00 | 1 | - | - | - | 1.0 | 2 | - | - | - | - | - |" in md
    assert "Statistics against a: none, one seed per variant" in md
    assert "differences.png" not in files


# ---------------------------------------------------------------- the ready configs and script

ABLATIONS = ("pooling", "dilation", "kernel_size", "padding", "depth")


def load_ablation(name, arg=None):
    path = ROOT / "configs" / "ablations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"abl_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config(arg), mod.__doc__


@pytest.mark.parametrize("name", ABLATIONS)
def test_ready_configs_expand_and_document_their_command(name):
    for arg in (None, "quick", "smoke"):
        cfg, doc = load_ablation(name, arg)
        runs = ablation.expand_runs(cfg)  # every override names an existing base field
        assert len(runs) == len(cfg.variants) * len(cfg.seeds)
        assert len(cfg.seeds) >= (2 if arg == "smoke" else 3)
    assert f"--config=configs/ablations/{name}.py" in doc and "Expected time" in doc
    with pytest.raises(ValueError, match=r"arg='fast' is not a preset"):
        load_ablation(name, "fast")


def test_pooling_and_dilation_variants_change_the_model():
    cfg, _ = load_ablation("pooling")
    pools = [run.config.model.pool for _, _, run in ablation.expand_runs(cfg)[::3]]
    assert pools == ["max", "avg", "l2", "none"]
    cfg, _ = load_ablation("dilation", "quick")
    runs = [run for _, _, run in ablation.expand_runs(cfg)]
    assert [r.config.model.dilation for r in runs[::3]] == [1, 2, 4]
    assert runs[0].config.num_epochs == 2 and runs[0].config.train_subset == 4000


def test_model_stats_params_and_receptive_field():
    cfg, _ = load_ablation("dilation")
    runs = [run for _, _, run in ablation.expand_runs(cfg)]
    s1 = ablation.model_stats(runs[0].config)
    s2 = ablation.model_stats(runs[3].config)
    # conv32-conv32-pool-conv64-conv64-pool-fc256-fc10 with BN (layers before a BN have no
    # bias): 288 + 9216 + 18432 + 36864 conv kernels, 2*(32+32+64+64) BN scale/offset,
    # 3136*256 hidden FC, 2*256 BN, 256*10+10 classifier
    assert s1["params"] == 288 + 9216 + 18432 + 36864 + 384 + 3136 * 256 + 512 + 2570
    assert s2["params"] == s1["params"]  # dilation adds no weights
    # RF, d = 1: 3, 5, pool 6, then jump 2: 10, 14, pool 16.  d = 2 (taps 5 apart by 1):
    # 5, 9, pool 10, jump 2: 18, 26, pool 28.
    assert s1["receptive_field"] == (16, 16) and s2["receptive_field"] == (28, 28)
    assert s1["flops"] > 2 * 19e6  # about 19.1 M multiply-adds, 2 FLOPs each


@pytest.mark.slow
def test_ablate_script_smoke_runs_and_resumes(tmp_path):
    """experiments/ablate.py end to end on the smoke preset, 2 variants x 2 seeds (~1-2 min)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        str(ROOT / "experiments" / "ablate.py"),
        f"--config={ROOT}/configs/ablations/padding.py:smoke",
        f"--workdir={tmp_path}",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("results.md", "results.csv", "runs.csv", "accuracy.png", "learning_curves.png"):
        assert (tmp_path / name).exists()
    assert "| valid |" in (tmp_path / "results.md").read_text()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.count("finished earlier") == 4
