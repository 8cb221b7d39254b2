"""One epoch of a fit, in short functions: train its steps (:func:`train_epoch`, folding each
chunk's metrics into the members' logs), then :func:`end_epoch` (evaluate, record, early-stop,
drop the members that left, checkpoint).

Every function takes the fit's :class:`~convjax.train.build.Run` (fixed), its
:class:`~convjax.train.state.LoopState` (changed in place) and the current stacked train state
with its :class:`~convjax.train.build.Programs`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np

from convjax import data as cdata
from convjax.train import distributed, loops, optim
from convjax.train import population as pop
from convjax.train.build import Programs, Run, set_member_hparams
from convjax.train.errors import NonFiniteLossError, TrainingInterrupted
from convjax.train.metrics import ProgressBar
from convjax.train.schedules import PBT, Halving
from convjax.train.state import LoopState


@contextlib.contextmanager
def signal_flag():
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


def global_step(run: Run, loop: LoopState) -> int:
    return loop.epoch * run.steps_per_epoch + loop.batch


def _epoch_inputs(run, progs, epoch: int):
    """The live members' data orders ``(N, batches, B)`` and step keys ``(N,)`` of ``epoch``."""
    orders = jnp.stack(
        [
            cdata.epoch_permutation(
                jax.random.fold_in(run.roots[m][0], epoch), run.data.n_train, run.bs
            )
            for m in progs.live
        ]
    )
    keys = jnp.stack([jax.random.fold_in(run.roots[m][1], epoch) for m in progs.live])
    return progs.place_members(orders), progs.place_members(keys)


