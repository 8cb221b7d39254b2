"""The training engine: one loop that trains N >= 1 members; a single run is N = 1.

:func:`fit` trains a *population*: N run configs that differ only in :data:`POPULATION_FIELDS`
(learning rate, weight decay, momentum, label smoothing, seed, dropout rate). Their train
states are stacked on a leading member axis and one jitted population step advances all of
them (``convjax.train.population``); :func:`train_and_evaluate` is ``fit([config], workdir)``.
Everything a run has, every member has:

1. Config: each is completed and checked by :func:`convjax.train.config.prepare` before any data
   is loaded; the model is built abstractly for the data set's shape, so a bad model argument
   fails in seconds too.
2. Data (:mod:`convjax.train.inputs`) on the device once; models initialised from each seed.
3. Resume: the newest *intact* checkpoint in ``WORKDIR/checkpoints`` (verified by SHA-256,
   :mod:`convjax.train.checkpoint`) restores the stacked state and the
   :class:`~convjax.train.state.LoopState`; the logs drop what a killed attempt wrote after it.
4. Epochs. Member m's data order in epoch e is ``epoch_permutation(fold_in(data_key_m, e))`` and
   its step-b key ``fold_in(fold_in(step_key_m, e), b)``: every random choice is a function of
   ``(seed, epoch, batch)``, so a resumed run repeats an uninterrupted one exactly. Steps run in
   chunks of k in the loop form measured fastest (:mod:`convjax.train.loops`).
5. Divergence, per member: a step whose loss or gradient is not finite leaves that member's
   state untouched and freezes it (``TrainState.active``); the member is reported diverged
   with the step, and the others train on exactly as they would alone. A single run stops
   with :class:`NonFiniteLossError` instead (nothing else would train).
6. After each epoch: validation (if any) and test evaluation, an ``"epoch"`` record per member
   (``metrics.jsonl``, TensorBoard), early stopping per member, then members that stopped leave
   the stacked state (their compute is reclaimed), and a checkpoint.
7. SIGINT/SIGTERM: the current chunk finishes, a checkpoint is saved and
   :class:`TrainingInterrupted` is raised; calling again resumes.
8. At the end, per member: ``results.json`` and figures (learning curves; first-layer filters
   and activation maps when its final state is at hand).

Member folders: ``workdir`` itself for N = 1, else ``member_dirs`` (default
``WORKDIR/members/<i>``); the population's checkpoints and ``summary.txt`` stay in ``workdir``.

Results dict per member: ``test_accuracy``, ``test_loss`` (last evaluation, on the EMA weights
if EMA is on), ``val_accuracy`` (or None), ``history`` (per-epoch lists,
``convjax.train.state.HISTORY_KEYS``), ``epochs_run``, ``status`` (``finished``,
``stopped_early``, ``diverged``, ``stopped``), ``stopped_early``, ``diverged_step``, ``steps``,
``train_time_s`` (the population's time in train steps, summed over resumed parts, compiles
included), ``compile_s``, ``images_per_s`` (the population's steady state, all members),
``total_time_s``, ``num_params``, ``loop_form``, ``steps_per_call``, ``strategy``, ``members``,
``backend``, ``data_parallel_devices``, ``seed``, ``dataset``. Accuracies are fractions.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from convjax import data as cdata
from convjax.train import config as config_lib
from convjax.train import distributed, loops, optim, plots, report, sharding
from convjax.train import population as pop
from convjax.train.checkpoint import Checkpointer
from convjax.train.inputs import load_population_data
from convjax.train.metrics import MetricsWriter, NullWriter, ProgressBar
from convjax.train.state import LoopState, create_train_state, merge_model, rng_stream_names
from convjax.train.steps import health_layers, make_eval_step, make_train_step

__all__ = [
    "POPULATION_FIELDS",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "check_population",
    "fit",
    "train_and_evaluate",
]

RESULTS_FILE = "results.json"

#: Config fields that may differ between the members of one population.
POPULATION_FIELDS = (
    "learning_rate",
    "weight_decay",
    "momentum",
    "label_smoothing",
    "seed",
    "model.dropout",
)

#: Population fields whose on/off state (value > 0) is structural: the zoo builds no Dropout
#: layer for a zero rate, and building one draws from the init RNG, so a rate-0 member and a
#: rate-0.3 member start from different weights.
PRESENCE_FIELDS = ("model.dropout",)

#: Fields that change only output or the loop form, never a number: members may differ in them
#: (the first member's values are used).
OUTPUT_FIELDS = (
    "loop",
    "steps_per_call",
    "log_every_steps",
    "progress",
    "tensorboard",
    "verbose",
    "figures",
)


class NonFiniteLossError(FloatingPointError):
    """A single run's loss or gradient became NaN or Inf; the message names the step."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was saved at ``step``. Call again to resume."""

    def __init__(self, signum: int, step: int, checkpoint_dir: str):
        self.signum, self.step, self.checkpoint_dir = signum, step, checkpoint_dir
        super().__init__(
            f"{signal.Signals(signum).name} received: checkpoint saved at step {step} in "
            f"{checkpoint_dir}; run the same command again to resume."
        )


