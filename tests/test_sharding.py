"""Population sharded over a mesh of 8 CPU devices equals the single-device run.

The 8-device run happens in a subprocess because ``--xla_force_host_platform_device_count``
must be set before JAX starts; this process (1 device) computes the reference.
"""

import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _devices import run_on_cpu_devices
from test_population import KEYS, N, make_batches, pop_train

from convjax.train import population as pop
from convjax.train import sharding

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    sys.path.insert(0, "tests")
    from test_population import HP, KEYS, N, member_init, member_step, make_batches
    from convjax.train import population as pop, sharding

    assert jax.device_count() == 8, jax.devices()
    out = {}
    for strategy, per_member, mesh_members, ndev in [
        ("vmap", False, 4, 8), ("unrolled", False, 4, 8), ("vmap", True, 2, 8),
        ("unrolled", True, 1, 8),
        # members axis 4, data axis 1: population_step(mesh=...) runs shard_map
        ("unrolled", True, 4, 4),
    ]:
        mesh = sharding.make_mesh(N, members_axis=mesh_members, devices=jax.devices()[:ndev])
        assert mesh.shape == {"members": mesh_members, "data": ndev // mesh_members}
        states = sharding.shard_population(pop.stack([member_init(i) for i in range(N)]), mesh)
        hp = sharding.shard_population(
            {k: jnp.array(HP[k], jnp.float32) for k in ("label_smoothing", "dropout_rate")},
            mesh,
        )
        step = pop.population_step(
            member_step, strategy=strategy, batch_per_member=per_member, mesh=mesh
        )
        losses = []
        for t, b in enumerate(make_batches(per_member)):
            b = sharding.shard_batch(b, mesh, per_member=per_member)
            states, m = step(states, b, KEYS[t], hp)
            losses.append(np.asarray(m["loss"]))
        # the state really is spread: each device holds N / members_axis members
        leaf = jax.tree.leaves(states)[0]
        shard_rows = {s.data.shape[0] for s in leaf.addressable_shards}
        out[f"{strategy}-{per_member}-{ndev}"] = {
            "losses": np.stack(losses, 1).tolist(),
            "kernel": np.asarray(states[0]["conv"]["kernel"]).tolist(),
            "shard_rows": sorted(shard_rows),
            "devices": len(leaf.sharding.device_set),
        }
    print("RESULT" + json.dumps(out))
    """
)


def test_population_on_8_cpu_devices_equals_single_device():
    result = run_on_cpu_devices(SCRIPT, 8, timeout=300)
    assert len(result) == 5
    for key, got in result.items():
        strategy, per_member, ndev = key.split("-")
        per_member = per_member == "True"
        states, losses, _ = pop_train("sequential", make_batches(per_member), KEYS, per_member)
        np.testing.assert_allclose(got["losses"], losses, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got["kernel"], states[0]["conv"]["kernel"], rtol=1e-5, atol=1e-6)
        assert got["devices"] == int(ndev)
    assert result["vmap-False-8"]["shard_rows"] == [1]  # 4 members over a members axis of 4
    assert result["vmap-True-8"]["shard_rows"] == [2]  # 4 members over a members axis of 2
    assert result["unrolled-True-4"]["shard_rows"] == [1]  # shard_map: one member per device


def test_make_mesh_single_device_and_placement():
    mesh = sharding.make_mesh(N)
    assert mesh.shape == {"members": 1, "data": 1}
    states = sharding.shard_population(pop.stack([{"w": jnp.ones(3) * i} for i in range(N)]), mesh)
    np.testing.assert_array_equal(states["w"][:, 0], np.arange(N))
    b = sharding.shard_batch(jnp.zeros((6, 2)), mesh)
    assert b.shape == (6, 2)
    r = sharding.replicate({"x": jnp.ones(2)}, mesh)
    assert r["x"].sharding.is_fully_replicated


def test_mesh_errors():
    cpu = jax.devices()
    with pytest.raises(ValueError, match=r"devices=\[\] is empty"):
        sharding.make_mesh(4, devices=[])
    with pytest.raises(ValueError, match=r"num_members=0 must be a positive int"):
        sharding.make_mesh(0)
    with pytest.raises(ValueError, match=r"members_axis=2 does not divide the 1 devices"):
        sharding.make_mesh(4, members_axis=2, devices=cpu)
    fake = cpu * 4  # only shapes matter for these checks
    with pytest.raises(ValueError, match=r"members_axis=4 does not divide num_members=6"):
        sharding.make_mesh(6, members_axis=4, devices=fake)
    mesh = sharding.make_mesh(4, devices=fake)
    assert mesh.shape == {"members": 4, "data": 1}
    assert sharding.make_mesh(2, devices=fake).shape == {"members": 2, "data": 2}
    with pytest.raises(ValueError, match=r"dimension 0 = 3, which the mesh axis of 4"):
        sharding.shard_population(jnp.zeros((3, 2)), mesh)
    mesh22 = sharding.make_mesh(2, devices=fake)
    with pytest.raises(ValueError, match=r"batch size that is a multiple of 2"):
        sharding.shard_batch(jnp.zeros((5, 2)), mesh22)