def train_epoch(run, loop, states, progs, writers, signals, t_epoch):
    """Run the rest of epoch ``loop.epoch`` (from ``loop.batch``), with the schedule's rounds
    inside it (:func:`at_step`).

    Returns ``(states, programs, images/s of this epoch's steady calls or None)``.
    """
    epoch, spe = loop.epoch, run.steps_per_epoch
    breaks = run.breaks(epoch)
    orders, epoch_keys = _epoch_inputs(run, progs, epoch)
    bar = ProgressBar(spe, f"epoch {epoch + 1}/{run.c0.num_epochs}", enabled=run.c0.progress)
    images, seconds = 0, 0.0  # this epoch's steady calls
    while loop.batch < spe:
        b = loop.batch
        n = loops.next_chunk(b, spe, progs.k, breaks)
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
        lr_now = lambda st=states, p=progs: optim.learning_rates(
            p.host(pop.get_hyperparams(st.opt_state))
        )
        _record_chunk(run, loop, progs, m, b, n, writers, rate, lr_now)
        loop.batch = b + n
        if loop.batch in breaks:
            live = progs.live
            states, progs = at_step(run, loop, states, progs, writers, t_epoch)
            if progs.live != live:
                orders, epoch_keys = _epoch_inputs(run, progs, epoch)
        logs = [loop.members[j] for j in progs.live]
        bar.update(
            loop.batch,
            np.mean([g.loss_sum / max(1, g.seen // run.bs) for g in logs]),
            np.mean([g.correct / max(1, g.seen) for g in logs]),
            rate,
        )
        if signals and loop.batch < spe:
            bar.close()
            save(run, loop, progs.host(states))
            raise TrainingInterrupted(signals[0], global_step(run, loop), str(run.ckpt.directory))
    bar.close()
    return states, progs, (images / seconds if seconds else None)


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


def evaluate(run, progs, states, split: str) -> tuple[np.ndarray, np.ndarray]:
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


def _records(run, loop, progs, states) -> list[dict]:
    """The live members' records of the current (maybe partial) epoch: train sums, validation."""
    recs = []
    for m in progs.live:
        g = loop.members[m]
        recs.append(
            {
                "epoch": loop.epoch + 1,
                "train_loss": g.loss_sum / max(1, g.seen // run.bs),
                "train_accuracy": g.correct / max(1, g.seen),
            }
        )
    if run.data.has_validation:
        vl, va = evaluate(run, progs, states, "val")
        for j, r in enumerate(recs):
            r.update(val_loss=float(vl[j]), val_accuracy=float(va[j]))
    return recs


def _finish_records(run, progs, states, recs, t_epoch, epoch_rate, *, test: bool) -> None:
    if test:
        tl, ta = evaluate(run, progs, states, "test")
        for j, r in enumerate(recs):
            r.update(test_loss=float(tl[j]), test_accuracy=float(ta[j]))
    lrs = optim.learning_rates(progs.host(pop.get_hyperparams(states.opt_state)))
    now = time.perf_counter()
    for j, r in enumerate(recs):
        r.update(
            learning_rate=float(lrs[j]),
            epoch_time_s=now - t_epoch,
            elapsed_s=now - run.t_start,
            images_per_s=epoch_rate,
        )


def _append(g, writer, step: int, rec: dict) -> None:
    for key in g.history:
        g.history[key].append(rec.get(key))
    writer.write("epoch", step, **rec)


def _halving_cut(run, loop, progs, recs, step: int) -> list[int]:
    """Members successive halving stops at ``step`` (statuses set; none if no rung here)."""
    sched = run.schedule
    if not isinstance(sched, Halving) or step not in sched.rungs:
        return []
    values = {
        m: r[sched.metric] for m, r in zip(progs.live, recs) if loop.members[m].status == "training"
    }
    keep = sched.survivors(values)
    cut = [m for m in values if m not in keep]
    for m in cut:
        loop.members[m].status = "stopped"
    run.log(f"successive halving at step {step}: members {keep} train on, {cut} stop")
    return cut


def _pbt_round(run, loop, states, progs, recs, step: int, writers):
    """Population-based training at ``step``: the worst copy the best and explore."""
    sched = run.schedule
    if not isinstance(sched, PBT) or step not in run.event_steps:
        return states
    values = {
        m: r[sched.metric] for m, r in zip(progs.live, recs) if loop.members[m].status == "training"
    }
    decisions = sched.exploit_explore(step, values, {m: loop.members[m].hparams for m in values})
    if not decisions:
        return states
    host = jax.tree.map(np.array, progs.host(states))  # writable copies
    pos = {m: j for j, m in enumerate(progs.live)}
    for member, source, new in decisions:
        for leaf in jax.tree.leaves(host):
            leaf[pos[member]] = leaf[pos[source]]
        g = loop.members[member]
        g.hparams = {**loop.members[source].hparams, **new}
        g.hparam_schedule.append({"step": step, "copied_from": source, **g.hparams})
        writers[member].write("pbt", step, copied_from=source, **new)
    host = host._replace(opt_state=set_member_hparams(run, loop, progs.live, host.opt_state))
    progs.update_hparams(run)
    run.log(
        f"population-based training at step {step}: "
        + ", ".join(f"{m} <- {s}" for m, s, _ in decisions)
    )
    return progs.place_members(host)


def _compact(run, loop, states, progs):
    """Drop the members that stopped training from the stacked state (none if none trains)."""
    remaining = [m for m in progs.live if loop.members[m].status == "training"]
    if not remaining or len(remaining) == len(progs.live):
        return states, progs
    keep = np.array([progs.live.index(m) for m in remaining])
    host = jax.tree.map(lambda x: x[keep], progs.host(states))
    loop.live = remaining
    progs = Programs(run, remaining)
    return progs.place_members(host), progs


def at_step(run, loop, states, progs, writers, t_epoch):
    """A schedule's round inside an epoch (after ``loop.batch`` batches): evaluate, halve or
    exploit/explore, and drop the members that stopped. Returns the states and programs."""
    step = global_step(run, loop)
    recs = _records(run, loop, progs, states)
    cut = _halving_cut(run, loop, progs, recs, step)
    if cut:
        _finish_records(run, progs, states, recs, t_epoch, None, test=True)
        for m, r in zip(progs.live, recs):
            if m in cut:
                g = loop.members[m]
                g.stopped_epoch, g.stopped_step = loop.epoch + 1, step
                _append(g, writers[m], step, r)
    states = _pbt_round(run, loop, states, progs, recs, step, writers)
    return _compact(run, loop, states, progs)


def end_epoch(run, loop, states, progs, writers, epoch_rate, t_epoch):
    """Evaluate, record, early-stop, run the schedule, compact and checkpoint after an epoch;
    returns the states and the programs for the (possibly fewer) members that train on."""
    epoch, c0 = loop.epoch, run.c0
    step = (epoch + 1) * run.steps_per_epoch
    logs = [loop.members[m] for m in progs.live]
    recs = _records(run, loop, progs, states)
    stopped = [_early_stop(c0, g, r) for g, r in zip(logs, recs)]
    cut = _halving_cut(run, loop, progs, recs, step)
    last_epoch = epoch + 1 == c0.num_epochs
    left = [g.status != "training" and g.stopped_epoch is None for g in logs]
    _finish_records(
        run,
        progs,
        states,
        recs,
        t_epoch,
        epoch_rate,
        test=c0.eval_test_every_epoch or last_epoch or any(left),
    )
    for member, g, r in zip(progs.live, logs, recs):
        if g.status == "training" or g.stopped_epoch is None:
            _append(g, writers[member], step, r)
            if g.status != "training":
                g.stopped_epoch, g.stopped_step = epoch + 1, g.stopped_step or step
            elif last_epoch:
                g.status, g.stopped_epoch, g.stopped_step = "finished", epoch + 1, step
        g.loss_sum, g.correct, g.seen = 0.0, 0, 0
    _log_epoch(run, loop, progs, recs, stopped, cut)
    loop.epoch, loop.batch = epoch + 1, 0
    states = _pbt_round(run, loop, states, progs, recs, step, writers)
    states, progs = _compact(run, loop, states, progs)
    save(run, loop, progs.host(states))
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


def _log_epoch(run, loop, progs, recs, leaving, cut) -> None:
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
        + (f"; successive halving stops {cut}" if cut else "")
    )


def save(run, loop, host_states) -> None:
    run.ckpt.save(global_step(run, loop), host_states, loop)
