"""Hyperparameter sweeps: every group of trials trains as ONE population.

``run_sweep(config, workdir)`` expands a sweep config (``configs/sweeps/<name>.py``) into
trials (grid or random, :mod:`convjax.train.sweep_space`), splits them into groups that share
every *structural* field, and trains each group with :func:`train_population`: the members'
parameters and optimizer states are stacked, their numeric hyperparameters are arrays, and one
population step (``convjax.train.population``, strategy measured per backend) advances all of
them. It writes ``results.md`` / ``results.csv`` sorted by validation accuracy, the best trial
as a ready config file ``best_config.py`` (train it with ``experiments/train.py``), one plot of
the metric against each swept field (``metric_vs_<field>.png``) and, per trial,
``trials/<i>/results.json``.

Which fields vary inside one population (:data:`POPULATION_FIELDS`):

- ``learning_rate``: every schedule of ``convjax.train.optim`` is the peak rate times a
  function of the step, and every optimizer there multiplies its final update by the rate, so
  a member's rate is a per-member scale (``step_size``, an ``inject_hyperparams`` array)
  applied after the optimizer built with a unit peak rate. Same arithmetic as training it
  alone, up to float rounding.
- ``weight_decay``, ``momentum``: ``inject_hyperparams`` arrays in the optimizer state.
- ``label_smoothing``: an array passed to the train step (``steps.smoothed_cross_entropy``
  is linear in it).
- ``seed``: per-member initialisation, data order, validation split and step keys (each member
  gets its own batch; a different validation split also changes the training set's
  normalisation statistics, which are therefore passed per member too).
- ``model.dropout``: an array passed to the train step, which sets it as the rate of the
  Dropout layers that ``model.dropout`` builds (``convjax.nn.set_dropout_rate``; the layers
  are found by building the model with a second rate and comparing). Whether the rate is
  zero stays structural: the zoo builds no Dropout layer for a zero rate, and the layer's
  construction draws from the model's RNG stream, so a rate-0 member and a rate-0.3 member
  start from different initial weights and form two groups.

Everything else is structural and splits the sweep into groups.

Each member's final metrics equal training it alone with ``train_and_evaluate`` (same data
order, keys and steps; float tolerance) -- ``tests/test_sweep.py`` checks it. Early stopping
(``early_stopping_patience``) freezes a member's reported metrics at the epoch it stops;
the population keeps stepping it (its later states are discarded).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx

import convjax.nn as cnn
from convjax import data as cdata
from convjax.train import distributed, optim
from convjax.train import population as pop
from convjax.train import sharding as shd
from convjax.train import sweep_space as ss
from convjax.train.ablation import apply_overrides
from convjax.train.state import create_train_state, rng_stream_names
from convjax.train.steps import make_eval_step, make_train_step
from convjax.train.trainer import load_data, make_model, prepare_config

#: Config fields that may differ between the members of one population.
POPULATION_FIELDS = (
    "learning_rate",
    "weight_decay",
    "momentum",
    "label_smoothing",
    "seed",
    "model.dropout",
)

#: Population fields whose on/off state (value > 0) is structural (see the module docstring).
PRESENCE_FIELDS = ("model.dropout",)

#: Fields the population loop ignores (output/loop form only; they change no number).
_IGNORED = {"loop", "steps_per_call", "log_every_steps", "progress", "tensorboard", "verbose"}

#: Fields the population loop does not implement (a sweep over them must use ablate.py).
_UNSUPPORTED = {"tta_flip": False}


# ---------------------------------------------------------------------------- one population


def _flat(cfg) -> dict[str, Any]:
    out = {}

    def walk(node, prefix):
        for k, v in node.items():
            if hasattr(v, "items"):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(cfg.to_dict() if hasattr(cfg, "to_dict") else cfg, "")
    return out


def check_population(configs: Sequence[ml_collections.ConfigDict]) -> None:
    """Raise ``ValueError`` unless the configs differ only in :data:`POPULATION_FIELDS`."""
    if not configs:
        raise ValueError("train_population: configs=[] is empty; pass at least one config.")
    ref = _flat(configs[0])
    for i, c in enumerate(configs[1:], start=1):
        cur = _flat(c)
        diff = sorted(
            k
            for k in set(ref) | set(cur)
            if k not in POPULATION_FIELDS and k not in _IGNORED and ref.get(k) != cur.get(k)
        )
        diff += [
            f"{k} > 0"
            for k in PRESENCE_FIELDS
            if k in ref and bool(ref[k] > 0) != bool(cur.get(k, 0) > 0)
        ]
        if diff:
            raise ValueError(
                f"train_population: configs[{i}] differs from configs[0] in structural fields "
                f"{diff}; members of one population may differ only in {POPULATION_FIELDS} "
                f"(and {list(PRESENCE_FIELDS)} only among nonzero values). Split them into "
                "groups (run_sweep does this)."
            )
    for k, ok in _UNSUPPORTED.items():
        if bool(configs[0].get(k, ok)) != ok:
            raise ValueError(
                f"train_population: config.{k}={configs[0].get(k)!r} is not supported in a "
                f"population; set it to {ok!r} or run the trials with experiments/ablate.py."
            )


def _unit_lr(cfg):
    c = ml_collections.ConfigDict(cfg.to_dict())
    c.learning_rate = 1.0
    return c


def _member_optimizer(cfg, steps_per_epoch: int) -> optax.GradientTransformation:
    """The config's optimizer at unit peak rate, then a per-member ``step_size`` scale."""
    return optax.chain(
        optim.make_optimizer(_unit_lr(cfg), steps_per_epoch),
        optax.inject_hyperparams(optax.scale)(step_size=float(cfg.learning_rate)),
    )


