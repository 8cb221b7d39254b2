"""Successive halving and population-based training inside one population: the decisions by
hand, the members dropped and their steps reclaimed, survivors equal to their solo runs, exact
resume, PBT's copies and bounded perturbations, every config error."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from convjax.train import engine, loops
from convjax.train import population as pop
from convjax.train.checkpoint import Checkpointer
from convjax.train.config import apply_overrides
from convjax.train.config_files import load_config
from convjax.train.schedules import PBT, Halving, make_schedule

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------- decisions by hand


def test_halving_keeps_the_best_fraction_with_stable_ties():
    h = Halving(rungs=(2, 4), reduction_factor=2)
    assert h.survivors({0: 0.5, 1: 0.9, 2: 0.7, 3: 0.9}) == [1, 3]  # the two 0.9s
    assert h.survivors({5: 0.1, 7: 0.1, 9: 0.1}) == [5]  # 3 // 2 = 1; tie -> lower index
    assert Halving((2,), 3, "val_loss").survivors({0: 0.3, 1: 0.1, 2: 0.2}) == [1]
    assert Halving((2,), 4).survivors({0: 0.1, 1: 0.2}) == [1]  # at least one survives


def test_pbt_bottom_copies_top_and_perturbs_within_bounds():
    p = PBT(
        interval=3,
        fraction=0.25,
        fields=("learning_rate", "label_smoothing"),
        factors=(0.5, 2.0),
        bounds={"label_smoothing": (0.0, 0.15)},
        seed=1,
    )
    values = {0: 0.9, 1: 0.2, 2: 0.5, 3: 0.6, 4: 0.1, 5: 0.95, 6: 0.4, 7: 0.3}
    hp = {m: {"learning_rate": 0.1 * (m + 1), "label_smoothing": 0.1} for m in values}
    out = p.exploit_explore(6, values, hp)
    # ceil(0.25 * 8) = 2: the two worst (4: 0.1, 1: 0.2) copy from the two best (5, 0)
    assert sorted(m for m, _, _ in out) == [1, 4]
    for _, source, new in out:
        assert source in (0, 5)
        assert new["learning_rate"] / hp[source]["learning_rate"] in (0.5, 2.0)
        assert new["label_smoothing"] in (0.05, 0.15)  # 0.1 * 0.5, or 0.2 clipped to 0.15
    assert out == p.exploit_explore(6, values, hp)  # a function of (seed, step)
    assert p.event_steps(10) == (3, 6, 9)
    assert PBT(interval=1).exploit_explore(1, {0: 1.0}, {0: {"learning_rate": 1.0}}) == []


def test_make_schedule_forms_and_errors():
    kw = dict(steps_per_epoch=10, num_epochs=3, members=8, has_validation=True)
    assert make_schedule(None, None, **kw) is None
    assert make_schedule({"rung_epochs": (0.25, 1.0)}, None, **kw).rungs == (2, 10)  # 2.5 -> 2
    assert make_schedule({"rung_steps": (3, 9)}, None, **kw).rungs == (3, 9)
    # min_epochs times powers of the reduction factor below 30 steps: 0.5, 1.5 epochs
    auto = make_schedule({"min_epochs": 0.5, "reduction_factor": 3}, None, **kw)
    assert auto.rungs == (5, 15) and auto.reduction_factor == 3
    pbt = make_schedule(
        None,
        {"interval_epochs": 1, "fields": ("momentum",), "bounds": (("momentum", 0.5, 0.99),)},
        **kw,
    )
    assert pbt.interval == 10 and pbt.bounds == {"momentum": (0.5, 0.99)}
    bad = [
        ({"rung_steps": (2,)}, {"interval_steps": 2}, r"halving and pbt are both set"),
        ({"rungs": (2,)}, None, r"halving has unknown keys \['rungs'\]"),
        ({"rung_steps": (2,), "reduction_factor": 1}, None, r"reduction_factor=1 must be an int"),
        ({"rung_steps": (40,)}, None, r"rungs \[40\] \(in steps\) must increase strictly inside"),
        ({"rung_steps": (5, 3)}, None, r"rungs \[5, 3\]"),
        ({"rung_steps": (2,), "metric": "test_accuracy"}, None, r"metric='test_accuracy' must"),
        (None, {"interval_steps": 2, "fields": ("dropout",)}, r"pbt.fields has \['dropout'\]"),
        (None, {"interval_steps": 2, "fraction": 0.7}, r"pbt.fraction=0.7 must be in \(0, 0.5\]"),
        (None, {"fraction": 0.2}, r"pbt needs one interval_steps or interval_epochs"),
    ]
    for halving, pbt_spec, message in bad:
        with pytest.raises(ValueError, match=message):
            make_schedule(halving, pbt_spec, **kw)
    with pytest.raises(ValueError, match=r"base.validation_size is 0"):
        make_schedule({"rung_steps": (2,)}, None, **{**kw, "has_validation": False})
    with pytest.raises(ValueError, match=r"pbt needs a population of at least 2, got 1"):
        make_schedule(None, {"interval_steps": 2}, **{**kw, "members": 1})


# ---------------------------------------------------------------- in the engine


def base():
    c = load_config(f"{ROOT}/configs/default.py", "smoke")
    c.model.widths = (4, 8)
    c.model.fc_widths = (16,)
    c.model.head_scheme = "he_normal"
    c.progress = False
    c.verbose = False
    c.tensorboard = False
    c.figures = False
    c.validation_size = 64
    c.train_subset = 256  # 192 training images: 3 steps of 64 per epoch, 6 in the run
    c.loop = "step"
    return c


RATES = (0.02, 0.05, 0.1, 0.3)


def configs():
    return [apply_overrides(base(), {"learning_rate": r}) for r in RATES]


class CallLog:
    """Records how many members each train call stepped (the device work)."""

    def __init__(self, monkeypatch, kill_at=None):
        self.members = []
        self.kill_at = kill_at
        real = loops.StepCache.get

        def get(cache, n):
            fn = real(cache, n)

            def wrapped(states, images, labels, orders, *rest):
                out = fn(states, images, labels, orders, *rest)
                self.members += [orders.shape[0] if orders.ndim == 3 else 1] * n
                if self.kill_at is not None and len(self.members) == self.kill_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                return out

            return wrapped

        monkeypatch.setattr(loops.StepCache, "get", get)


HALVING = {"rung_steps": (2, 4), "reduction_factor": 2}


@pytest.fixture(scope="module")
def halved(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    calls = CallLog(mp)
    wd = tmp_path_factory.mktemp("halving")
    try:
        results = engine.fit(
            configs(), wd, strategy="unrolled", halving=HALVING, log=lambda s: None
        )
    finally:
        mp.undo()
    return wd, results, calls.members


def test_halving_drops_members_and_their_steps(halved):
    wd, results, members = halved
    # 4 members for steps 1-2, 2 for steps 3-4, 1 for steps 5-6: 14 member-steps, not 24
    assert members == [4, 4, 2, 2, 1, 1]
    stopped = [r for r in results if r["status"] == "stopped"]
    assert sorted(r["steps"] for r in stopped) == [2, 2, 4]
    (winner,) = [r for r in results if r["status"] == "finished"]
    assert winner["steps"] == 6 and winner["stopped_epoch"] == 2.0
    # the rung at step 2 stopped two members inside epoch 1: one partial epoch record each
    for r in stopped:
        assert len(r["history"]["val_accuracy"]) == (1 if r["steps"] == 2 else 2)
        assert r["test_accuracy"] is not None
    assert sum(r["stopped_epoch"] for r in results) == pytest.approx(14 / 3)


def test_survivor_equals_its_solo_run(halved, tmp_path):
    _, results, _ = halved
    i = next(i for i, r in enumerate(results) if r["status"] == "finished")
    solo = engine.train_and_evaluate(configs()[i], tmp_path)
    r = results[i]
    assert r["test_accuracy"] == solo["test_accuracy"]
    assert r["val_accuracy"] == solo["val_accuracy"]
    for k in ("train_loss", "val_loss", "test_loss", "learning_rate"):
        np.testing.assert_allclose(r["history"][k], solo["history"][k], rtol=1e-5)


def test_halving_resumes_exactly_after_sigterm(halved, tmp_path, monkeypatch):
    _, full, _ = halved
    calls = CallLog(monkeypatch, kill_at=3)  # after step 3: past the first rung, mid-epoch
    with pytest.raises(engine.TrainingInterrupted):
        engine.fit(configs(), tmp_path, strategy="unrolled", halving=HALVING, log=lambda s: None)
    calls.kill_at = None
    resumed = engine.fit(
        configs(), tmp_path, strategy="unrolled", halving=HALVING, log=lambda s: None
    )
    strip = lambda h: {
        k: v for k, v in h.items() if k not in ("epoch_time_s", "elapsed_s", "images_per_s")
    }
    for a, b in zip(full, resumed):
        assert (a["status"], a["steps"]) == (b["status"], b["steps"])
        assert strip(a["history"]) == strip(b["history"])


def test_pbt_copies_the_source_state_and_records_the_schedule(tmp_path):
    spec = {
        "interval_steps": 3,
        "fraction": 0.25,
        "fields": ("learning_rate",),
        "factors": (0.5, 2.0),
        "bounds": (("learning_rate", 0.01, 0.25),),
    }
    results = engine.fit(configs(), tmp_path, strategy="unrolled", pbt=spec, log=lambda s: None)
    # the round at step 3 (end of epoch 1): the worst member copied the best one
    (loser,) = [i for i, r in enumerate(results) if len(r["hparam_schedule"]) == 2]
    start, after = results[loser]["hparam_schedule"]
    assert start == {"step": 0, "copied_from": None, **start} and after["step"] == 3
    source = after["copied_from"]
    assert after["learning_rate"] in (RATES[source] * 0.5, min(RATES[source] * 2.0, 0.25))
    assert results[loser]["hparams"]["learning_rate"] == after["learning_rate"]
    # the epoch-1 checkpoint holds the state after the round: the loser's arrays equal the
    # source's, apart from the perturbed rate in the optimizer state
    ck = Checkpointer(tmp_path)
    states, loop = ck.restore(lambda lp: _template(tmp_path, lp), only_step=3)
    ck.close()
    a, b = pop.member(states, loop.live.index(loser)), pop.member(states, loop.live.index(source))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    hp = pop.get_hyperparams(states.opt_state)
    assert float(hp["step_size"][loop.live.index(loser)]) == pytest.approx(after["learning_rate"])
    log = (tmp_path / "members" / str(loser) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["copied_from"] for x in log if '"kind": "pbt"' in x] == [source]
    assert (tmp_path / "pbt_learning_rate.png").stat().st_size > 1000


def _template(workdir, loop):
    """The stacked fresh states of a 4-member population of configs() (shapes for a restore)."""
    from convjax.train import optim
    from convjax.train.config import prepare
    from convjax.train.factory import make_model
    from convjax.train.state import create_train_state

    cfg = prepare(configs()[0])
    tx = optim.make_optimizer(cfg, 3, member_rates=True)
    _, st = create_train_state(make_model(cfg, (28, 28, 1), 10), tx)
    return pop.stack([st] * len(loop.live))
