"""The run config: every field with its default and meaning in one table, and everything done
to a config -- loading a config file, overrides, flatten/nest, validation, the model factory.

A *run config* is an ``ml_collections.ConfigDict`` (or a plain dict) with the fields of
:data:`FIELDS`; a field it leaves out takes the default from the table, so a config file only
needs what it changes (``configs/default.py`` spells the main job out in full). ``model`` is a
sub-config: ``model.name`` picks the network (:func:`model_factory`) and every other
``model.*`` key is a keyword argument of that network's constructor.

:func:`prepare` turns a config into the checked, complete copy the engine trains: unknown
keys are refused with the closest valid names (``learning_rat`` -> ``learning_rate``), every
value is checked against its field's rule, cross-field rules run (early stopping needs a
validation split ...), and the ``smoke`` shrink is applied. All of this happens before any
data is loaded, in the command line and in Python alike.

The field table is :data:`FIELDS`;
``python -c "from convjax.train import config; print(config.describe())"`` prints it.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
from collections.abc import Callable, Mapping
from typing import Any

import ml_collections

from convjax.train.errors import ConfigError
from convjax.train.factory import (
    DEFAULT_MODEL,
    NAME_RULE,
    factory_arguments,
    import_path,
    model_factory,
)
from convjax.train.loops import FORMS
from convjax.train.optim import OPTIMIZERS, SCHEDULES

__all__ = [
    "FIELDS",
    "SMOKE",
    "ConfigError",
    "Field",
    "apply_overrides",
    "describe",
    "flatten",
    "nest",
    "prepare",
    "to_json_dict",
    "unknown_keys",
]


# ---------------------------------------------------------------------------- the table


@dataclasses.dataclass(frozen=True)
class Field:
    """One config field: default, meaning, and the rule its value must follow.

    Attributes:
      default: the value a config that leaves the field out gets.
      meaning: one line for the table and the docs.
      rule: words for the error message ("an int >= 1").
      ok: predicate on the value.
    """

    default: Any
    meaning: str
    rule: str
    ok: Callable[[Any], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(low: int) -> tuple[str, Callable[[Any], bool]]:
    return f"an int >= {low}", lambda v: _is_int(v) and v >= low


def _num(low: float, high: float = math.inf, *, low_open=False, high_open=True):
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    words = (
        f"a finite number {'>' if low_open else '>='} {low:g}"
        if high == math.inf
        else f"a number in {lo}{low:g}, {high:g}{hi}"
    )

    def ok(v):
        if not _is_num(v):
            return False
        above = v > low if low_open else v >= low
        below = v < high if high_open else v <= high
        return above and below

    return words, ok


def _choice(*values) -> tuple[str, Callable[[Any], bool]]:
    return f"one of {', '.join(map(repr, values))}", lambda v: v in values


_BOOL = ("True or False", lambda v: isinstance(v, bool))
_NAME = ("a non-empty string", lambda v: isinstance(v, str) and bool(v))


def _f(default, meaning, rule_ok) -> Field:
    return Field(default, meaning, *rule_ok)


#: Every run-config field (dotted path) with its default, meaning and rule. ``model.*`` keys
#: other than ``model.name`` are the network's constructor arguments (checked against its
#: signature by :func:`prepare`).
FIELDS: dict[str, Field] = {
    "dataset": _f("fashion_mnist", "TFDS name of the data set (convjax.data.load_dataset)", _NAME),
    "seed": _f(0, "initialisation, data order, validation split and step keys", _int(0)),
    "smoke": _f(False, "shrink the run to seconds (see SMOKE) for tests", _BOOL),
    "model.name": Field(
        DEFAULT_MODEL,
        "the network (convjax.train.factory): a zoo name, 'module:function' or a callable",
        NAME_RULE,
        lambda v: callable(v) or (isinstance(v, str) and bool(v)),
    ),
    "num_epochs": _f(3, "passes over the training split", _int(1)),
    "batch_size": _f(128, "training batch size", _int(1)),
    "eval_batch_size": _f(
        1000, "batch size of evaluation (memory only; no number changes)", _int(1)
    ),
    "optimizer": _f("sgd", "sgd | adam | adamw (convjax.train.optim)", _choice(*OPTIMIZERS)),
    "learning_rate": _f(0.1, "peak learning rate of the schedule", _num(0, low_open=True)),
    "momentum": _f(0.9, "SGD momentum", _num(0, 1)),
    "nesterov": _f(True, "Nesterov momentum for SGD", _BOOL),
    "weight_decay": _f(5e-4, "decay of kernels (L2 for SGD, decoupled for AdamW)", _num(0)),
    "schedule": _f("onecycle", "constant | cosine | onecycle", _choice(*SCHEDULES)),
    "warmup_epochs": _f(0.0, "linear warmup (constant and cosine schedules)", _num(0)),
    "onecycle_pct_start": _f(
        0.25, "fraction of steps spent raising the rate", _num(0, 1, low_open=True)
    ),
    "onecycle_div_factor": _f(10.0, "initial rate = peak / this", _num(0, low_open=True)),
    "onecycle_final_div_factor": _f(100.0, "final rate = initial / this", _num(0, low_open=True)),
    "label_smoothing": _f(0.1, "label smoothing of the training loss", _num(0, 1, high_open=False)),
    "ema_decay": _f(0.0, "EMA of the weights for evaluation; 0 = off, 0.999 typical", _num(0, 1)),
    "augment.crop_padding": _f(0, "random crops after this much zero padding", _int(0)),
    "augment.flip": _f(False, "random horizontal flips", _BOOL),
    "augment.max_translate": _f(0, "random translations up to this many pixels", _int(0)),
    "tta_flip": _f(False, "evaluate on the mean of each image and its mirror", _BOOL),
    "validation_size": _f(0, "training images held out for validation; 0 = none", _int(0)),
    "early_stopping_patience": _f(
        0, "epochs without validation improvement before stopping; 0 = off", _int(0)
    ),
    "train_subset": _f(0, "use only the first N training images; 0 = all", _int(0)),
    "test_subset": _f(0, "use only the first N test images; 0 = all", _int(0)),
    "eval_test_every_epoch": _f(True, "evaluate the test split after every epoch", _BOOL),
    "data_parallel": _f(
        0, "devices a batch is split over: 0 = all that divide it, 1 = one", _int(0)
    ),
    "loop": _f("auto", "how k steps go to XLA (convjax.train.loops)", _choice("auto", *FORMS)),
    "steps_per_call": _f(0, "steps per jitted call; 0 = the backend's measured best", _int(0)),
    "log_every_steps": _f(50, "steps between train_log records", _int(1)),
    "grad_health_every_steps": _f(
        0, "steps between per-layer gradient/update norm records; 0 = off", _int(0)
    ),
    "progress": _f(True, "draw a progress bar on stderr", _BOOL),
    "verbose": _f(True, "print the summary and one line per epoch on stdout", _BOOL),
    "tensorboard": _f(True, "write TensorBoard event files", _BOOL),
    "figures": _f(True, "write learning curves, filters and activation maps at the end", _BOOL),
}

#: What ``smoke=True`` sets: sizes become ``min(value, smoke value)`` (0 = "all" subsets take the
#: smoke value), ``log_every_steps`` is replaced and early stopping waits one epoch.
SMOKE = {
    "train_subset": 512,
    "test_subset": 256,
    "validation_size": 128,
    "num_epochs": 2,
    "batch_size": 64,
    "eval_batch_size": 128,
    "log_every_steps": 2,
}


def describe() -> str:
    """The field table as Markdown: field, default, rule, meaning."""
    lines = ["| field | default | value | meaning |", "|---|---|---|---|"]
    for name, f in FIELDS.items():
        lines.append(f"| `{name}` | `{f.default!r}` | {f.rule} | {f.meaning} |")
    lines.append("| `model.*` | | | the network's constructor arguments |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- flatten / nest


def _plain(cfg) -> dict[str, Any]:
    if hasattr(cfg, "to_dict"):
        return cfg.to_dict()
    if isinstance(cfg, Mapping):
        return {
            k: _plain(v) if isinstance(v, Mapping) or hasattr(v, "to_dict") else v
            for k, v in cfg.items()
        }
    raise ConfigError(f"config={cfg!r} must be an ml_collections.ConfigDict or a dict.")


def flatten(cfg) -> dict[str, Any]:
    """``{"model": {"pool": "max"}}`` -> ``{"model.pool": "max"}`` (leaves only)."""
    out: dict[str, Any] = {}

    def walk(node, prefix):
        for k, v in node.items():
            if isinstance(v, Mapping):
                walk(v, f"{prefix}{k}.")
            else:
                out[f"{prefix}{k}"] = v

    walk(_plain(cfg), "")
    return out


def nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` (the inverse of :func:`flatten`)."""
    out: dict[str, Any] = {}
    for path, v in flat.items():
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = v
    return out


