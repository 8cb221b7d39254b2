"""What a fit builds before its loop: the population's fields, its data, models and steps
(:class:`Run`, fixed for the whole call) and the compiled programs for the members still
training (:class:`Programs`, rebuilt when members leave).

Members of one population differ only in :data:`POPULATION_FIELDS`; :func:`structure_key` is
what they must share, and :func:`check_population` says which field breaks that.
"""

from __future__ import annotations

import os
import sys
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
from convjax.train import distributed, loops, optim, sharding
from convjax.train import population as pop
from convjax.train.checkpoint import Checkpointer
from convjax.train.factory import make_model
from convjax.train.inputs import load_population_data
from convjax.train.schedules import PBT, make_schedule
from convjax.train.state import create_train_state, rng_stream_names
from convjax.train.steps import health_layers, make_eval_step, make_train_step

__all__ = [
    "OUTPUT_FIELDS",
    "member_hparams",
    "set_member_hparams",
    "POPULATION_FIELDS",
    "PRESENCE_FIELDS",
    "Programs",
    "Run",
    "check_population",
    "structure_key",
]

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


class Run:
    """What stays fixed for a whole call of :func:`fit`: configs, data, model, steps, output."""

    def __init__(self, cfgs, workdir, member_dirs, strategy, mesh, log, halving=None, pbt=None):
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
        replicate = lambda x: x  # placement per live set happens in Programs
        self.data = load_population_data(cfgs, replicate)
        ds = self.data.first
        self.bs = int(self.c0.batch_size)
        if self.bs > self.data.n_train:
            raise ValueError(
                f"config.batch_size={self.bs} is larger than the {self.data.n_train} training "
                "examples; use a smaller batch_size."
            )
        self.steps_per_epoch = self.data.n_train // self.bs
        self.schedule = make_schedule(
            halving,
            pbt,
            steps_per_epoch=self.steps_per_epoch,
            num_epochs=self.c0.num_epochs,
            members=self.n,
            has_validation=self.data.has_validation,
        )
        total = self.steps_per_epoch * self.c0.num_epochs
        self.event_steps = set(self.schedule.event_steps(total)) if self.schedule else set()
        self.tx = optim.make_optimizer(self.c0, self.steps_per_epoch, member_rates=self.n > 1)
        self.ema_decay = float(self.c0.ema_decay)
        self.fresh, self.model_def, model = [], None, None
        for c in cfgs:
            m = make_model(c, ds.image_shape, ds.num_classes)
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
        if isinstance(self.schedule, PBT) and "model.dropout" in self.schedule.fields:
            if "dropout_rate" not in self.hparams:
                raise ValueError(
                    "sweep config: pbt.fields has 'model.dropout', but the members' model has no "
                    "dropout layer whose rate model.dropout sets; drop the field or give the "
                    "members a nonzero model.dropout."
                )
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
            nnx.eval_shape(lambda: make_model(self.c0, *shape))
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

    def breaks(self, epoch: int) -> set[int]:
        """Batches of ``epoch`` after which a schedule acts (its end is :func:`end_epoch`'s)."""
        lo = epoch * self.steps_per_epoch
        return {s - lo for s in self.event_steps if lo < s < lo + self.steps_per_epoch}

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
        model = nnx.eval_shape(lambda: make_model(c, ds.image_shape, ds.num_classes))
        return {p: m.rate for p, m in nnx.iter_modules(model) if isinstance(m, cnn.Dropout)}

    built, other = rates(cfg), rates(probe)
    return sorted(p for p in built if built[p] != other.get(p))


class Programs:
    """The compiled functions and placed arrays for one set of live members.

    One live member runs without a member axis on the device (``single``): the program is then
    exactly a plain single run's (a member axis of size 1 changes XLA's fusion of the batch-norm
    reductions, and with it the last bits). Host-side values always carry the member axis.
    """

    def __init__(self, run: Run, live: Sequence[int]):
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

    def update_hparams(self, run: Run) -> None:
        """Place the live members' current step hyperparameters (after PBT changed them)."""
        self.hparams = self.place_members(
            {k: jnp.asarray(v[self.live]) for k, v in run.hparams.items()}
        )

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


def member_hparams(config) -> dict[str, float]:
    """A member's population hyperparameters, by config field name."""
    return {
        "learning_rate": float(config.learning_rate),
        "weight_decay": float(config.weight_decay),
        "momentum": float(config.momentum),
        "label_smoothing": float(config.label_smoothing),
        "model.dropout": float(config.model.get("dropout", 0.0) or 0.0),
    }


#: Member hyperparameters that live in the optimizer state (``optim.make_optimizer`` with
#: ``member_rates``), by config field: the rate is the ``step_size`` after the unit schedule.
OPTIMIZER_HPARAMS = {
    "learning_rate": "step_size",
    "weight_decay": "weight_decay",
    "momentum": "momentum",
}

#: Member hyperparameters the step takes as arrays (``Run.hparams``), by config field.
STEP_HPARAMS = {"label_smoothing": "label_smoothing", "model.dropout": "dropout_rate"}


def set_member_hparams(run: Run, loop, live, opt_state):
    """``opt_state`` (host, member axis over ``live``) and ``run.hparams`` set to the members'
    current hyperparameters (``MemberLog.hparams``); returns the new optimizer state."""
    for field, name in STEP_HPARAMS.items():
        if name in run.hparams:
            for m in range(run.n):
                if field in loop.members[m].hparams:
                    run.hparams[name][m] = loop.members[m].hparams[field]
    present = pop.get_hyperparams(opt_state)
    values = {
        key: np.array([loop.members[m].hparams[field] for m in live], np.float32)
        for field, key in OPTIMIZER_HPARAMS.items()
        if key in present and all(field in loop.members[m].hparams for m in live)
    }
    return pop.set_hyperparams(opt_state, **values) if values else opt_state
