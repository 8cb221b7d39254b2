"""``train_and_evaluate(config, workdir)``: the one entry point experiments and tests call.

What it does, in order:

1. Prepares the config (:func:`prepare_config`: a copy, the ``smoke`` shrink applied, checks)
   and writes it to ``WORKDIR/config.json``.
2. Loads the data set (``convjax.data.load_dataset``), holds out a validation split when
   ``validation_size > 0``, and puts the uint8 images on the device once. Batches are sliced,
   augmented and normalised on the device inside the jitted step. With more than one local
   device (``config.data_parallel``, default 0 = all that divide the batch size; on a CPU
   :mod:`convjax.xla_env` makes one device per core) the images and the state are replicated
   and every batch is split over the devices.
3. Builds the model (:func:`make_model`), saves and prints its ``convjax.inspect`` summary
   (``WORKDIR/summary.txt``), builds the optimizer and the train state.
4. Resumes from the newest checkpoint in ``WORKDIR/checkpoints`` if there is one.
5. Trains epoch by epoch. Epoch ``e``'s data order is ``epoch_permutation(fold_in(data_key,
   e))`` and step ``b``'s key is ``fold_in(fold_in(step_key, e), b)``: every random choice is a
   function of ``(seed, epoch, batch)``, so a resumed run repeats an uninterrupted one exactly.
   Steps run in chunks of ``k`` in the loop form chosen by measurement
   (:mod:`convjax.train.loops`); a chunk returns its per-step losses, which are checked for
   NaN/Inf (the run stops with :class:`NonFiniteLossError` naming the step; the last good
   checkpoint stays the newest on disk).
6. After each epoch: evaluation on the validation split (if any) and the test split, one
   ``"epoch"`` metrics record, early stopping on validation accuracy, a checkpoint.
7. SIGINT/SIGTERM: the current chunk finishes, a checkpoint is saved at that step and
   :class:`TrainingInterrupted` is raised; calling again resumes.
8. At the end: ``WORKDIR/results.json``, ``learning_curves.png``, ``first_layer_filters.png``,
   ``activation_maps.png``; returns the results dict.

Results dict keys: ``test_accuracy``, ``test_loss`` (final, on the EMA weights if EMA is on),
``val_accuracy`` (or None), ``history`` (per-epoch lists: ``train_loss``,
``train_accuracy``, ``val_loss``, ``val_accuracy``, ``test_loss``, ``test_accuracy``,
``learning_rate``, ``epoch_time_s``, ``images_per_s``, ``elapsed_s`` -- wall time since the
start of the call that ran the epoch), ``epochs_run``, ``stopped_early``,
``steps``, ``train_time_s`` (time in train steps, summed over resumed parts, compiles
included), ``compile_s``, ``images_per_s`` (steady state, compiles excluded),
``total_time_s``, ``num_params``, ``loop_form``, ``steps_per_call``, ``backend``,
``data_parallel_devices``, ``seed``.
Accuracies are fractions in ``[0, 1]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx

from convjax import data as cdata
from convjax import models as cmodels
from convjax.train import loops, optim, plots, sharding
from convjax.train.checkpoint import Checkpointer
from convjax.train.metrics import MetricsWriter, ProgressBar
from convjax.train.state import create_train_state, merge_model, rng_stream_names
from convjax.train.steps import make_eval_step, make_train_step

RESULTS_FILE = "results.json"

#: What ``config.smoke=True`` sets (minimum with the config's own value where it is a size).
SMOKE = {
    "train_subset": 512,
    "test_subset": 256,
    "validation_size": 128,
    "num_epochs": 2,
    "batch_size": 64,
    "eval_batch_size": 128,
    "log_every_steps": 2,
}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the step."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was saved at ``step``. Call again to resume."""

    def __init__(self, signum: int, step: int, checkpoint_dir: str):
        self.signum = signum
        self.step = step
        self.checkpoint_dir = checkpoint_dir
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: checkpoint saved at step {step} in {checkpoint_dir}; run the "
            f"same command again to resume."
        )


# ---------------------------------------------------------------------------- config


