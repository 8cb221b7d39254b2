"""Checkpoints you can trust: damage of every kind is detected, set aside, and the newest intact
checkpoint is used; with none intact the error says so. Plus the logs after a kill."""

import json
import warnings
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from convjax.train import population as pop
from convjax.train.checkpoint import Checkpointer, CheckpointError, DamagedCheckpointWarning
from convjax.train.metrics import MetricsWriter
from convjax.train.state import LoopState, TrainState


def member_state(value: float) -> TrainState:
    """A small train state whose every float is ``value`` (so a restore is easy to check)."""
    params = {"conv": {"kernel": jnp.full((3, 3, 1, 4), value), "bias": jnp.full((4,), value)}}
    return TrainState(
        step=jnp.int32(0),
        params=params,
        batch_stats={},
        opt_state=({"trace": {"conv": {"kernel": jnp.full((3, 3, 1, 4), 2 * value)}}},),
        ema_params=None,
        active=jnp.ones((), bool),
    )


def template(loop: LoopState):
    return pop.stack([member_state(0.0) for _ in loop.live])


@pytest.fixture
def two_checkpoints(tmp_path):
    """Checkpoints at steps 8 and 16 of a 2-member population (values 1 and 2)."""
    ck = Checkpointer(tmp_path)
    for step, value in ((8, 1.0), (16, 2.0)):
        loop = LoopState.fresh(2)
        loop.epoch = step // 8
        states = pop.stack([member_state(value), member_state(value + 0.5)])
        ck.save(step, jax_to_host(states), loop)
    ck.close()
    return tmp_path


def jax_to_host(tree):
    import jax

    return jax.tree.map(np.asarray, tree)


def data_files(workdir: Path, step: int) -> list[Path]:
    """The array data files Orbax wrote for ``step`` (largest first)."""
    files = [p for p in (workdir / "checkpoints" / str(step) / "state").rglob("*") if p.is_file()]
    data = [p for p in files if p.parent.name == "d"]
    return sorted(data, key=lambda p: -p.stat().st_size)


def restore(workdir):
    ck = Checkpointer(workdir)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = ck.restore(template)
        return out, [w for w in caught if issubclass(w.category, DamagedCheckpointWarning)]
    finally:
        ck.close()


def test_intact_checkpoint_restores_exactly(two_checkpoints):
    (states, loop), warned = restore(two_checkpoints)
    assert not warned and loop.epoch == 2
    np.testing.assert_array_equal(states.params["conv"]["kernel"][1], np.full((3, 3, 1, 4), 2.5))
    np.testing.assert_array_equal(states.opt_state[0]["trace"]["conv"]["kernel"][0], 4.0)
    assert states.ema_params is None and states.active.dtype == bool


def _garble(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    lo = len(raw) // 3
    for i in range(lo, min(len(raw), lo + 64)):
        raw[i] ^= 0x5A  # flip bits in a byte range in the middle
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


@pytest.mark.parametrize(
    "damage",
    [
        ("garbled data", lambda wd: [_garble(p) for p in data_files(wd, 16)]),
        ("truncated data", lambda wd: [_truncate(p) for p in data_files(wd, 16)]),
        ("missing data files", lambda wd: [p.unlink() for p in data_files(wd, 16)]),
        (
            "damaged metadata",
            lambda wd: (wd / "checkpoints" / "16" / "meta" / "metadata").write_text("{not json"),
        ),
        (
            "checksums of other arrays",
            lambda wd: (wd / "checkpoints" / "16" / "meta" / "metadata").write_text(
                json.dumps({"loop": LoopState.fresh(2).to_json(), "checksums": {"x": "0"}})
            ),
        ),
    ],
    ids=lambda d: d[0],
)
def test_damaged_newest_falls_back_to_the_older_one(two_checkpoints, damage):
    wd = two_checkpoints
    damage[1](wd)
    (states, loop), warned = restore(wd)
    # the older checkpoint (step 8, values 1 and 1.5), never the damaged one's values
    assert loop.epoch == 1
    np.testing.assert_array_equal(states.params["conv"]["bias"], [[1.0] * 4, [1.5] * 4])
    assert len(warned) == 1 and "checkpoint step 16" in str(warned[0].message)
    assert (wd / "damaged_checkpoints" / "16").is_dir()
    assert (wd / "damaged_checkpoints" / "16.reason.txt").read_text().strip()
    assert not (wd / "checkpoints" / "16").exists()
    # a new save at step 16 is written, not skipped as "already there"
    ck = Checkpointer(wd)
    ck.save(16, jax_to_host(pop.stack([member_state(3.0)] * 2)), LoopState.fresh(2))
    assert ck.latest_step() == 16
    ck.close()


def test_no_intact_checkpoint_is_a_clear_error(two_checkpoints):
    wd = two_checkpoints
    for step in (8, 16):
        for p in data_files(wd, step):
            _garble(p)
    with pytest.raises(CheckpointError, match=r"no intact checkpoint in .*step 16: .*step 8: "):
        restore(wd)


def test_no_checkpoint_restores_nothing(tmp_path):
    assert restore(tmp_path) == (None, [])


def test_loop_state_of_another_version_names_the_fix():
    data = LoopState.fresh(1).to_json()
    data["version"] = 0
    with pytest.raises(ValueError, match=r"version 0, this convjax reads version 1; start the run"):
        LoopState.from_json(data)


def test_metrics_log_holds_each_record_once_after_a_kill(tmp_path):
    # A run killed during its first checkpoint write left an epoch record but no checkpoint;
    # the restarted run starts fresh (resume step 0) and must not keep that record.
    w = MetricsWriter(tmp_path, tensorboard=False)
    for s in (4, 8):
        w.write("train_log", s, loss=1.0)
    w.write("epoch", 8, epoch=1)
    w.close()
    MetricsWriter(tmp_path, tensorboard=False, resume_step=0).close()
    assert (tmp_path / "metrics.jsonl").read_text() == ""
    # resumed from a checkpoint at step 8: records up to it stay, later ones go
    w = MetricsWriter(tmp_path, tensorboard=False)
    for s in (4, 8, 12):
        w.write("train_log", s, loss=1.0)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "train_lo')  # a line cut by SIGKILL
    MetricsWriter(tmp_path, tensorboard=False, resume_step=8).close()
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [4, 8]