def structure_key(config, population_fields: Sequence[str] = POPULATION_FIELDS) -> tuple:
    """What members of one population must share: every field of a prepared config except
    ``population_fields`` and :data:`OUTPUT_FIELDS`, plus the on/off state of
    :data:`PRESENCE_FIELDS` (a hashable tuple)."""
    flat = config_lib.flatten(config)
    key = [
        (k, repr(v))
        for k, v in sorted(flat.items())
        if k not in population_fields and k not in OUTPUT_FIELDS
    ]
    key += [
        (f"{k} > 0", flat[k] > 0) for k in PRESENCE_FIELDS if k in population_fields and k in flat
    ]
    return tuple(key)


def check_population(configs: Sequence[Any]) -> None:
    """Raise ``ValueError`` unless prepared configs differ only in :data:`POPULATION_FIELDS`."""
    if not configs:
        raise ValueError("fit: configs=[] is empty; pass at least one config.")
    ref = dict(structure_key(configs[0]))
    for i, c in enumerate(configs[1:], start=1):
        cur = dict(structure_key(c))
        diff = sorted(k for k in set(ref) | set(cur) if ref.get(k) != cur.get(k))
        if diff:
            raise ValueError(
                f"fit: configs[{i}] differs from configs[0] in structural fields {diff}; members "
                f"of one population may differ only in {POPULATION_FIELDS} (and "
                f"{list(PRESENCE_FIELDS)} only among nonzero values). Split them into groups "
                "(convjax.train.runs.train_runs does this)."
            )


# ---------------------------------------------------------------------------- set-up


