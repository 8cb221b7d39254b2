"""The training engine: one loop that trains N >= 1 members; a single run is N = 1.

:func:`fit` trains a *population*: N run configs that differ only in
``convjax.train.build.POPULATION_FIELDS`` (learning rate, weight decay, momentum, label
smoothing, seed, dropout rate). Their train states are stacked on a member axis and one jitted
population step advances all of them (:mod:`convjax.train.population`);
:func:`train_and_evaluate` is ``fit([config], workdir)``. Every member gets what a single run
gets:

1. its config completed and checked (:func:`convjax.train.config.prepare`) before any data is
   loaded, the model built abstractly for the data set's shape so a bad argument fails at once;
2. exact resume from the newest intact checkpoint (SHA-256 verified,
   :mod:`convjax.train.checkpoint`) after SIGTERM or SIGKILL: member m's data order in epoch e is
   ``epoch_permutation(fold_in(data_key_m, e))`` and its step-b key
   ``fold_in(fold_in(step_key_m, e), b)``, a function of ``(seed, epoch, batch)`` only;
3. divergence handling: a step whose loss or gradient is not finite leaves the member's state
   untouched and freezes it (``TrainState.active``); it is reported diverged with the step
   while the others train on exactly as alone. A single run stops with
   :class:`NonFiniteLossError` instead (nothing else would train);
4. early stopping; members that stop leave the stacked state, so their compute is reclaimed;
5. ``metrics.jsonl`` and TensorBoard (each record once after any kill), ``results.json`` and
   figures in its own folder: ``workdir`` for N = 1, else ``member_dirs`` (default
   ``WORKDIR/members/<i>``); the population's checkpoints and ``summary.txt`` stay in
   ``workdir``.

The epoch itself is :mod:`convjax.train.epochs`; what is built before it,
:mod:`convjax.train.build`.

Results dict per member: ``test_accuracy``, ``test_loss`` (last evaluation, on the EMA weights
if EMA is on), ``val_accuracy`` (or None), ``history`` (per-epoch lists,
``convjax.train.state.HISTORY_KEYS``), ``epochs_run``, ``status`` (``finished``,
``stopped_early``, ``diverged``, ``stopped``), ``stopped_early``, ``diverged_step``, ``steps``,
``train_time_s`` (the population's time in train steps, over resumed parts, compiles
included), ``compile_s``, ``images_per_s`` (the population's steady state, all members),
``total_time_s``, ``num_params``, ``loop_form``, ``steps_per_call``, ``strategy``, ``members``,
``backend``, ``data_parallel_devices``, ``seed``, ``dataset``. Accuracies are fractions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax

from convjax.train import config as config_lib
from convjax.train import plots, report
from convjax.train.build import (
    POPULATION_FIELDS,
    Programs,
    Run,
    check_population,
    member_hparams,
    set_member_hparams,
)
from convjax.train.epochs import end_epoch, global_step, signal_flag, train_epoch
from convjax.train.errors import NonFiniteLossError, TrainingInterrupted
from convjax.train.metrics import MetricsWriter, NullWriter
from convjax.train.schedules import PBT, pbt_schedule_figure
from convjax.train.state import LoopState

__all__ = [
    "POPULATION_FIELDS",
    "RESULTS_FILE",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "fit",
    "train_and_evaluate",
]

RESULTS_FILE = "results.json"


def _member_results(run, loop, member: int, progs) -> dict[str, Any]:
    g = loop.members[member]
    h = g.history
    last = lambda k: next((v for v in reversed(h[k]) if v is not None), None)
    epochs = len(h["train_loss"])
    steady = loop.steady_images / loop.steady_time_s if loop.steady_time_s else None
    return {
        "test_accuracy": last("test_accuracy"),
        "test_loss": last("test_loss"),
        "val_accuracy": last("val_accuracy"),
        "history": h,
        "epochs_run": epochs,
        "status": g.status,
        "stopped_early": g.status == "stopped_early",
        "diverged_step": g.diverged_step,
        "steps": (g.diverged_step - 1) if g.diverged_step else g.stopped_step,
        "stopped_epoch": (g.stopped_step or 0) / run.steps_per_epoch,
        "hparams": g.hparams,
        "hparam_schedule": g.hparam_schedule or None,
        "train_time_s": loop.train_time_s,
        "compile_s": loop.compile_s,
        "images_per_s": steady,
        "total_time_s": time.perf_counter() - run.t_start,
        "num_params": run.num_params,
        "loop_form": progs.form,
        "steps_per_call": progs.k,
        "strategy": progs.strategy,
        "members": run.n,
        "backend": jax.default_backend(),
        "data_parallel_devices": progs.devices,
        "seed": int(run.cfgs[member].seed),
        "dataset": run.c0.dataset,
    }


def fit(
    configs: Sequence[Any],
    workdir,
    *,
    member_dirs: Sequence[Any] | None = None,
    strategy: str = "auto",
    mesh: str | None = "auto",
    log: Callable[[str], None] | None = None,
    halving: Mapping[str, Any] | None = None,
    pbt: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Train N >= 1 run configs as one population in ``workdir`` (see the module docstring).

    Args:
      configs: run configs (``configs/default.py`` fields) differing only in
        :data:`POPULATION_FIELDS`.
      workdir: the population's folder (checkpoints, summary); resumes from its checkpoints.
      member_dirs: one folder per member for its metrics, results and figures; default
        ``workdir`` for one member, ``workdir/members/<i>`` for several.
      strategy: how members execute (``convjax.train.population.STRATEGIES``).
      mesh: ``"auto"`` shards members and batches over this process's devices (all processes'
        after ``convjax.train.distributed.initialize``), None keeps one device.
      log: printer for progress lines (default: stdout when ``config.verbose``).
      halving, pbt: a successive-halving or population-based-training schedule
        (:mod:`convjax.train.schedules`), or None.

    Returns:
      One results dict per member (module docstring), also written to its ``results.json``.

    Raises:
      ConfigError: a bad config field (before any data is loaded).
      NonFiniteLossError: a single run's loss or gradient became NaN or Inf.
      TrainingInterrupted: SIGINT or SIGTERM arrived (a checkpoint was saved first).
      CheckpointError: checkpoints exist but none is intact.
    """
    cfgs = [config_lib.prepare(c) for c in configs]
    check_population(cfgs)
    if member_dirs is None:
        member_dirs = (
            [workdir]
            if len(cfgs) == 1
            else [Path(workdir) / "members" / str(i) for i in range(len(cfgs))]
        )
    if len(member_dirs) != len(cfgs):
        raise ValueError(
            f"fit: {len(member_dirs)} member_dirs for {len(cfgs)} configs; pass "
            "one folder per member."
        )
    run = Run(cfgs, workdir, member_dirs, strategy, mesh, log, halving=halving, pbt=pbt)
    for c, d in zip(cfgs, run.member_dirs):
        d.mkdir(parents=True, exist_ok=True)
        if run.main:
            report.write_json(d / "config.json", config_lib.to_json_dict(c))
    restored = run.ckpt.restore(lambda loop: run.template(loop.live))
    if restored is None:
        loop, states = LoopState.fresh(run.n), run.template(range(run.n))
        for c, g in zip(cfgs, loop.members):
            g.hparams = member_hparams(c)
            if isinstance(run.schedule, PBT):
                g.hparam_schedule.append({"step": 0, "copied_from": None, **g.hparams})
    else:
        states, loop = restored
        run.log(
            f"resumed from checkpoint at step {global_step(run, loop)} "
            f"(epoch {loop.epoch + 1}, batch {loop.batch})"
        )
    resume = global_step(run, loop)
    writers = [
        MetricsWriter(d, tensorboard=run.c0.tensorboard, resume_step=resume)
        if run.main
        else NullWriter()
        for d in run.member_dirs
    ]
    states = states._replace(opt_state=set_member_hparams(run, loop, loop.live, states.opt_state))
    progs = Programs(run, loop.live)
    states = progs.place_members(states)
    try:
        with signal_flag() as signals:
            while any(loop.members[m].status == "training" for m in loop.live):
                t_epoch = time.perf_counter()
                states, progs, rate = train_epoch(
                    run, loop, states, progs, writers, signals, t_epoch
                )
                states, progs = end_epoch(run, loop, states, progs, writers, rate, t_epoch)
                if signals and any(loop.members[m].status == "training" for m in loop.live):
                    raise TrainingInterrupted(
                        signals[0], global_step(run, loop), str(run.ckpt.directory)
                    )
    finally:
        for w in writers:
            w.close()
        run.ckpt.close()
    return _finish(run, loop, states, progs)