def prepare_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A checked copy of ``config`` with the ``smoke`` shrink applied (see :data:`SMOKE`)."""
    cfg = ml_collections.ConfigDict(config.to_dict())
    if cfg.get("smoke", False):
        for key, value in SMOKE.items():
            old = cfg.get(key, 0)
            if key in ("train_subset", "test_subset") and old == 0:
                cfg[key] = value  # 0 means "all" here
            elif key == "log_every_steps":
                cfg[key] = value
            elif isinstance(old, int) and not isinstance(old, bool) and old > 0:
                cfg[key] = min(old, value)  # validation_size 0 (off) and bad values stay
        if cfg.get("early_stopping_patience", 0):
            cfg.early_stopping_patience = 1
    for name in ("num_epochs", "batch_size", "eval_batch_size"):
        v = cfg.get(name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"config.{name}={v!r} must be an int >= 1.")
    for name in ("validation_size", "train_subset", "test_subset", "early_stopping_patience"):
        v = cfg.get(name, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"config.{name}={v!r} must be an int >= 0 (0 turns it off).")
    ema = cfg.get("ema_decay", 0.0)
    if not 0.0 <= ema < 1.0:
        raise ValueError(
            f"config.ema_decay={ema!r} must be in [0, 1); 0 turns EMA off, 0.999 is typical."
        )
    ls = cfg.get("label_smoothing", 0.0)
    if not 0.0 <= ls <= 1.0:
        raise ValueError(f"config.label_smoothing={ls!r} must be in [0, 1].")
    optim._choice(cfg.get("optimizer"), optim.OPTIMIZERS, "optimizer")
    optim._choice(cfg.get("schedule"), optim.SCHEDULES, "schedule")
    loop = cfg.get("loop", "auto")
    if loop != "auto":
        loops.check_form(loop, cfg.get("steps_per_call", 1) or 1)
    return cfg


def make_model(config, input_shape, num_classes: int) -> nnx.Module:
    """The model ``config.model.name`` from :mod:`convjax.models`, with the other fields of
    ``config.model`` as keyword arguments, initialised from ``config.seed``."""
    name = config.model.name
    # Models are classes (PatternCNN) or functools.partial presets of one (ResNet20, VGG16);
    # residual blocks are modules too but not whole models.
    names = [
        n
        for n in cmodels.__all__
        if callable(getattr(cmodels, n)) and n not in ("BasicBlock", "Bottleneck")
    ]
    if name not in names:
        raise ValueError(
            f"config.model.name={name!r} is not a model of convjax.models; use one of "
            f"{', '.join(names)}."
        )
    kwargs = {k: v for k, v in config.model.to_dict().items() if k != "name"}
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return getattr(cmodels, name)(
        tuple(input_shape), num_classes, rngs=nnx.Rngs(config.seed), **kwargs
    )


def load_data(config) -> cdata.ImageDataset:
    """The data set of ``config.dataset`` with the config's validation split and subsets."""
    ds = cdata.load_dataset(config.dataset)
    repl = {}
    if config.get("train_subset", 0):
        repl["train_images"] = ds.train_images[: config.train_subset]
        repl["train_labels"] = ds.train_labels[: config.train_subset]
    if config.get("test_subset", 0):
        repl["test_images"] = ds.test_images[: config.test_subset]
        repl["test_labels"] = ds.test_labels[: config.test_subset]
    if repl:
        ds = dataclasses.replace(ds, **repl)
    if config.get("validation_size", 0):
        ds = cdata.split_validation(ds, config.validation_size, seed=config.seed)
    return ds


# ---------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _signal_flag():
    """Record SIGINT/SIGTERM in a list instead of dying (main thread only)."""
    received: list[int] = []
    if threading_is_main():
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in old:
            signal.signal(s, lambda signum, frame: received.append(signum))
        try:
            yield received
        finally:
            for s, h in old.items():
                signal.signal(s, h)
    else:
        yield received


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def evaluate(eval_step, state, images, labels, batch_size: int) -> tuple[float, float]:
    """``(mean loss, accuracy)`` of ``state`` on device arrays ``images``/``labels``."""
    n = int(labels.shape[0])
    loss = 0.0
    correct = 0
    for i in range(0, n, batch_size):
        m = eval_step(state, images[i : i + batch_size], labels[i : i + batch_size])
        loss += float(m["loss_sum"])
        correct += int(m["correct"])
    return loss / n, correct / n


def _fresh_meta() -> dict[str, Any]:
    return {
        "epoch": 0,
        "batch": 0,
        "loss_sum": 0.0,
        "correct": 0,
        "seen": 0,
        "history": {
            k: []
            for k in (
                "train_loss",
                "train_accuracy",
                "val_loss",
                "val_accuracy",
                "test_loss",
                "test_accuracy",
                "learning_rate",
                "epoch_time_s",
                "images_per_s",
                "elapsed_s",
            )
        },
        "best_val_accuracy": None,
        "bad_epochs": 0,
        "stopped_early": False,
        "train_time_s": 0.0,
        "compile_s": 0.0,
        "steady_images": 0,
        "steady_time_s": 0.0,
    }