class _Run:
    """What stays fixed for a whole call of :func:`fit`: configs, data, model, steps, output."""

    def __init__(self, cfgs, workdir, member_dirs, strategy, mesh, log):
        self.t_start = time.perf_counter()
        self.main = distributed.is_main_process()  # only process 0 writes files
        self.cfgs, self.c0, self.n = cfgs, cfgs[0], len(cfgs)
        self.workdir = Path(workdir)
        self.member_dirs = [Path(d) for d in member_dirs]
        self.strategy, self.mesh_option = strategy, mesh
        self.out = sys.stdout if self.c0.verbose else open(os.devnull, "w")  # noqa: SIM115
        self.log = log or (lambda s: print(s, file=self.out, flush=True))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._check_model_before_data()
        replicate = lambda x: x  # placement per live set happens in _Programs
        self.data = load_population_data(cfgs, replicate)
        ds = self.data.first
        self.bs = int(self.c0.batch_size)
        if self.bs > self.data.n_train:
            raise ValueError(
                f"config.batch_size={self.bs} is larger than the {self.data.n_train} training "
                "examples; use a smaller batch_size."
            )
        self.steps_per_epoch = self.data.n_train // self.bs
        self.tx = optim.make_optimizer(self.c0, self.steps_per_epoch, member_rates=self.n > 1)
        self.ema_decay = float(self.c0.ema_decay)
        self.fresh, self.model_def, model = [], None, None
        for c in cfgs:
            m = config_lib.make_model(c, ds.image_shape, ds.num_classes)
            model_def, st = create_train_state(m, self.tx, ema=self.ema_decay > 0)
            if self.n > 1:
                st = st._replace(
                    opt_state=pop.set_hyperparams(st.opt_state, **optim.member_hyperparams(c))
                )
            self.fresh.append(st)
            if self.model_def is None:
                self.model_def, model = model_def, m
        self.num_params = int(sum(x.size for x in jax.tree.leaves(self.fresh[0].params)))
        text = _summary_text(model, ds.image_shape)
        if self.main:
            (self.workdir / "summary.txt").write_text(text + "\n")
        print(text, file=self.out, flush=True)
        self._build_member_steps(model)
        form = self.c0.loop
        self.form, self.k_best = loops.best_form() if form == "auto" else (form, 1)
        if self.c0.steps_per_call:
            self.k_best = int(self.c0.steps_per_call)
        self.roots = [jax.random.split(jax.random.key(int(c.seed))) for c in cfgs]
        self.ckpt = Checkpointer(self.workdir)

    def _check_model_before_data(self) -> None:
        shape = cdata.dataset_shape(self.c0.dataset)
        if shape is None:
            return
        try:
            nnx.eval_shape(lambda: config_lib.make_model(self.c0, *shape))
        except (ValueError, TypeError) as e:
            raise config_lib.ConfigError(f"config.model: {e}") from None

    def _build_member_steps(self, model) -> None:
        aug = self.c0.augment.to_dict()
        dropout_paths = _dropout_paths(self.c0, self.data.first) if self.n > 1 else None
        self.hparams = {
            "label_smoothing": np.array([c.label_smoothing for c in self.cfgs], np.float32)
        }
        if dropout_paths:
            self.hparams["dropout_rate"] = np.array(
                [c.model.dropout for c in self.cfgs], np.float32
            )
        self.health = (
            health_layers(self.fresh[0].params) if self.c0.grad_health_every_steps else None
        )
        streams = rng_stream_names(model)
        by_stats: dict[tuple, tuple[Callable, Callable]] = {}
        self.train_steps, self.eval_steps = [], []
        for m in range(self.n):
            stats = self.data.stats(m)
            if stats not in by_stats:
                mean, std = stats
                train = make_train_step(
                    self.model_def,
                    self.tx,
                    mean=mean,
                    std=std,
                    augment=aug,
                    ema_decay=self.ema_decay,
                    rng_streams=streams,
                    dropout_paths=dropout_paths,
                    freeze_on_divergence=self.n > 1,
                    health=self.health is not None,
                )
                ev = make_eval_step(self.model_def, mean=mean, std=std, tta_flip=self.c0.tta_flip)
                by_stats[stats] = (train, lambda st, b, key, hp, ev=ev: ev(st, *b))
            self.train_steps.append(by_stats[stats][0])
            self.eval_steps.append(by_stats[stats][1])
        self.shared_step = len(by_stats) == 1

    def template(self, live: Sequence[int]):
        """The stacked fresh states of the live members (shapes for a restore)."""
        return pop.stack([self.fresh[m] for m in live])


def _summary_text(model, image_shape) -> str:
    import convjax.inspect as ci

    return ci.summary(model, tuple(image_shape), print_fn=lambda *a, **k: None).to_text()


