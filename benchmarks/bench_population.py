"""Throughput of an 8-member population vs 8 sequential runs, per execution strategy.

Run from the repository root (no arguments needed; prints the device it ran on):

    .venv/bin/python benchmarks/bench_population.py
    .venv/bin/python benchmarks/bench_population.py --batch 128 --repeats 5   # the recorded setting

The model is the textbook CNN of docs/design.md's measurement: ``convjax.models.PatternCNN``
conv32-conv32-pool-conv64-conv64-pool-fc256-fc10 without batch norm or dropout, on 28x28x1
inputs, trained by SGD with momentum whose learning rate differs per member
(``optax.inject_hyperparams``: the rates are an array in the optimizer state). Every member
trains on its own batch (``batch_per_member=True``), as members with different seeds do.

Baseline ``separate runs``: 8 independent states (not stacked), each stepped by the jitted
one-member step -- 8 runs one after another. Strategies (see ``convjax.train.population``):
``sequential`` = the same 8 calls on a stacked population (plus one jitted split and one
jitted stack per step); ``unrolled`` = the 8 member steps
written out in one jit; ``vmap`` = ``jax.vmap`` of the step in one jit (a rolled ``lax.map``
ran at 0.03x and is no longer a strategy). Before timing, every strategy's new parameters
are checked against sequential.

With more than one device (on a CPU: ``CONVJAX_CPU_DEVICES=2`` or the default one device per
core, see ``convjax.xla_env``) two more rows split every batch over all devices (parameters
replicated; ``convjax.train.sharding``): ``separate runs, batch split`` (what 8 runs of
``experiments/train.py`` do) and ``unrolled, batch split``.

Reported per strategy: compile time (first call), median step time over ``--repeats``
interleaved rounds, images/s of the whole population (8 x batch / step time) and speed relative
to the separate runs. The speed of ``auto`` is whichever of its candidates wins on this backend.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convjax import xla_env  # noqa: E402

xla_env.use_cpu_cores()  # one CPU device per core, as experiments/*.py (the split rows)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import convjax.functional as cf  # noqa: E402
from convjax.models import PatternCNN  # noqa: E402
from convjax.train import population as pop  # noqa: E402
from convjax.train import sharding  # noqa: E402

try:
    from benchmarks._timing import environment, format_table
except ImportError:  # run as a script: benchmarks/ is on sys.path
    from _timing import environment, format_table


def build(members: int, batch: int, seed: int = 0):
    """(member_step, stacked states, per-member batch, keys, hparams) for the textbook CNN."""
    models = [
        PatternCNN((28, 28, 1), 10, rngs=nnx.Rngs(seed + i), batch_norm=False, dropout=0.0)
        for i in range(members)
    ]
    graphdef = nnx.split(models[0])[0]
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=0.05, momentum=0.9)
    states = []
    for i, m in enumerate(models):
        params = nnx.split(m)[1]
        opt_state = pop.set_hyperparams(opt.init(params), learning_rate=0.01 * (i + 1))
        states.append((params, opt_state))

    def member_step(state, batch, key, hparams):
        del key, hparams  # no dropout/augmentation in this benchmark
        params, opt_state = state
        x, y = batch

        def loss_fn(p):
            return cf.softmax_cross_entropy(nnx.merge(graphdef, p)(x), y)

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), {"loss": loss}

    k = jax.random.key(seed)
    x = jax.random.normal(k, (members, batch, 28, 28, 1), jnp.float32)
    y = jax.random.randint(jax.random.fold_in(k, 1), (members, batch), 0, 10)
    keys = jax.random.split(jax.random.fold_in(k, 2), members)
    return member_step, pop.stack(states), (x, y), keys, {}


def run(members=8, batch=32, repeats=3, strategies=("sequential", "unrolled", "vmap")):
    step, states, data, keys, hp = build(members, batch)
    fns, compile_s, outs = {}, {}, {}
    # The baseline: N independent runs, each holding its own (unstacked) state and batch and
    # calling the jitted one-member step -- what a researcher does without populations.
    solo = [
        (pop.member(states, i), jax.tree.map(lambda x, i=i: x[i], data), keys[i])
        for i in range(members)
    ]
    jstep = jax.jit(step)

    def separate(states, data, keys, hp):
        del states, data, keys
        return [jstep(st, b, k, hp) for st, b, k in solo]

    strategies = ("separate runs", *strategies)
    args = {s: (states, data, keys, hp) for s in strategies}
    for s in strategies:
        fn = (
            separate
            if s == "separate runs"
            else pop.population_step(step, strategy=s, batch_per_member=True)
        )
        fns[s] = fn
    ndev = len(sharding.data_parallel_devices(0, (batch,)))
    if ndev > 1:
        # Every batch split over the devices, parameters replicated (members axis 1).
        mesh = sharding.make_mesh(members, members_axis=1)
        solo_split = [
            (sharding.replicate(st, mesh), sharding.shard_batch(b, mesh), k) for st, b, k in solo
        ]

        def separate_split(states, data, keys, hp):
            del states, data, keys
            return [jstep(st, b, k, hp) for st, b, k in solo_split]

        split = f"batch split over {ndev} devices"
        fns[f"separate runs, {split}"] = separate_split
        fns[f"unrolled, {split}"] = pop.population_step(
            step, strategy="unrolled", batch_per_member=True
        )
        args[f"separate runs, {split}"] = args["separate runs"]
        args[f"unrolled, {split}"] = (
            sharding.replicate(states, mesh),
            sharding.shard_batch(data, mesh, per_member=True),
            keys,
            hp,
        )
        # Members split over the devices instead: shard_map runs each device's N/D members
        # unrolled on that device alone (no cross-device traffic at all).
        mmesh = sharding.make_mesh(members)
        if mmesh.shape[sharding.MEMBERS] > 1:
            msplit = f"unrolled, members split over {mmesh.shape[sharding.MEMBERS]} devices"
            # population_step(mesh=...) runs the unrolled members under shard_map
            fns[msplit] = pop.population_step(
                step, strategy="unrolled", batch_per_member=True, mesh=mmesh
            )
            args[msplit] = (
                sharding.shard_population(states, mmesh),
                sharding.shard_population(data, mmesh),
                sharding.shard_population(keys, mmesh),
                hp,
            )
            # What `experiments/sweep.py --mesh` runs: the same arrays, XLA's SPMD partitioner
            # deciding how the unrolled members' slices are placed.
            gspmd = "unrolled, members-sharded arrays (no shard_map)"
            fns[gspmd] = pop.population_step(step, strategy="unrolled", batch_per_member=True)
            args[gspmd] = args[msplit]
            strategies = (*strategies, msplit, gspmd)
        strategies = (*strategies, f"separate runs, {split}", f"unrolled, {split}")
    for s in strategies:
        t0 = time.perf_counter()
        outs[s] = jax.block_until_ready(fns[s](*args[s]))
        compile_s[s] = time.perf_counter() - t0
    ref = [jax.tree.leaves(o[0][0]) for o in outs["separate runs"]]
    for s in strategies[1:]:
        if s.startswith("separate runs"):
            got = [jax.tree.leaves(o[0][0]) for o in outs[s]]
        else:
            got = [jax.tree.leaves(pop.member(outs[s][0][0], i)) for i in range(members)]
        for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=2e-5)
    samples = {s: [] for s in strategies}
    for _ in range(repeats):  # interleaved rounds: shared-machine load hits all alike
        for s in strategies:
            t0 = time.perf_counter()
            jax.block_until_ready(fns[s](*args[s]))
            samples[s].append(time.perf_counter() - t0)
    base = statistics.median(samples["separate runs"])
    rows = []
    for s in strategies:
        med = statistics.median(samples[s])
        rows.append(
            {
                "strategy": s,
                "compile+first (s)": compile_s[s],
                "step (ms)": med * 1e3,
                "images/s": members * batch / med,
                "vs separate runs": base / med,
            }
        )
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--batch", type=int, default=32, help="per member")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--strategies",
        default="sequential,unrolled,vmap",
        help="comma-separated population strategies (timed beside 'separate runs')",
    )
    a = p.parse_args(argv)
    strategies = tuple(a.strategies.split(","))
    print(f"device: {jax.devices()[0].device_kind} ({environment()})")
    try:
        load = os.getloadavg()
        print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass
    print(f"{a.members} members x batch {a.batch}, textbook CNN, per-member learning rates")
    rows = run(a.members, a.batch, a.repeats, strategies)
    print(format_table(rows))
    auto = pop.AUTO_STRATEGY.get(jax.default_backend(), "unrolled")
    timed = {r["strategy"]: r["vs separate runs"] for r in rows}
    if auto in timed:
        print(f"auto on {jax.default_backend()} takes {auto}: {timed[auto]:.2f}x separate runs")


if __name__ == "__main__":
    main()