def _json_default(x):
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as JSON to ``path`` via a temporary file and a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------- the loop


def train_and_evaluate(config: ml_collections.ConfigDict, workdir) -> dict[str, Any]:
    """Train ``config`` in ``workdir`` (resuming if it has a checkpoint); see module docstring.

    Args:
      config: a single-run config (``configs/default.py``'s fields).
      workdir: folder for the config, metrics, checkpoints, results and figures.

    Returns:
      The results dict (also written to ``WORKDIR/results.json``).

    Raises:
      NonFiniteLossError: the loss became NaN or Inf (the message names the step).
      TrainingInterrupted: SIGINT or SIGTERM arrived (a checkpoint was saved first).
      ValueError: a bad config field, naming it.
    """
    t_total = time.perf_counter()
    cfg = prepare_config(config)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(workdir / "config.json", cfg.to_dict())
    out = sys.stdout if cfg.get("verbose", True) else open(os.devnull, "w")  # noqa: SIM115

    ds = load_data(cfg)
    model = make_model(cfg, ds.image_shape, ds.num_classes)
    summary_text = _summary_text(model, ds.image_shape)
    (workdir / "summary.txt").write_text(summary_text + "\n")
    print(summary_text, file=out, flush=True)
    num_params = int(sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param))))

    n_train = int(ds.train_labels.shape[0])
    bs = int(cfg.batch_size)
    if bs > n_train:
        raise ValueError(
            f"config.batch_size={bs} is larger than the {n_train} training examples; use a "
            f"smaller batch_size."
        )
    steps_per_epoch = n_train // bs
    # Data parallelism over this process's devices (on a CPU: one device per core, see
    # convjax.xla_env): parameters replicated, each batch split; XLA's SPMD partitioner adds
    # the gradient and batch-norm all-reduces, so the numbers equal one device's up to float
    # summation order.
    data_devices = sharding.data_parallel_devices(
        cfg.get("data_parallel", 0), (bs, int(cfg.eval_batch_size))
    )
    mesh = sharding.make_mesh(1, devices=data_devices) if len(data_devices) > 1 else None

    def place(tree):
        return jax.device_put(tree) if mesh is None else sharding.replicate(tree, mesh)

    tx = optim.make_optimizer(cfg, steps_per_epoch)
    ema_decay = float(cfg.get("ema_decay", 0.0))
    model_def, state = create_train_state(model, tx, ema=ema_decay > 0)
    template = state
    mean, std = ds.train_mean_std
    aug = cfg.get("augment", None)
    aug = aug.to_dict() if aug is not None else {}
    train_step = make_train_step(
        model_def,
        tx,
        mean=mean,
        std=std,
        augment=aug,
        ema_decay=ema_decay,
        rng_streams=rng_stream_names(model),
    )
    eval_step = make_eval_step(
        model_def, mean=mean, std=std, tta_flip=bool(cfg.get("tta_flip", False))
    )
    if mesh is not None:  # split the batches inside the jitted steps
        member_train_step, member_eval_step = train_step, eval_step

        def train_step(state, batch, key, hparams):
            return member_train_step(state, sharding.constrain_batch(batch, mesh), key, hparams)

        def eval_step(state, images, labels):
            return member_eval_step(state, *sharding.constrain_batch((images, labels), mesh))

    eval_step = jax.jit(eval_step)
    hparams = {"label_smoothing": float(cfg.get("label_smoothing", 0.0))}

    form = cfg.get("loop", "auto")
    k = int(cfg.get("steps_per_call", 0) or 0)
    if form == "auto":
        form, k_best = loops.best_form()
        k = k or k_best
    k = 1 if form == "step" else max(1, k)
    steps = loops.StepCache(train_step, form, k)

    train_images = place(ds.train_images)
    train_labels = place(ds.train_labels)
    test_images = place(ds.test_images)
    test_labels = place(ds.test_labels)
    if ds.has_validation:
        val_images = place(ds.validation_images)
        val_labels = place(ds.validation_labels)
    root = jax.random.key(cfg.seed)
    data_key, step_key = jax.random.split(root)

    ckpt = Checkpointer(workdir)
    writer = MetricsWriter(workdir, tensorboard=cfg.get("tensorboard", True))
    meta = _fresh_meta()
    if ckpt.latest_step() is not None:
        state, meta = ckpt.restore(template)
        writer.truncate_after(int(state.step))
        print(
            f"resumed from checkpoint at step {int(state.step)} (epoch {meta['epoch'] + 1}, "
            f"batch {meta['batch']})",
            file=out,
            flush=True,
        )
    state = place(state)
    hist = meta["history"]
    patience = int(cfg.get("early_stopping_patience", 0))
    log_every = max(1, int(cfg.get("log_every_steps", 50)))
    compiled: set[int] = set()  # chunk sizes already compiled in this process

    try:
        with _signal_flag() as signals_received:
            while meta["epoch"] < cfg.num_epochs and not meta["stopped_early"]:
                epoch = meta["epoch"]
                order = cdata.epoch_permutation(jax.random.fold_in(data_key, epoch), n_train, bs)
                epoch_key = jax.random.fold_in(step_key, epoch)
                bar = ProgressBar(
                    steps_per_epoch,
                    f"epoch {epoch + 1}/{cfg.num_epochs}",
                    enabled=cfg.get("progress", True),
                    stream=out if not cfg.get("progress_to_stderr", True) else None,
                )
                t_epoch = time.perf_counter()
                epoch_steady_images, epoch_steady_t = 0, 0.0
                for b, n in loops.chunks(meta["batch"], steps_per_epoch, k):
                    t0 = time.perf_counter()
                    state, m = steps.get(n)(
                        state, train_images, train_labels, order, b, epoch_key, hparams
                    )
                    losses = np.asarray(m["loss"])
                    correct = np.asarray(m["correct"])
                    dt = time.perf_counter() - t0
                    meta["train_time_s"] += dt
                    if n in compiled:
                        meta["steady_images"] += n * bs
                        meta["steady_time_s"] += dt
                        epoch_steady_images += n * bs
                        epoch_steady_t += dt
                    else:
                        compiled.add(n)
                        meta["compile_s"] += dt
                    bad = np.flatnonzero(~np.isfinite(losses))
                    if bad.size:
                        i = int(bad[0])
                        gstep = epoch * steps_per_epoch + b + i + 1
                        last = ckpt.latest_step()
                        raise NonFiniteLossError(
                            f"loss is {losses[i]} at step {gstep} (epoch {epoch + 1}, batch "
                            f"{b + i + 1}/{steps_per_epoch}); training stopped. The last good "
                            f"checkpoint is "
                            + (f"step {last} in {ckpt.directory}" if last is not None else "none")
                            + "; lower the learning rate or check the data."
                        )
                    meta["loss_sum"] += float(np.sum(losses.astype(np.float64)))
                    meta["correct"] += int(np.sum(correct))
                    meta["seen"] += n * bs
                    meta["batch"] = b + n
                    gstep = int(epoch * steps_per_epoch + b + n)
                    rate = epoch_steady_images / epoch_steady_t if epoch_steady_t else 0.0
                    bar.update(
                        b + n,
                        meta["loss_sum"] / max(1, meta["batch"]),
                        meta["correct"] / max(1, meta["seen"]),
                        rate,
                    )
                    if (b + n) // log_every != b // log_every:
                        writer.write(
                            "train_log",
                            gstep,
                            epoch=epoch + 1,
                            loss=float(losses.mean()),
                            accuracy=float(correct.sum()) / (n * bs),
                            learning_rate=optim.current_learning_rate(state.opt_state),
                            images_per_s=rate,
                        )
                    if signals_received and b + n < steps_per_epoch:
                        bar.close()
                        ckpt.save(state, meta)
                        writer.flush()
                        raise TrainingInterrupted(
                            signals_received[0], int(state.step), str(ckpt.directory)
                        )
                bar.close()
                # End of epoch: metrics, evaluation, early stopping, checkpoint.
                train_loss = meta["loss_sum"] / steps_per_epoch
                train_acc = meta["correct"] / max(1, meta["seen"])
                rec = {
                    "epoch": epoch + 1,
                    "train_loss": train_loss,
                    "train_accuracy": train_acc,
                }
                if ds.has_validation:
                    vl, va = evaluate(eval_step, state, val_images, val_labels, cfg.eval_batch_size)
                    rec.update(val_loss=vl, val_accuracy=va)
                if cfg.get("eval_test_every_epoch", True) or epoch + 1 == cfg.num_epochs:
                    tl, ta = evaluate(
                        eval_step, state, test_images, test_labels, cfg.eval_batch_size
                    )
                    rec.update(test_loss=tl, test_accuracy=ta)
                rec["learning_rate"] = optim.current_learning_rate(state.opt_state)
                rec["epoch_time_s"] = time.perf_counter() - t_epoch
                # Wall time since this call started (data loading and compiles included).
                rec["elapsed_s"] = time.perf_counter() - t_total
                rec["images_per_s"] = (
                    epoch_steady_images / epoch_steady_t if epoch_steady_t else None
                )
                for key_ in hist:
                    hist[key_].append(rec.get(key_))
                writer.write("epoch", int(state.step), **rec)
                msg = f"epoch {epoch + 1}: train loss {train_loss:.4f} acc {100 * train_acc:.2f}%"
                if "val_accuracy" in rec:
                    msg += f", val acc {100 * rec['val_accuracy']:.2f}%"
                if "test_accuracy" in rec:
                    msg += f", test acc {100 * rec['test_accuracy']:.2f}%"
                print(msg + f" ({rec['epoch_time_s']:.1f} s)", file=out, flush=True)
                if patience and ds.has_validation:
                    best = meta["best_val_accuracy"]
                    if best is None or rec["val_accuracy"] > best:
                        meta["best_val_accuracy"] = rec["val_accuracy"]
                        meta["bad_epochs"] = 0
                    else:
                        meta["bad_epochs"] += 1
                        if meta["bad_epochs"] >= patience:
                            meta["stopped_early"] = True
                            print(
                                f"early stopping: validation accuracy has not improved for "
                                f"{patience} epoch(s)",
                                file=out,
                                flush=True,
                            )
                meta.update(epoch=epoch + 1, batch=0, loss_sum=0.0, correct=0, seen=0)
                ckpt.save(state, meta)
                writer.flush()
                if signals_received and meta["epoch"] < cfg.num_epochs:
                    raise TrainingInterrupted(
                        signals_received[0], int(state.step), str(ckpt.directory)
                    )
    finally:
        writer.close()
        ckpt.close()

    # Final results (test evaluation of the final state, EMA weights if on).
    if hist["test_accuracy"] and hist["test_accuracy"][-1] is not None:
        test_loss, test_acc = hist["test_loss"][-1], hist["test_accuracy"][-1]
    else:
        test_loss, test_acc = evaluate(
            eval_step, state, test_images, test_labels, cfg.eval_batch_size
        )
    steady = meta["steady_images"] / meta["steady_time_s"] if meta["steady_time_s"] else None
    results = {
        "test_accuracy": test_acc,
        "test_loss": test_loss,
        "val_accuracy": hist["val_accuracy"][-1] if hist["val_accuracy"] else None,
        "history": hist,
        "epochs_run": len(hist["train_loss"]),
        "stopped_early": meta["stopped_early"],
        "steps": int(state.step),
        "train_time_s": meta["train_time_s"],
        "compile_s": meta["compile_s"],
        "images_per_s": steady,
        "total_time_s": time.perf_counter() - t_total,
        "num_params": num_params,
        "loop_form": form,
        "steps_per_call": k,
        "backend": jax.default_backend(),
        "data_parallel_devices": len(data_devices),
        "seed": cfg.seed,
        "dataset": cfg.dataset,
    }
    # Figures run eagerly on one device: gather the (possibly replicated) state there.
    _figures(cfg, workdir, model_def, jax.device_put(jax.device_get(state)), hist, ds)
    write_json_atomic(workdir / RESULTS_FILE, results)
    print(
        f"test accuracy: {100 * test_acc:.2f}% (loss {test_loss:.4f}) after "
        f"{results['epochs_run']} epochs, {results['train_time_s']:.1f} s training",
        file=out,
        flush=True,
    )
    return results


def _summary_text(model, image_shape) -> str:
    import convjax.inspect as ci

    s = ci.summary(model, tuple(image_shape), print_fn=lambda *a, **k: None)
    return s.to_text()


def _figures(cfg, workdir: Path, model_def, state, hist, ds) -> None:
    plots.plot_learning_curves(hist, workdir / "learning_curves.png")
    params = state.params if state.ema_params is None else state.ema_params
    model = merge_model(model_def, params, state.batch_stats)
    plots.plot_first_layer_filters(model, ds.image_shape, workdir / "first_layer_filters.png")
    mean, std = ds.train_mean_std
    x = cdata.normalize(ds.test_images[0], mean, std)
    label = ds.class_names[int(ds.test_labels[0])]
    plots.plot_activation_maps(model, x, workdir / "activation_maps.png", label=f"test 0: {label}")


__all__ = [
    "train_and_evaluate",
    "prepare_config",
    "make_model",
    "load_data",
    "evaluate",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "RESULTS_FILE",
    "SMOKE",
]
