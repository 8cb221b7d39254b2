"""Two processes on localhost (CPU, gloo collectives) train one population together.

Each process owns one CPU device; the mesh spans both, the 4 members are split 2 + 2 over the
members axis. Both processes gather the final losses and parameters; they must equal the
single-process sequential run computed here.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_population import KEYS, make_batches, pop_train

from convjax.train import distributed

ROOT = Path(__file__).resolve().parents[1]

WORKER = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, "tests")
    from convjax.train import distributed
    port, pid = sys.argv[1], int(sys.argv[2])
    distributed.initialize(f"127.0.0.1:{port}", num_processes=2, process_id=pid)
    import jax, jax.numpy as jnp, numpy as np
    from test_population import HP, KEYS, N, member_init, member_step, make_batches
    from convjax.train import population as pop, sharding
    assert jax.process_count() == 2 and jax.device_count() == 2
    mesh = sharding.make_mesh(N)
    assert mesh.shape == {"members": 2, "data": 1}
    states = sharding.shard_population(pop.stack([member_init(i) for i in range(N)]), mesh)
    hp = sharding.shard_population(
        {k: jnp.array(HP[k], jnp.float32) for k in ("label_smoothing", "dropout_rate")}, mesh
    )
    step = pop.population_step(member_step, strategy="vmap")
    losses = []
    for t, b in enumerate(make_batches(False)):
        b = sharding.shard_batch(b, mesh)
        keys = sharding.shard_population(KEYS[t], mesh)
        states, m = step(states, b, keys, hp)
        losses.append(distributed.gather(m["loss"]))
    leaf = states[0]["conv"]["kernel"]
    local_members = sum(s.data.shape[0] for s in leaf.addressable_shards)
    print("RESULT" + json.dumps({
        "pid": pid,
        "main": distributed.is_main_process(),
        "local_members": local_members,
        "losses": np.stack(losses, 1).tolist(),
        "kernel": distributed.gather(leaf).tolist(),
    }), flush=True)
    distributed.shutdown()
    """
)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_on_localhost_train_one_population():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("XLA_FLAGS", None)  # one CPU device per process
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, port, str(i)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=240)
            assert p.returncode == 0, err[-3000:]
            outs.append(json.loads([x for x in out.splitlines() if x.startswith("RESULT")][-1][6:]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    states, losses, _ = pop_train("sequential", make_batches(False), KEYS)
    assert [o["main"] for o in outs] == [True, False]
    for o in outs:
        assert o["local_members"] == 2  # each host holds half of the population
        np.testing.assert_allclose(o["losses"], losses, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o["kernel"], states[0]["conv"]["kernel"], rtol=1e-5, atol=1e-6)


def test_initialize_argument_errors():
    with pytest.raises(ValueError, match=r"num_processes=0 must be a positive int"):
        distributed.initialize("127.0.0.1:1", num_processes=0, process_id=0)
    with pytest.raises(ValueError, match=r"process_id=2 must be an int in \[0, num_processes=2\)"):
        distributed.initialize("127.0.0.1:1", num_processes=2, process_id=2)
    with pytest.raises(ValueError, match=r"coordinator_address='localhost' must look like"):
        distributed.initialize("localhost", num_processes=2, process_id=0)


def test_single_process_helpers():
    assert distributed.is_main_process()
    got = distributed.gather({"a": np.arange(3)})
    np.testing.assert_array_equal(got["a"], np.arange(3))
    distributed.shutdown()  # no-op with one process


@pytest.mark.slow
def test_two_processes_run_a_sweep_with_experiments_sweep(tmp_path):
    """experiments/sweep.py on 2 localhost processes (gloo), members sharded over both:
    the table equals a single-process run of the same sweep (~3-6 min on 2 shared cores)."""
    # one CPU device per process (experiments/*.py would otherwise make one per core)
    env = dict(os.environ, PYTHONPATH=str(ROOT), CONVJAX_CPU_DEVICES="1")
    env.pop("XLA_FLAGS", None)
    port = str(_free_port())
    args = [
        f"--config={ROOT}/configs/sweeps/random_optimizer.py:smoke",
        "--config.num_trials=2",
        "--config.base.train_subset=256",
        "--config.base.num_epochs=1",
        "--config.strategy=unrolled",
    ]
    script = str(ROOT / "experiments" / "sweep.py")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                script,
                *args,
                f"--workdir={tmp_path}/multi",
                "--mesh",
                f"--coordinator=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={i}",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        for p in procs:
            _, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    single = subprocess.run(
        [sys.executable, script, *args, f"--workdir={tmp_path}/single", "--nomesh"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    multi_rows = (tmp_path / "multi" / "results.csv").read_text().splitlines()
    single_rows = (tmp_path / "single" / "results.csv").read_text().splitlines()
    assert len(multi_rows) == 3 and multi_rows == single_rows
    assert not (tmp_path / "multi" / "groups" / "1").exists()  # one population of 2