# ---------------------------------------------------------------------------- checks


def _closest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=3, cutoff=0.6)
    if not close:  # a typo in the last part of a dotted path: compare the last parts too
        tail = key.rsplit(".", 1)[-1]
        by_tail = {v.rsplit(".", 1)[-1]: v for v in valid}
        close = [by_tail[t] for t in difflib.get_close_matches(tail, list(by_tail), n=3)]
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def valid_keys(cfg) -> list[str]:
    """Every dotted key a run config may hold: the table's fields plus the model's arguments."""
    flat = flatten(cfg)
    name = flat.get("model.name", DEFAULT_MODEL)
    try:
        args, _ = factory_arguments(model_factory(name))
    except ConfigError:
        args = []
    return [*FIELDS, *(f"model.{a}" for a in args)]


def unknown_keys(cfg) -> list[str]:
    """The dotted keys of ``cfg`` that are neither fields of :data:`FIELDS` nor arguments of
    its model (a model taking ``**kwargs`` accepts any ``model.*`` key)."""
    flat = flatten(cfg)
    name = flat.get("model.name", DEFAULT_MODEL)
    try:
        _, var_kw = factory_arguments(model_factory(name))
    except ConfigError:
        var_kw = True  # the bad name is reported on its own
    valid = set(valid_keys(cfg))
    return [k for k in flat if k not in valid and not (var_kw and k.startswith("model."))]