def _hparam_values(cfg) -> dict[str, float]:
    hp = {"step_size": float(cfg.learning_rate), "weight_decay": float(cfg.weight_decay)}
    if cfg.optimizer == "sgd":
        hp["momentum"] = float(cfg.momentum)
    if cfg.optimizer != "sgd" and cfg.optimizer != "adamw":
        hp.pop("weight_decay")  # plain adam has no weight decay hyperparameter
    return hp


def _dropout_paths(cfg, ds) -> list[tuple]:
    """Module paths of the Dropout layers whose rate is ``cfg.model.dropout`` (none if 0).

    Found by building the model a second time with another nonzero rate: the layers whose rate
    changed are the ones ``model.dropout`` controls (a model's other dropout knobs, such as
    PatternCNN's ``conv_dropout``, keep theirs).
    """
    rate = float(cfg.model.get("dropout", 0.0) or 0.0)
    if rate <= 0.0:
        return []
    probe_cfg = ml_collections.ConfigDict(cfg.to_dict())
    probe_cfg.model.dropout = 0.5 if rate != 0.5 else 0.25

    def rates(c):
        model = make_model(c, ds.image_shape, ds.num_classes)
        return {p: m.rate for p, m in nnx.iter_modules(model) if isinstance(m, cnn.Dropout)}

    built, probe = rates(cfg), rates(probe_cfg)
    return sorted(p for p in built if built[p] != probe.get(p))