def _dropout_paths(cfg, ds) -> list[tuple]:
    """Module paths of the Dropout layers whose rate is ``cfg.model.dropout`` (none if 0 or the
    model has no such argument): the layers whose rate changes when the model is built a
    second time with another rate (a model's other dropout knobs keep theirs)."""
    import convjax.nn as cnn

    rate = float(cfg.model.get("dropout", 0.0) or 0.0)
    if rate <= 0.0:
        return []
    probe = config_lib.apply_overrides(cfg, {"model.dropout": 0.5 if rate != 0.5 else 0.25})

    def rates(c):
        model = nnx.eval_shape(lambda: config_lib.make_model(c, ds.image_shape, ds.num_classes))
        return {p: m.rate for p, m in nnx.iter_modules(model) if isinstance(m, cnn.Dropout)}

    built, other = rates(cfg), rates(probe)
    return sorted(p for p in built if built[p] != other.get(p))


class _Programs:
    """The compiled functions and placed arrays for one set of live members.

    One live member runs without a member axis on the device (``single``): the program is then
    exactly a plain single run's (a member axis of size 1 changes XLA's fusion of the batch-norm
    reductions, and with it the last bits). Host-side values always carry the member axis.
    """

    def __init__(self, run: _Run, live: Sequence[int]):
        self.live = list(live)
        n, c0 = len(live), run.c0
        self.single = n == 1
        devices = jax.devices() if jax.process_count() > 1 else jax.local_devices()
        self.mesh = mesh = (
            None
            if run.mesh_option is None
            else sharding.population_mesh(
                n,
                (run.bs, int(c0.eval_batch_size)),
                int(c0.data_parallel),
                shared_step=run.shared_step,
                devices=devices,
            )
        )
        self.devices = 1 if mesh is None else mesh.devices.size
        if mesh is None:
            self.replicate = jax.device_put
        else:
            self.replicate = lambda t: sharding.replicate(t, mesh)
        pick = lambda steps: steps[live[0]] if run.shared_step else [steps[m] for m in live]
        self.strategy = pop.resolve_strategy(run.strategy, pick(run.train_steps))
        self.form = run.form
        self.k = (
            1
            if run.form == "step"
            else (int(c0.steps_per_call) or loops.steps_per_call(run.k_best, n))
        )
        train_fn = (
            run.train_steps[live[0]]
            if self.single
            else pop.population_fn(
                pick(run.train_steps), run.strategy, batch_per_member=True, mesh=mesh
            )
        )
        constrain = (
            None
            if mesh is None
            else (lambda b: sharding.constrain_batch(b, mesh, per_member=not self.single))
        )
        self.train = loops.StepCache(
            train_fn,
            self.form,
            self.k,
            per_member_images=not run.data.shared_train,
            single=self.single,
            constrain=constrain,
        )
        self.eval_shared = self._eval_fn(run, pick, batch_per_member=False)
        self.eval_per_member = self._eval_fn(run, pick, batch_per_member=True)
        self.hparams = self.place_members(
            {k: jnp.asarray(v[self.live]) for k, v in run.hparams.items()}
        )
        self.keys = self.place_members(jax.random.split(jax.random.key(0), n))  # eval ignores
        self.train_images, self.train_labels = run.data.train_arrays(live, self.replicate)
        self.val = (
            run.data.validation_arrays(live, self.replicate) if run.data.has_validation else None
        )
        self.compiled: set[int] = set()

    def place_members(self, tree):
        """Put a tree with a leading member axis on the device(s) (without it when single)."""
        if self.single:
            return self.replicate(jax.tree.map(lambda x: x[0], tree))
        if self.mesh is None:
            return jax.device_put(tree)
        return sharding.shard_population(tree, self.mesh)

    def host(self, tree):
        """A device tree as host arrays with the member axis."""
        tree = distributed.gather(tree)
        return jax.tree.map(lambda x: np.asarray(x)[None], tree) if self.single else tree

    def _eval_fn(self, run, pick, *, batch_per_member):
        mesh = self.mesh
        if self.single:
            step = run.eval_steps[self.live[0]]
            fn = lambda st, b, k, hp: jax.tree.map(lambda v: v[None], step(st, b, k, hp))
        else:
            fn = pop.population_fn(
                pick(run.eval_steps), run.strategy, batch_per_member=batch_per_member, mesh=mesh
            )
        if mesh is None:
            return jax.jit(fn)
        per_member = batch_per_member and not self.single

        def constrained(states, batch, keys, hparams):
            batch = sharding.constrain_batch(batch, mesh, per_member=per_member)
            return fn(states, batch, keys, hparams)

        return jax.jit(constrained)