def _unknown_message(keys: list[str], valid: list[str], where: str) -> str:
    parts = [f"{k!r}{_closest(k, valid)}" for k in keys]
    return (
        f"{where}: unknown field{'s' if len(keys) > 1 else ''} {', '.join(parts)}; a misspelt "
        "field would otherwise train silently with its default. Valid fields: "
        "convjax.train.config.FIELDS and the model's constructor arguments."
    )


def _check_values(flat: dict[str, Any]) -> None:
    for name, field in FIELDS.items():
        value = flat[name]
        if not field.ok(value):
            raise ConfigError(f"config.{name}={value!r} must be {field.rule} ({field.meaning}).")
    if flat["early_stopping_patience"] and not flat["validation_size"]:
        raise ConfigError(
            f"config.early_stopping_patience={flat['early_stopping_patience']} needs a validation "
            "split to watch, but config.validation_size=0; set validation_size (e.g. 5000) or "
            "early_stopping_patience=0."
        )
    if flat["schedule"] != "constant" and flat["warmup_epochs"] >= flat["num_epochs"]:
        raise ConfigError(
            f"config.warmup_epochs={flat['warmup_epochs']!r} must be below config.num_epochs="
            f"{flat['num_epochs']} for the {flat['schedule']!r} schedule."
        )
    if flat["loop"] == "step" and flat["steps_per_call"] > 1:
        raise ConfigError(
            f"config.steps_per_call={flat['steps_per_call']} with config.loop='step': that form "
            "runs one step per call; use loop='unrolled' or 'scan', or steps_per_call=1."
        )
    if (
        flat["validation_size"]
        and flat["train_subset"]
        and (flat["validation_size"] >= flat["train_subset"])
    ):
        raise ConfigError(
            f"config.validation_size={flat['validation_size']} must be below config.train_subset="
            f"{flat['train_subset']} (the split is taken from the training subset)."
        )