def train_population(
    configs: Sequence[ml_collections.ConfigDict],
    *,
    strategy: str = "auto",
    mesh=None,
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train N single-run configs that differ only in :data:`POPULATION_FIELDS`, as one.

    Args:
      configs: N configs (``configs/default.py`` fields; ``smoke`` applies).
      strategy: population strategy (``convjax.train.population.STRATEGIES``).
      mesh: optional ``("members", "data")`` mesh (``convjax.train.sharding.make_mesh``); the
        members axis and the batch axis are sharded over it (several processes too, after
        ``convjax.train.distributed.initialize``).
      log: progress printer (one line per epoch).

    Returns:
      One results dict per member, with the keys of ``train_and_evaluate``'s that apply:
      ``test_accuracy``, ``test_loss``, ``val_accuracy``, ``history``, ``epochs_run``,
      ``stopped_early``, ``steps``, ``train_time_s`` (the whole population's), ``images_per_s``
      (the population's, all members), ``num_params``, ``seed``, ``strategy``, ``members``.
    """
    cfgs = [prepare_config(c) for c in configs]
    check_population(cfgs)
    n = len(cfgs)
    c0 = cfgs[0]

    # Data: one load per distinct seed (the validation split depends on the seed).
    by_seed: dict[int, cdata.ImageDataset] = {}
    for c in cfgs:
        if c.seed not in by_seed:
            by_seed[c.seed] = load_data(c)
    dss = [by_seed[c.seed] for c in cfgs]
    shared_train = len(by_seed) == 1 or not c0.get("validation_size", 0)
    n_train = int(dss[0].train_labels.shape[0])
    bs = int(c0.batch_size)
    if bs > n_train:
        raise ValueError(
            f"config.batch_size={bs} is larger than the {n_train} training examples; use a "
            "smaller batch_size."
        )
    steps_per_epoch = n_train // bs

    # Members: model init from each seed, one optimizer shared by all (per-member arrays).
    tx = _member_optimizer(c0, steps_per_epoch)
    ema_decay = float(c0.get("ema_decay", 0.0))
    states, model_def, num_params, streams = [], None, None, None
    for c, ds in zip(cfgs, dss):
        optim.make_optimizer(c, steps_per_epoch)  # validates this member's optimizer fields
        model = make_model(c, ds.image_shape, ds.num_classes)
        md, st = create_train_state(model, tx, ema=ema_decay > 0)
        st = st._replace(opt_state=pop.set_hyperparams(st.opt_state, **_hparam_values(c)))
        if model_def is None:
            model_def, streams = md, rng_stream_names(model)
            num_params = int(sum(x.size for x in jax.tree.leaves(st.params)))
        states.append(st)
    states = pop.stack(states)
    stats = [
        tuple(tuple(np.asarray(v, np.float32).reshape(-1).tolist()) for v in ds.train_mean_std)
        for ds in dss
    ]
    hparams = {
        "label_smoothing": jnp.asarray([float(c.get("label_smoothing", 0.0)) for c in cfgs]),
    }
    dropout_paths = _dropout_paths(c0, dss[0])
    if dropout_paths:
        hparams["dropout_rate"] = jnp.asarray([float(c.model.dropout) for c in cfgs])
    aug = c0.get("augment", None)
    aug = aug.to_dict() if aug is not None else {}

    def member_fns(mean, std):
        train_step = make_train_step(
            model_def,
            tx,
            mean=mean,
            std=std,
            augment=aug,
            ema_decay=ema_decay,
            rng_streams=streams,
            dropout_paths=dropout_paths,
        )
        eval_step = make_eval_step(model_def, mean=mean, std=std)

        def member_eval(state, batch, key, hp):
            del key, hp
            return state, eval_step(state, batch["image"], batch["label"])

        return train_step, member_eval

    # convjax.data.normalize needs concrete mean/std, so they are closure constants of the
    # step. Members whose training sets differ (a different seed with a validation split)
    # get one step each: only the unrolled and sequential strategies can run those.
    if len(set(stats)) == 1:
        train_steps, eval_steps = member_fns(*stats[0])
    else:
        fns = {st: member_fns(*st) for st in dict.fromkeys(stats)}
        train_steps = [fns[st][0] for st in stats]
        eval_steps = [fns[st][1] for st in stats]
    if mesh is not None and not callable(train_steps) and mesh.shape[shd.MEMBERS] > 1:
        # Per-member steps cannot run under shard_map (population_step's fast path for a
        # members-sharded mesh); split every batch over the devices instead.
        mesh = shd.make_mesh(n, devices=list(mesh.devices.flat), members_axis=1)
    if strategy == "auto" and jax.process_count() > 1:
        # Every process must run the same program: timings differ between hosts, so with
        # several processes "auto" takes the backend's first candidate instead of racing.
        strategy = pop.AUTO_CANDIDATES.get(jax.default_backend(), ("vmap",))[0]
        if not callable(train_steps) and strategy not in pop.PER_MEMBER_STRATEGIES:
            strategy = "unrolled"
    eval_strategy = strategy
    if eval_strategy == "auto" or (
        not callable(eval_steps) and eval_strategy not in pop.PER_MEMBER_STRATEGIES
    ):
        eval_strategy = "unrolled"
    step_fn = pop.population_step(train_steps, strategy=strategy, batch_per_member=True, mesh=mesh)
    eval_fn = pop.population_step(
        eval_steps, strategy=eval_strategy, batch_per_member=True, mesh=mesh
    )

    # Device arrays: training images shared (one copy) or per member (different splits).
    if shared_train:
        train_x = jnp.asarray(dss[0].train_images)
        train_y = jnp.asarray(dss[0].train_labels)
    else:
        train_x = jnp.asarray(np.stack([ds.train_images for ds in dss]))
        train_y = jnp.asarray(np.stack([ds.train_labels for ds in dss]))
    test_x, test_y = jnp.asarray(dss[0].test_images), jnp.asarray(dss[0].test_labels)
    has_val = dss[0].has_validation
    if has_val:
        val_x = jnp.asarray(np.stack([ds.validation_images for ds in dss]))
        val_y = jnp.asarray(np.stack([ds.validation_labels for ds in dss]))

    @jax.jit
    def gather(orders, b):
        idx = orders[:, b]  # (N, B)
        if shared_train:
            return {"image": jnp.take(train_x, idx, axis=0), "label": jnp.take(train_y, idx)}
        take = jax.vmap(lambda x, i: jnp.take(x, i, axis=0))
        return {"image": take(train_x, idx), "label": take(train_y, idx)}

    if mesh is not None:
        states = shd.shard_population(states, mesh)
        hparams = shd.shard_population(hparams, mesh)

    def place_batch(batch):
        """Per-member batch (N, B, ...) onto the mesh: members split, B split over data when
        the data axis divides it (else replicated over data)."""
        if mesh is None:
            return batch
        b = int(jax.tree.leaves(batch)[0].shape[1])
        if b % mesh.shape[shd.DATA] == 0:
            return shd.shard_batch(batch, mesh, per_member=True)
        return shd.shard_population(batch, mesh)

    def place_keys(keys):
        return shd.shard_population(keys, mesh) if mesh is not None else keys

    def evaluate(states, xs, ys, per_member_data: bool):
        """(N,) mean loss and accuracy over a split, in eval_batch_size chunks."""
        total = int(ys.shape[-1])
        loss = np.zeros(n)
        correct = np.zeros(n, np.int64)
        ebs = int(c0.eval_batch_size)
        for i in range(0, total, ebs):
            if per_member_data:
                batch = {"image": xs[:, i : i + ebs], "label": ys[:, i : i + ebs]}
            else:
                xb, yb = xs[i : i + ebs], ys[i : i + ebs]
                batch = {
                    "image": jnp.broadcast_to(xb, (n, *xb.shape)),
                    "label": jnp.broadcast_to(yb, (n, *yb.shape)),
                }
            _, m = eval_fn(states, place_batch(batch), dummy_keys, hparams)
            m = distributed.gather(m)
            loss += m["loss_sum"]
            correct += m["correct"]
        return loss / total, correct / total

    roots = [jax.random.split(jax.random.key(int(c.seed))) for c in cfgs]
    data_keys = [r[0] for r in roots]
    step_keys = [r[1] for r in roots]
    dummy_keys = place_keys(jax.random.split(jax.random.key(0), n))
    hist_keys = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss")
    hist = [{k: [] for k in (*hist_keys, "test_accuracy", "learning_rate")} for _ in range(n)]
    patience = int(c0.get("early_stopping_patience", 0))
    best = [None] * n
    bad = [0] * n
    stopped_at = [None] * n  # epochs run when the member stopped early
    train_time, compile_time, steady_images, steady_time = 0.0, 0.0, 0, 0.0
    first = True

    for epoch in range(int(c0.num_epochs)):
        if all(s is not None for s in stopped_at):
            break
        orders = jnp.stack(
            [
                cdata.epoch_permutation(jax.random.fold_in(dk, epoch), n_train, bs)
                for dk in data_keys
            ]
        )  # (N, steps, B)
        epoch_keys = [jax.random.fold_in(sk, epoch) for sk in step_keys]
        loss_sum = np.zeros(n)
        correct = np.zeros(n, np.int64)
        t_epoch = time.perf_counter()
        for b in range(steps_per_epoch):
            keys = place_keys(jnp.stack([jax.random.fold_in(ek, b) for ek in epoch_keys]))
            batch = place_batch(gather(orders, b))
            t0 = time.perf_counter()
            states, m = step_fn(states, batch, keys, hparams)
            m = distributed.gather(m)
            dt = time.perf_counter() - t0
            train_time += dt
            if first:
                compile_time += dt
                first = False
            else:
                steady_images += n * bs
                steady_time += dt
            loss_sum += m["loss"]
            correct += m["correct"]
        recs = {
            "train_loss": loss_sum / steps_per_epoch,
            "train_accuracy": correct / (steps_per_epoch * bs),
        }
        if has_val:
            recs["val_loss"], recs["val_accuracy"] = evaluate(states, val_x, val_y, True)
        if c0.get("eval_test_every_epoch", True) or epoch + 1 == c0.num_epochs:
            recs["test_loss"], recs["test_accuracy"] = evaluate(states, test_x, test_y, False)
        lr = _current_lr(states.opt_state)
        for i in range(n):
            if stopped_at[i] is not None:
                continue
            for k in hist[i]:
                if k == "learning_rate":
                    hist[i][k].append(float(lr[i]))
                else:
                    hist[i][k].append(float(recs[k][i]) if k in recs else None)
            if patience and has_val:
                va = float(recs["val_accuracy"][i])
                if best[i] is None or va > best[i]:
                    best[i], bad[i] = va, 0
                else:
                    bad[i] += 1
                    if bad[i] >= patience:
                        stopped_at[i] = epoch + 1
        accs = recs.get("val_accuracy", recs.get("test_accuracy"))
        log(
            f"epoch {epoch + 1}/{c0.num_epochs}: {n} members, "
            f"{'val' if has_val else 'test'} acc "
            + " ".join(f"{100 * a:.1f}" for a in (accs if accs is not None else []))
            + f" ({time.perf_counter() - t_epoch:.1f} s, strategy {step_fn.strategy})"
        )

    steady = steady_images / steady_time if steady_time else None
    results = []
    for i, c in enumerate(cfgs):
        h = hist[i]
        results.append(
            {
                "test_accuracy": h["test_accuracy"][-1],
                "test_loss": h["test_loss"][-1],
                "val_accuracy": h["val_accuracy"][-1] if has_val else None,
                "history": h,
                "epochs_run": len(h["train_loss"]),
                "stopped_early": stopped_at[i] is not None,
                "steps": len(h["train_loss"]) * steps_per_epoch,
                "train_time_s": train_time,
                "compile_s": compile_time,
                "images_per_s": steady,
                "num_params": num_params,
                "seed": int(c.seed),
                "strategy": step_fn.strategy,
                "members": n,
            }
        )
    return results


def _current_lr(opt_state):
    """Per-member learning rate now: unit schedule value x the member's step_size."""
    hp = distributed.gather(pop.get_hyperparams(opt_state))
    return hp["learning_rate"] * hp["step_size"]


# ---------------------------------------------------------------------------- the sweep


def check_sweep_config(config) -> None:
    """Raise ``ValueError`` (naming the field) for a malformed sweep config."""
    for field in ("base", "space", "search"):
        if field not in config:
            raise ValueError(
                f"sweep config: field {field!r} is missing (has {sorted(config.keys())}); a "
                "sweep config needs base, search ('grid' or 'random') and space."
            )
    metric = config.get("metric", "val_accuracy")
    if metric not in ("val_accuracy", "test_accuracy"):
        raise ValueError(
            f"sweep config: metric={metric!r} must be 'val_accuracy' or 'test_accuracy'."
        )
    if metric == "val_accuracy" and not config.base.get("validation_size", 0):
        raise ValueError(
            "sweep config: metric='val_accuracy' needs base.validation_size > 0 (a held-out "
            "split to rank trials on); set it, e.g. 5000, or rank by 'test_accuracy'."
        )


def expand_trials(config) -> list[dict[str, Any]]:
    """The sweep's trials as flat ``{field_path: value}`` dicts, each checked against base."""
    check_sweep_config(config)
    trials = ss.make_trials(
        config.search,
        config.space,
        num_trials=config.get("num_trials", None) or None,
        seed=int(config.get("search_seed", 0)),
    )
    for t in trials[:1]:
        apply_overrides(config.base, ss.nest(t), where="space")  # a typo fails before training
    return trials


def run_sweep(
    config,
    workdir,
    *,
    mesh=None,
    log: Callable[[str], None] = print,
    write_files: bool = True,
) -> dict[str, Any]:
    """Run a sweep config (module docstring) in ``workdir``; returns records and file paths.

    ``mesh``: None (one device), a ``("members", "data")`` mesh, or True for a mesh over every
    device built per group (``sharding.make_mesh(group size)``).

    A group whose ``groups/<g>/results.json`` exists is read back instead of retrained.
    """
    workdir = Path(workdir)
    trials = expand_trials(config)
    pop_fields = tuple(config.get("population_fields", None) or POPULATION_FIELDS)
    unknown = [f for f in pop_fields if f not in POPULATION_FIELDS]
    if unknown:
        raise ValueError(
            f"sweep config: population_fields has {unknown}, which cannot vary inside a "
            f"population; allowed: {POPULATION_FIELDS}."
        )
    groups = ss.group_trials(trials, pop_fields, PRESENCE_FIELDS)
    metric = config.get("metric", "val_accuracy")
    strategy = config.get("strategy", "auto")
    if write_files:
        workdir.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = [None] * len(trials)  # type: ignore[list-item]
    t_sweep = time.perf_counter()
    for g, (structural, idx) in enumerate(groups):
        gdir = workdir / "groups" / str(g)
        done = gdir / "results.json"
        label = ", ".join(f"{k}={v}" for k, v in structural.items()) or "all"
        if write_files and done.exists():
            log(f"group {g + 1}/{len(groups)} ({label}): finished earlier, reading {done}")
            results = json.loads(done.read_text())
        else:
            log(f"group {g + 1}/{len(groups)} ({label}): {len(idx)} members as one population")
            cfgs = [apply_overrides(config.base, ss.nest(trials[i]), where="space") for i in idx]
            # mesh=True: a mesh per group over every device, its members axis gcd(N, devices)
            gmesh = shd.make_mesh(len(idx)) if mesh is True else mesh
            results = train_population(cfgs, strategy=strategy, mesh=gmesh, log=log)
            if write_files:
                gdir.mkdir(parents=True, exist_ok=True)
                _write_json(done, results)
        for i, r in zip(idx, results):
            records[i] = {"trial": i, "group": g, **trials[i], **_summary_fields(r)}
    sweep_time = time.perf_counter() - t_sweep
    ranked = sorted(records, key=lambda r: -_key(r.get(metric)))
    out = {"records": ranked, "metric": metric, "time_s": sweep_time, "files": {}}
    if write_files:
        best = ranked[0]
        best_cfg = apply_overrides(
            config.base, ss.nest({k: best[k] for k in trials[best["trial"]]}), where="space"
        )
        out["files"] = write_sweep_outputs(config, workdir, ranked, trials, metric, best_cfg)
    return out


def _key(v) -> float:
    return -math.inf if v is None else float(v)


def _summary_fields(r: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: r.get(k)
        for k in (
            "val_accuracy",
            "test_accuracy",
            "epochs_run",
            "train_time_s",
            "images_per_s",
            "members",
            "strategy",
        )
    }


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def write_sweep_outputs(config, workdir: Path, ranked, trials, metric, best_cfg) -> dict:
    """results.csv/.md (sorted by ``metric``), best_config.py, metric_vs_<field>.png."""
    fields = list(trials[0])
    cols = ["rank", "trial", *fields, "val_accuracy", "test_accuracy", "group", "epochs_run"]
    csv_path = workdir / "results.csv"
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for rank, r in enumerate(ranked, start=1):
            w.writerow({"rank": rank, **r})

    def pct(v):
        return "-" if v is None else f"{100 * v:.2f}"

    name = config.get("name", workdir.name)
    lines = [
        f"### sweep {name}: {len(ranked)} trials in {1 + max(r['group'] for r in ranked)} "
        f"population(s), sorted by {metric}",
        "",
        "| rank | " + " | ".join(fields) + " | val acc (%) | test acc (%) | group |",
        "|" + "---|" * (len(fields) + 4),
    ]
    for rank, r in enumerate(ranked, start=1):
        vals = " | ".join(_fmt(r[f]) for f in fields)
        lines.append(
            f"| {rank} | {vals} | {pct(r['val_accuracy'])} | {pct(r['test_accuracy'])} "
            f"| {r['group']} |"
        )
    md_path = workdir / "results.md"
    md_path.write_text("\n".join(lines) + "\n")

    best = ranked[0]
    doc = (
        f"Best trial of sweep {name!r} ({metric} {pct(best.get(metric))}%, test "
        f"{pct(best.get('test_accuracy'))}%): "
        + ", ".join(f"{f}={_fmt(best[f])}" for f in fields)
        + f".\n\nWritten by experiments/sweep.py into {workdir}. Train it alone with::\n\n"
        f"    .venv/bin/python experiments/train.py --config={workdir}/best_config.py "
        "--workdir=workdirs/best"
    )
    best_path = workdir / "best_config.py"
    best_path.write_text(ss.config_source(best_cfg, docstring=doc))
    files = {"results.csv": str(csv_path), "results.md": str(md_path), "best": str(best_path)}
    files.update(plot_sweep(ranked, fields, metric, workdir))
    return files


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_sweep(records, fields, metric, workdir: Path) -> dict[str, str]:
    """One PNG per swept field: the metric of every trial against that field's value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}
    for f in fields:
        xs = [r[f] for r in records]
        ys = [100 * r[metric] for r in records if r.get(metric) is not None]
        if len(ys) != len(xs):
            continue
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        numeric = all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs)
        if numeric:
            ax.scatter(xs, ys, alpha=0.8)
            pos = [x for x in xs if x > 0]
            if f in ("learning_rate", "weight_decay") and len(pos) == len(xs):
                ax.set_xscale("log")
        else:
            cats = list(dict.fromkeys(map(str, xs)))
            ax.scatter([cats.index(str(x)) for x in xs], ys, alpha=0.8)
            ax.set_xticks(range(len(cats)), cats)
        ax.set_xlabel(f)
        ax.set_ylabel(f"{metric} (%)")
        fig.tight_layout()
        path = workdir / f"metric_vs_{f.replace('.', '_')}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out[path.name] = str(path)
    return out