# ---------------------------------------------------------------------------- the loop


@contextlib.contextmanager
def _signal_flag():
    """Record SIGINT/SIGTERM in a list instead of dying (main thread only)."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, lambda signum, frame: received.append(signum))
    try:
        yield received
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _global_step(run: _Run, loop: LoopState) -> int:
    return loop.epoch * run.steps_per_epoch + loop.batch


def _train_epoch(run, loop, states, progs, writers, signals):
    """Run the rest of epoch ``loop.epoch`` (from ``loop.batch``).

    Returns ``(states, images/s of this epoch's steady calls or None)``.
    """
    epoch, spe = loop.epoch, run.steps_per_epoch
    orders = jnp.stack(
        [
            cdata.epoch_permutation(
                jax.random.fold_in(run.roots[m][0], epoch), run.data.n_train, run.bs
            )
            for m in progs.live
        ]
    )
    epoch_keys = jnp.stack([jax.random.fold_in(run.roots[m][1], epoch) for m in progs.live])
    orders, epoch_keys = progs.place_members(orders), progs.place_members(epoch_keys)
    bar = ProgressBar(spe, f"epoch {epoch + 1}/{run.c0.num_epochs}", enabled=run.c0.progress)
    images, seconds = 0, 0.0  # this epoch's steady calls
    for b, n in loops.chunks(loop.batch, spe, progs.k):
        t0 = time.perf_counter()
        states, m = progs.train.get(n)(
            states, progs.train_images, progs.train_labels, orders, b, epoch_keys, progs.hparams
        )
        m = distributed.gather(m)
        dt = time.perf_counter() - t0
        loop.train_time_s += dt
        if n in progs.compiled:
            loop.steady_images += n * run.bs * len(progs.live)
            loop.steady_time_s += dt
            images, seconds = images + n * run.bs * len(progs.live), seconds + dt
        else:
            progs.compiled.add(n)
            loop.compile_s += dt
        rate = images / seconds if seconds else 0.0
        lr_now = lambda st=states: optim.learning_rates(
            progs.host(pop.get_hyperparams(st.opt_state))
        )
        _record_chunk(run, loop, progs, m, b, n, writers, rate, lr_now)
        loop.batch = b + n
        logs = [loop.members[j] for j in progs.live]
        bar.update(
            b + n,
            np.mean([g.loss_sum / max(1, g.seen // run.bs) for g in logs]),
            np.mean([g.correct / max(1, g.seen) for g in logs]),
            rate,
        )
        if signals and b + n < spe:
            bar.close()
            _save(run, loop, progs.host(states))
            raise TrainingInterrupted(signals[0], _global_step(run, loop), str(run.ckpt.directory))
    bar.close()
    return states, (images / seconds if seconds else None)


def _record_chunk(run, loop, progs, m, b, n, writers, rate, lr_now) -> None:
    """Fold one chunk's per-step metrics ``(n, N_live)`` into the members' logs."""
    epoch, spe = loop.epoch, run.steps_per_epoch
    log_due = (b + n) // run.c0.log_every_steps != b // run.c0.log_every_steps
    lrs = lr_now() if log_due else None
    for j, member in enumerate(progs.live):
        g = loop.members[member]
        if g.status != "training":
            continue
        ok = np.asarray(m["ok"][:, j] if "ok" in m else np.isfinite(m["loss"][:, j]), bool)
        good = n if ok.all() else int(np.argmin(ok))
        losses = np.asarray(m["loss"][:good, j], np.float64)
        correct = int(np.sum(m["correct"][:good, j]))
        g.loss_sum += float(losses.sum())
        g.correct += correct
        g.seen += good * run.bs
        if good < n:
            _diverged(run, loop, member, float(m["loss"][good, j]), b + good + 1)
        if log_due and good:
            writers[member].write(
                "train_log",
                epoch * spe + b + n,
                epoch=epoch + 1,
                loss=float(losses.mean()),
                accuracy=correct / (good * run.bs),
                learning_rate=float(lrs[j]),
                images_per_s=rate,
            )
        every = run.c0.grad_health_every_steps
        for i in range(good if run.health is not None else 0):
            step = epoch * spe + b + i + 1
            if step % every == 0:
                _write_health(
                    run, writers[member], step, {k: v[i, j] for k, v in m["health"].items()}
                )


def _diverged(run, loop, member: int, loss: float, batch: int) -> None:
    """Mark ``member`` diverged at ``batch`` of this epoch (a single run stops here)."""
    step = loop.epoch * run.steps_per_epoch + batch
    what = f"loss is {loss}" if not np.isfinite(loss) else f"gradient is not finite (loss {loss})"
    if run.n == 1:
        last = run.ckpt.latest_step()
        raise NonFiniteLossError(
            f"{what} at step {step} (epoch {loop.epoch + 1}, batch {batch}/"
            f"{run.steps_per_epoch}); training stopped. The last good checkpoint is "
            + (f"step {last} in {run.ckpt.directory}" if last is not None else "none")
            + "; lower the learning rate or check the data."
        )
    g = loop.members[member]
    g.status, g.diverged_step = "diverged", step
    run.log(f"member {member}: {what} at step {step}; frozen at its last good state")


def _write_health(run, writer, step, norms) -> None:
    """One ``"health"`` record: per-layer gradient and update norms and update/parameter."""
    names = [name for name, _ in run.health]
    grad, update, param = (np.asarray(norms[k], np.float64) for k in ("grad", "update", "param"))
    ratio = update / np.maximum(param, 1e-30)
    writer.write(
        "health",
        step,
        grad_norm=dict(zip(names, grad.tolist())),
        update_norm=dict(zip(names, update.tolist())),
        update_to_param=dict(zip(names, ratio.tolist())),
    )


def _evaluate(run, progs, states, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(mean loss, accuracy)`` per live member on ``"val"`` or ``"test"``, each ``(N_live,)``."""
    if split == "val":
        images, labels = progs.val
        fn, axis = progs.eval_per_member, 1
        if progs.single:
            images, labels, axis = images[0], labels[0], 0
    else:
        images, labels = run.data.test_images, run.data.test_labels
        fn, axis = progs.eval_shared, 0
    total = int(labels.shape[axis])
    ebs = int(run.c0.eval_batch_size)
    loss = np.zeros(len(progs.live))
    correct = np.zeros(len(progs.live), np.int64)
    for i in range(0, total, ebs):
        if axis:
            batch = (images[:, i : i + ebs], labels[:, i : i + ebs])
        else:
            batch = (images[i : i + ebs], labels[i : i + ebs])
        m = distributed.gather(fn(states, batch, progs.keys, progs.hparams))
        loss += m["loss_sum"]
        correct += m["correct"]
    return loss / total, correct / total


def _end_epoch(run, loop, states, progs, writers, epoch_rate, t_epoch):
    """Evaluate, record, early-stop, compact and checkpoint after an epoch; returns the states
    and the programs for the (possibly fewer) members that train on."""
    epoch, c0 = loop.epoch, run.c0
    recs = [{"epoch": epoch + 1} for _ in progs.live]
    logs = [loop.members[m] for m in progs.live]
    for r, g in zip(recs, logs):
        steps = max(1, g.seen // run.bs)
        r.update(train_loss=g.loss_sum / steps, train_accuracy=g.correct / max(1, g.seen))
    if run.data.has_validation:
        vl, va = _evaluate(run, progs, states, "val")
        for j, r in enumerate(recs):
            r.update(val_loss=float(vl[j]), val_accuracy=float(va[j]))
    last_epoch = epoch + 1 == c0.num_epochs
    leaving = [_early_stop(c0, g, r) for g, r in zip(logs, recs)]
    if c0.eval_test_every_epoch or last_epoch or any(leaving):
        tl, ta = _evaluate(run, progs, states, "test")
        for j, r in enumerate(recs):
            r.update(test_loss=float(tl[j]), test_accuracy=float(ta[j]))
    lrs = optim.learning_rates(progs.host(pop.get_hyperparams(states.opt_state)))
    step = (epoch + 1) * run.steps_per_epoch
    for j, (member, g, r) in enumerate(zip(progs.live, logs, recs)):
        r.update(
            learning_rate=float(lrs[j]),
            epoch_time_s=time.perf_counter() - t_epoch,
            elapsed_s=time.perf_counter() - run.t_start,
            images_per_s=epoch_rate,
        )
        if g.status == "training" or g.stopped_epoch is None:
            for key in g.history:
                g.history[key].append(r.get(key))
            writers[member].write("epoch", step, **r)
            if g.status == "diverged" or leaving[j]:
                g.stopped_epoch = epoch + 1
            elif last_epoch:
                g.status, g.stopped_epoch = "finished", epoch + 1
        g.loss_sum, g.correct, g.seen = 0.0, 0, 0
    _log_epoch(run, loop, progs, recs, leaving)
    loop.epoch, loop.batch = epoch + 1, 0
    remaining = [m for m in progs.live if loop.members[m].status == "training"]
    if remaining and len(remaining) < len(progs.live):
        keep = np.array([progs.live.index(m) for m in remaining])
        states = jax.tree.map(lambda x: x[keep], progs.host(states))
        loop.live = remaining
        progs = _Programs(run, remaining)
        states = progs.place_members(states)
    _save(run, loop, progs.host(states))
    for w in writers:
        w.flush()
    return states, progs


def _early_stop(c0, g, rec) -> bool:
    """Update ``g``'s early-stopping counters with this epoch; True if it stops now."""
    if g.status != "training" or not c0.early_stopping_patience:
        return False
    va = rec["val_accuracy"]
    if g.best_val_accuracy is None or va > g.best_val_accuracy:
        g.best_val_accuracy, g.bad_epochs = va, 0
        return False
    g.bad_epochs += 1
    if g.bad_epochs < c0.early_stopping_patience:
        return False
    g.status = "stopped_early"
    return True


def _log_epoch(run, loop, progs, recs, leaving) -> None:
    pct = lambda v: f"{100 * v:.2f}%"
    if run.n == 1:
        r = recs[0]
        msg = f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {pct(r['train_accuracy'])}"
        for split, name in (("val", "val"), ("test", "test")):
            if f"{split}_accuracy" in r:
                msg += f", {name} acc {pct(r[f'{split}_accuracy'])}"
        run.log(msg + f" ({r['epoch_time_s']:.1f} s)")
        if leaving[0]:
            run.log(
                f"early stopping: validation accuracy has not improved for "
                f"{run.c0.early_stopping_patience} epoch(s)"
            )
        return
    key = "val_accuracy" if run.data.has_validation else "test_accuracy"
    accs = " ".join(
        f"{m}:{100 * r[key]:.1f}" if key in r else f"{m}:-" for m, r in zip(progs.live, recs)
    )
    stopped = [m for m, x in zip(progs.live, leaving) if x]
    run.log(
        f"epoch {recs[0]['epoch']}/{run.c0.num_epochs}: {len(progs.live)} members "
        f"({progs.strategy}), {key.split('_')[0]} acc {accs} "
        f"({recs[0]['epoch_time_s']:.1f} s)"
        + (f"; early stopping: members {stopped}" if stopped else "")
    )


def _save(run, loop, host_states) -> None:
    run.ckpt.save(_global_step(run, loop), host_states, loop)


# ---------------------------------------------------------------------------- results


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
        "steps": (g.diverged_step - 1) if g.diverged_step else epochs * run.steps_per_epoch,
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


def _figures(run, member: int, state, results) -> None:
    """Learning curves always; model pictures when the member's final state is given."""
    folder = run.member_dirs[member]
    points = _train_points(folder / "metrics.jsonl", run.steps_per_epoch)
    fig = report.learning_curves_figure(
        results["history"],
        train_points=points,
        label_smoothing=float(run.cfgs[member].label_smoothing),
    )
    report.save_figure(fig, folder / "learning_curves.png")
    if state is None:
        return
    params = state.params if state.ema_params is None else state.ema_params
    model = merge_model(run.model_def, params, state.batch_stats)
    ds = run.data.datasets[member]
    plots.plot_first_layer_filters(model, ds.image_shape, folder / "first_layer_filters.png")
    mean, std = ds.train_mean_std
    x = cdata.normalize(ds.test_images[0], mean, std)
    label = ds.class_names[int(ds.test_labels[0])]
    plots.plot_activation_maps(model, x, folder / "activation_maps.png", label=f"test 0: {label}")


def _train_points(path: Path, steps_per_epoch: int) -> list[tuple[float, float, float]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train_log":
            out.append((rec["step"] / steps_per_epoch, rec["loss"], rec["accuracy"]))
    return out


# ---------------------------------------------------------------------------- entry points


def fit(
    configs: Sequence[Any],
    workdir,
    *,
    member_dirs: Sequence[Any] | None = None,
    strategy: str = "auto",
    mesh: str | None = "auto",
    log: Callable[[str], None] | None = None,
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
    run = _Run(cfgs, workdir, member_dirs, strategy, mesh, log)
    for c, d in zip(cfgs, run.member_dirs):
        d.mkdir(parents=True, exist_ok=True)
        if run.main:
            report.write_json(d / "config.json", config_lib.to_json_dict(c))
    restored = run.ckpt.restore(lambda loop: run.template(loop.live))
    if restored is None:
        loop, states = LoopState.fresh(run.n), run.template(range(run.n))
    else:
        states, loop = restored
        run.log(
            f"resumed from checkpoint at step {_global_step(run, loop)} "
            f"(epoch {loop.epoch + 1}, batch {loop.batch})"
        )
    resume = _global_step(run, loop)
    writers = [
        MetricsWriter(d, tensorboard=run.c0.tensorboard, resume_step=resume)
        if run.main
        else NullWriter()
        for d in run.member_dirs
    ]
    progs = _Programs(run, loop.live)
    states = progs.place_members(states)
    try:
        with _signal_flag() as signals:
            while any(loop.members[m].status == "training" for m in loop.live):
                t_epoch = time.perf_counter()
                states, rate = _train_epoch(run, loop, states, progs, writers, signals)
                states, progs = _end_epoch(run, loop, states, progs, writers, rate, t_epoch)
                if signals and any(loop.members[m].status == "training" for m in loop.live):
                    raise TrainingInterrupted(
                        signals[0], _global_step(run, loop), str(run.ckpt.directory)
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
                jax.tree.map(lambda x, j=progs.live.index(m): jnp.asarray(x[j]), host)
                if m in progs.live
                else None
            )
            _figures(run, m, state, r)
        report.write_json(run.member_dirs[m] / RESULTS_FILE, r)
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