def _apply_smoke(flat: dict[str, Any]) -> None:
    for key, value in SMOKE.items():
        old = flat[key]
        if key in ("train_subset", "test_subset") and old == 0:
            flat[key] = value  # 0 means "all" here
        elif key == "log_every_steps":
            flat[key] = value
        elif _is_int(old) and old > 0:
            flat[key] = min(old, value)  # validation_size 0 (off) and bad values stay
    if flat["early_stopping_patience"]:
        flat["early_stopping_patience"] = 1


def prepare(config) -> ml_collections.ConfigDict:
    """The complete, checked copy of a run config that the engine trains (module docstring).

    Raises:
      ConfigError: an unknown key (with the closest valid names), a bad value (naming the
        field, its value and the rule), a cross-field conflict, or a model argument its
        constructor does not take.
    """
    flat = flatten(config)
    unknown = unknown_keys(config)
    if unknown:
        raise ConfigError(_unknown_message(unknown, valid_keys(config), "config"))
    for name, field in FIELDS.items():
        flat.setdefault(name, field.default)
    if flat["smoke"] is True:
        _apply_smoke(flat)
    _check_values(flat)
    model_factory(flat["model.name"])  # a bad name or module fails here
    out = ml_collections.ConfigDict(nest(flat))
    out.lock()
    return out


def to_json_dict(config) -> dict[str, Any]:
    """The config as JSON-ready nested dicts (a callable model is written as
    ``"module:qualname"``, tuples as lists)."""

    def conv(v):
        if isinstance(v, Mapping):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if callable(v):
            return import_path(v)
        return v

    return conv(_plain(config))


# ---------------------------------------------------------------------------- overrides


def apply_overrides(base, overrides: Mapping[str, Any], *, where: str = "overrides"):
    """A copy of ``base`` with ``overrides`` written in.

    Keys are nested dicts (``{"model": {"pool": "avg"}}``) or dotted paths
    (``{"model.pool": "avg"}``). A key must exist in ``base``, or be a run-config field of
    :data:`FIELDS`, or be a constructor argument of the base's model: a misspelt key raises
    :class:`ConfigError` naming it with the closest valid names (it would otherwise train the
    base config silently).
    """
    out = copy.deepcopy(base)
    if not hasattr(out, "unlocked"):
        out = ml_collections.ConfigDict(_plain(out))
    locked = out.is_locked
    flat_new = flatten(nest({str(k): v for k, v in _flat_items(overrides)}))
    base_keys = set(flatten(base))
    allowed = base_keys | set(valid_keys(_merged(base, flat_new)))
    bad = [k for k in flat_new if k not in allowed]
    if bad:
        raise ConfigError(_unknown_message(bad, sorted(allowed), where))
    with out.unlocked():
        for path, value in flat_new.items():
            node = out
            *parents, leaf = path.split(".")
            for p in parents:
                if p not in node:
                    node[p] = ml_collections.ConfigDict()
                node = node[p]
            node[leaf] = value
    if locked:
        out.lock()
    return out


def _flat_items(overrides: Mapping[str, Any]):
    for k, v in dict(overrides).items():
        if isinstance(v, Mapping) or hasattr(v, "to_dict"):
            for sub, x in flatten(v).items():
                yield f"{k}.{sub}", x
        else:
            yield k, v


def _merged(base, flat_new: Mapping[str, Any]) -> dict[str, Any]:
    flat = flatten(base)
    flat.update(flat_new)
    return nest(flat)
