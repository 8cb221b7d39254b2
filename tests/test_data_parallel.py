"""Data parallelism of one model over a process's devices, and the one-device-per-core setup.

The two-device runs happen in a subprocess: ``--xla_force_host_platform_device_count`` must be
set before JAX starts, and this process already has one CPU device.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _devices import run_on_cpu_devices

from convjax import xla_env
from convjax.train import sharding

ROOT = Path(__file__).resolve().parents[1]

# Two runs of the trainer on 2 CPU devices, one with the batch split, one without, from the
# same seed: the split must change nothing beyond float summation order.
SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    sys.path.insert(0, "tests")
    from test_train import tiny_config
    from convjax.train import train_and_evaluate

    assert jax.device_count() == 2, jax.devices()
    out = {}
    for dp in (1, 2):
        cfg = tiny_config()
        cfg.data_parallel = dp
        cfg.num_epochs = 1
        cfg.train_subset = 256
        r = train_and_evaluate(cfg, sys.argv[1] + f"/dp{dp}")
        out[dp] = {k: r[k] for k in ("data_parallel_devices", "history", "test_loss")}
    print("RESULT " + json.dumps(out))
    """
)


def test_split_batch_equals_one_device(tmp_path):
    out = run_on_cpu_devices(SCRIPT, 2, str(tmp_path))
    one, two = out["1"], out["2"]
    assert one["data_parallel_devices"] == 1
    assert two["data_parallel_devices"] == 2
    # Two steps of batch 64: the same losses up to float summation order (batch-norm
    # statistics and gradients are reduced over the whole batch, not per half).
    assert two["history"]["train_loss"] == pytest.approx(one["history"]["train_loss"], rel=1e-4)
    assert two["test_loss"] == pytest.approx(one["test_loss"], rel=1e-3)


class FakeDevice:
    def __init__(self, i):
        self.i = i

    def __repr__(self):
        return f"dev{self.i}"


DEVS = [FakeDevice(i) for i in range(4)]


@pytest.mark.parametrize(
    "requested, batches, expected",
    [(0, (128, 1000), 4), (0, (6, 10), 2), (0, (5,), 1), (1, (128,), 1), (2, (64, 128), 2)],
)
def test_data_parallel_devices_choice(requested, batches, expected):
    got = sharding.data_parallel_devices(requested, batches, DEVS)
    assert got == DEVS[:expected]


@pytest.mark.parametrize(
    "requested, batches, match",
    [
        (8, (128,), r"data_parallel=8 asks for more devices than the 4.*device_count=8"),
        (3, (128, 1000), r"data_parallel=3 does not divide the batch size\(s\) \[128, 1000\]"),
        (-1, (128,), r"data_parallel=-1 must be an int >= 0"),
        (True, (128,), r"data_parallel=True must be an int >= 0"),
    ],
)
def test_data_parallel_devices_errors(requested, batches, match):
    with pytest.raises(ValueError, match=match):
        sharding.data_parallel_devices(requested, batches, DEVS)


def test_use_cpu_cores_keeps_users_choice_and_warns_after_start(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=3")
    assert xla_env.use_cpu_cores(2) is None
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert xla_env.use_cpu_cores(1) is None  # one device: nothing to ask for
    import jax

    jax.devices()  # this process's backend has started: too late to change the flag
    with pytest.warns(UserWarning, match="already started"):
        assert xla_env.use_cpu_cores(2) is None
    assert os.environ["XLA_FLAGS"] == "--xla_cpu_enable_fast_math=false"


def test_use_cpu_cores_errors(monkeypatch):
    monkeypatch.setenv(xla_env.ENV_VAR, "two")
    with pytest.raises(ValueError, match=r"CONVJAX_CPU_DEVICES='two' is not an int"):
        xla_env.use_cpu_cores()
    with pytest.raises(ValueError, match=r"count=0 must be an int >= 1"):
        xla_env.use_cpu_cores(0)


def test_use_cpu_cores_in_a_fresh_process():
    code = (
        "from convjax import xla_env; n = xla_env.use_cpu_cores(); import jax; "
        "print(n, jax.device_count(), flush=True)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_env.ENV_VAR)}
    for setting, expected in ((None, xla_env.cpu_core_count()), ("3", 3), ("1", 1)):
        if setting is not None:
            env[xla_env.ENV_VAR] = setting
        proc = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        asked, count = proc.stdout.split()
        assert int(count) == expected
        assert asked == (str(expected) if expected > 1 else "None")