def _finish(run, loop, states, progs) -> list[dict[str, Any]]:
    results = [_member_results(run, loop, m, progs) for m in range(run.n)]
    host = progs.host(states)
    for m, r in enumerate(results):
        if not run.main:
            continue
        if run.c0.figures:
            state = (
                jax.tree.map(lambda x, j=progs.live.index(m): x[j], host)
                if m in progs.live
                else None
            )
            plots.member_figures(run, m, state, r)
        report.write_json(run.member_dirs[m] / RESULTS_FILE, r)
    if isinstance(run.schedule, PBT) and run.main:
        for field in run.schedule.fields:
            fig = pbt_schedule_figure(
                [r["hparam_schedule"] for r in results],
                field,
                run.steps_per_epoch,
                total_steps=max(r["steps"] for r in results),
            )
            report.save_figure(fig, run.workdir / f"pbt_{field.replace('.', '_')}.png")
    if run.n == 1:
        r = results[0]
        run.log(
            f"test accuracy: {100 * r['test_accuracy']:.2f}% (loss {r['test_loss']:.4f}) "
            f"after {r['epochs_run']} epochs, {r['train_time_s']:.1f} s training"
        )
    return results


def train_and_evaluate(config, workdir) -> dict[str, Any]:
    """Train one config in ``workdir`` (resuming if it has a checkpoint): ``fit`` with N = 1.

    Args:
      config: a run config (``configs/default.py``'s fields; omitted fields take their
        defaults from ``convjax.train.config.FIELDS``).
      workdir: folder for the config, metrics, checkpoints, results and figures.

    Returns:
      The results dict (module docstring), also written to ``WORKDIR/results.json``.
    """
    return fit([config], workdir)[0]
