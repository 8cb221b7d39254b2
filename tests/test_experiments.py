"""experiments/train.py end to end in subprocesses: artifacts, config typos, signals."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from convjax import xla_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config.smoke=True",
    "--config.model.widths=(4, 8)",
    "--config.model.fc_widths=(16,)",
    "--config.progress=False",
    "--config.steps_per_call=4",
    "--config.loop=unrolled",
]


def train(workdir, *extra, wait=True):
    cmd = [
        sys.executable,
        os.path.join(ROOT, "experiments", "train.py"),
        "--config=" + os.path.join(ROOT, "configs", "default.py"),
        f"--workdir={workdir}",
        *TINY,
        *extra,
    ]
    if not wait:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_smoke_run_writes_every_artifact(tmp_path):
    r = train(tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("TEST ACCURACY: ") and last.endswith("%")
    results = json.loads((tmp_path / "results.json").read_text())
    assert f"{100 * results['test_accuracy']:.2f}%" in last
    for name in (
        "config.json",
        "summary.txt",
        "metrics.jsonl",
        "learning_curves.png",
        "filters.png",
        "explanations.png",
        "activation_maps.png",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert os.listdir(tmp_path / "tensorboard")
    assert os.listdir(tmp_path / "checkpoints")
    # The inspect summary is printed at the start of the job.
    assert "Total params" in r.stdout
    assert json.loads((tmp_path / "config.json").read_text())["model"]["widths"] == [4, 8]
    # experiments/train.py gives XLA one CPU device per core and the trainer splits each
    # batch (64; eval 128) over as many as divide it.
    if "device_count" not in os.environ.get("XLA_FLAGS", ""):
        cores = xla_env.cpu_core_count()
        expected = max(d for d in range(1, cores + 1) if 64 % d == 0 and 128 % d == 0)
        assert results["data_parallel_devices"] == expected


SCRIPTS = {
    "train": ("configs/default.py:smoke", ""),
    "ablate": ("configs/ablations/pooling.py:smoke", "base."),
    "sweep": ("configs/sweeps/lr_smoothing.py:smoke", "base."),
}


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--config.{p}num_epoch=1"],
            r"unknown config field --config\.{p}num_epoch \(did you "
            r"mean '{p}num_epochs'",
        ),
        (["--config.{p}momentum=1.5"], r"config\.momentum=1\.5 must be a number in \[0, 1\)"),
        (
            ["--config.{p}model.dropout=1.5"],
            r"config\.model: PatternCNN: dropout=1\.5 must be a number in \[0, 1\)",
        ),
        (["--config.{p}dataset=no_such_dataset"], r"name='no_such_dataset' is not a TFDS data"),
        (["--config=configs/nothere.py"], r"--config=configs/nothere\.py: no such config file"),
    ],
    ids=["typo", "bad value", "bad model argument", "missing data set", "missing file"],
)
@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_config_errors_exit_2_with_one_line(script, args, message, tmp_path):
    config, prefix = SCRIPTS[script]
    args = [a.format(p=prefix) for a in args]
    cmd = [sys.executable, os.path.join(ROOT, "experiments", f"{script}.py")]
    if not any(a.startswith("--config=") for a in args):
        cmd.append(f"--config={config}")
    r = subprocess.run(
        [*cmd, *args, f"--workdir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 2, r.stderr[-3000:]
    assert re.search("error: " + message.format(p=prefix.replace(".", "\\.")), r.stderr), r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "results.json").exists() and not (tmp_path / "results.md").exists()


# Smoke sizes without the smoke cap of 2 epochs (these runs need more epochs than that).
LONGER = [
    "--config.smoke=False",
    "--config.train_subset=512",
    "--config.test_subset=256",
    "--config.batch_size=64",
    "--config.eval_batch_size=128",
]


def _wait_for_checkpoint(workdir, proc, timeout=300):
    t0 = time.time()
    while time.time() - t0 < timeout:
        ck = workdir / "checkpoints"
        if ck.exists() and any(p.isdigit() for p in os.listdir(ck)):
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    epochs = ["--config.num_epochs=3", *LONGER]
    full = train(tmp_path / "full", *epochs)
    assert full.returncode == 0, full.stderr[-3000:]
    proc = train(tmp_path / "killed", *epochs, wait=False)
    assert _wait_for_checkpoint(tmp_path / "killed", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "killed" / "results.json").exists()
    resumed = train(tmp_path / "killed", *epochs)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint" in resumed.stdout
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((tmp_path / "killed" / "results.json").read_text())
    for key in ("epoch_time_s", "images_per_s", "elapsed_s"):
        a["history"].pop(key), b["history"].pop(key)
    assert a["history"] == b["history"]
    assert a["test_accuracy"] == b["test_accuracy"] and a["test_loss"] == b["test_loss"]


@pytest.mark.slow
def test_sigterm_exits_cleanly_with_checkpoint(tmp_path):
    proc = train(tmp_path, "--config.num_epochs=30", *LONGER, wait=False)
    assert _wait_for_checkpoint(tmp_path, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert b"SIGTERM received: checkpoint saved at step" in err
    assert not (tmp_path / "results.json").exists()


@pytest.mark.slow
def test_sweep_group_sigkilled_mid_epoch_resumes_every_member_exactly(tmp_path):
    """experiments/sweep.py: one population of 3 killed (SIGKILL) after its first checkpoint,
    during epoch 2 (the smoke preset runs 2); the rerun resumes it and every trial ends as in an
    uninterrupted run."""
    env = dict(os.environ, CONVJAX_CPU_DEVICES="1")
    args = [
        sys.executable,
        os.path.join(ROOT, "experiments", "sweep.py"),
        "--config=configs/sweeps/random_optimizer.py:smoke",
        "--config.num_trials=3",
        "--config.base.train_subset=320",  # 192 training images: 3 steps of 64 per epoch
        "--config.base.loop=step",
    ]

    def run(workdir, wait=True):
        cmd = [*args, f"--workdir={workdir}"]
        if not wait:
            return subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)

    full = run(tmp_path / "full")
    assert full.returncode == 0, full.stderr[-3000:]
    proc = run(tmp_path / "killed", wait=False)
    groups = tmp_path / "killed" / "groups"
    t0 = time.time()
    while time.time() - t0 < 600 and proc.poll() is None:
        ck = list(groups.glob("*/checkpoints/[0-9]*"))
        if ck:
            time.sleep(0.5)  # into epoch 2
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and ck
    assert not (tmp_path / "killed" / "results.md").exists()
    resumed = run(tmp_path / "killed")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from checkpoint" in resumed.stdout
    for i in range(3):
        a = json.loads((tmp_path / "full" / "trials" / str(i) / "results.json").read_text())
        b = json.loads((tmp_path / "killed" / "trials" / str(i) / "results.json").read_text())
        for key in ("epoch_time_s", "images_per_s", "elapsed_s"):
            a["history"].pop(key), b["history"].pop(key)
        assert a["history"] == b["history"] and a["test_loss"] == b["test_loss"]
        log = (tmp_path / "killed" / "trials" / str(i) / "metrics.jsonl").read_text()
        epochs = [json.loads(x)["epoch"] for x in log.splitlines() if '"kind": "epoch"' in x]
        assert epochs == [1, 2]  # each record once after the kill
    assert (tmp_path / "full" / "results.csv").read_text() == (
        tmp_path / "killed" / "results.csv"
    ).read_text()
