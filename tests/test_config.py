"""convjax.train.config: the field table, defaults, loading, overrides, and every validation
path -- each raised before any data is loaded."""

import math
import os

import ml_collections
import pytest

from convjax import data as cdata
from convjax.train import config as C
from convjax.train import engine, factory
from convjax.train.config_files import load_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smoke():
    return load_config(f"{ROOT}/configs/default.py:smoke")


def with_(**kv):
    """The smoke config as a plain dict with ``a__b=value`` written to ``a.b`` (a dict, so any
    value can be set: a ConfigDict would refuse a string where a float was)."""
    c = smoke().to_dict()
    for k, v in kv.items():
        node = c
        *parents, leaf = k.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = v
    return c


def test_defaults_fill_a_minimal_config():
    c = C.prepare(ml_collections.ConfigDict({"model": {"name": "LeNet5"}, "num_epochs": 1}))
    assert c.num_epochs == 1 and c.learning_rate == C.FIELDS["learning_rate"].default
    assert c.augment.flip is False and c.model.name == "LeNet5" and c.is_locked
    assert "| `learning_rate` | `0.1` |" in C.describe()


def test_default_config_file_spells_out_exactly_the_table():
    # configs/default.py is the main job written out: every field of the table, no other
    flat = C.flatten(load_config(f"{ROOT}/configs/default.py"))
    run_fields = {k for k in flat if not k.startswith("model.") or k == "model.name"}
    assert run_fields == set(C.FIELDS)
    assert not C.unknown_keys(flat)


def test_smoke_shrinks_sizes():
    c = C.prepare(smoke())
    assert (c.train_subset, c.test_subset, c.num_epochs, c.batch_size) == (512, 256, 2, 64)
    full = C.prepare(load_config(f"{ROOT}/configs/default.py"))
    assert full.train_subset == 0 and full.num_epochs == 3


@pytest.mark.parametrize(
    "kv, message",
    [
        # a typo set in Python is refused with the closest valid names
        ({"learning_rat": 0.1}, r"unknown field 'learning_rat' \(did you mean 'learning_rate'"),
        ({"model__pooling": "max"}, r"unknown field 'model.pooling' \(did you mean 'model.pool'"),
        ({"augment__flipp": True}, r"unknown field 'augment.flipp' \(did you mean 'augment.flip'"),
        ({"learning_rate": math.inf}, r"config.learning_rate=inf must be a finite number > 0"),
        ({"learning_rate": math.nan}, r"config.learning_rate=nan must be a finite number > 0"),
        ({"learning_rate": 0.0}, r"config.learning_rate=0.0 must be a finite number > 0"),
        ({"learning_rate": "0.1"}, r"config.learning_rate='0.1' must be a finite number"),
        ({"num_epochs": 0}, r"config.num_epochs=0 must be an int >= 1"),
        ({"batch_size": True}, r"config.batch_size=True must be an int >= 1"),
        ({"steps_per_call": -1}, r"config.steps_per_call=-1 must be an int >= 0"),
        ({"onecycle_div_factor": 0.0}, r"config.onecycle_div_factor=0.0 must be a finite number >"),
        ({"onecycle_pct_start": 1.5}, r"onecycle_pct_start=1.5 must be a number in \(0, 1\)"),
        ({"momentum": 1.0}, r"config.momentum=1.0 must be a number in \[0, 1\)"),
        ({"ema_decay": 1.5}, r"config.ema_decay=1.5 must be a number in \[0, 1\)"),
        ({"label_smoothing": 2.0}, r"config.label_smoothing=2.0 must be a number in \[0, 1\]"),
        ({"weight_decay": -1.0}, r"config.weight_decay=-1.0 must be a finite number >= 0"),
        ({"optimizer": "rmsprop"}, r"config.optimizer='rmsprop' must be one of 'sgd', 'adam'"),
        ({"schedule": "linear"}, r"config.schedule='linear' must be one of 'constant'"),
        ({"loop": "fast"}, r"config.loop='fast' must be one of 'auto', 'step'"),
        ({"validation_size": -1}, r"config.validation_size=-1 must be an int >= 0"),
        ({"tta_flip": 1}, r"config.tta_flip=1 must be True or False"),
        (
            {"early_stopping_patience": 2, "validation_size": 0, "smoke": False},
            r"early_stopping_patience=2 needs a validation split .* config.validation_size=0",
        ),
        (
            {"schedule": "cosine", "warmup_epochs": 3.0},
            r"config.warmup_epochs=3.0 must be below config.num_epochs=2",
        ),
        ({"loop": "step", "steps_per_call": 4}, r"config.steps_per_call=4 with config.loop='step'"),
        (
            {"validation_size": 600, "smoke": False, "train_subset": 512},
            r"config.validation_size=600 must be below config.train_subset=512",
        ),
        ({"model__name": "ResNet99"}, r"config.model.name='ResNet99' is not a model of convjax"),
        ({"model__name": "LeNet"}, r"is not a model of convjax.models. Did you mean 'LeNet5'"),
        ({"model__name": "no_such_module:f"}, r"module 'no_such_module' cannot be imported"),
        ({"model__name": "convjax.models:Nope"}, r"convjax.models has no callable 'Nope'"),
    ],
)
def test_every_bad_field_is_refused_naming_it(kv, message):
    with pytest.raises(C.ConfigError, match=message):
        C.prepare(with_(**kv))


def test_bad_model_values_fail_before_the_data_is_loaded(tmp_path, monkeypatch):
    def no_data(*a, **k):
        raise AssertionError("the data set was loaded before the config was checked")

    monkeypatch.setattr(cdata, "load_dataset", no_data)
    with pytest.raises(C.ConfigError, match=r"config.model: PatternCNN: pool='maxx'"):
        engine.train_and_evaluate(with_(model__pool="maxx"), tmp_path)
    with pytest.raises(C.ConfigError, match=r"config.learning_rate=nan"):
        engine.train_and_evaluate(with_(learning_rate=math.nan), tmp_path)
    assert not (tmp_path / "results.json").exists()


def test_model_factory_forms():
    from convjax.models import MODELS, ResNet20

    assert factory.model_factory("ResNet20") is ResNet20 and "BasicBlock" not in MODELS
    assert factory.model_factory("convjax.models:LeNet5") is MODELS["LeNet5"]
    f = lambda input_shape, num_classes, *, rngs: None  # noqa: E731
    assert factory.model_factory(f) is f
    # preset arguments are checked against the class under the partial
    assert "stage_sizes" in factory.factory_arguments(ResNet20)[0]


def test_apply_overrides_and_errors():
    b = smoke()
    c = C.apply_overrides(b, {"model": {"pool": "avg"}, "model.kernel_size": 5})
    assert (c.model.pool, c.model.kernel_size, b.model.pool) == ("avg", 5, "max")
    with pytest.raises(C.ConfigError, match=r"space: unknown field 'model.kernal_size' \(did you"):
        C.apply_overrides(b, {"model.kernal_size": 5}, where="space")


def test_load_config_errors(tmp_path):
    with pytest.raises(C.ConfigError, match=r"config file '/nope.py' does not exist"):
        load_config("/nope.py")
    (tmp_path / "empty.py").write_text("x = 1\n")
    with pytest.raises(C.ConfigError, match=r"has no get_config"):
        load_config(tmp_path / "empty.py")
    # the ":arg" suffix picks a preset
    assert load_config(f"{ROOT}/configs/default.py:smoke").smoke is True


def test_to_json_dict_writes_a_callable_model_as_its_import_path():
    from convjax.models import LeNet5

    c = with_(model__name=LeNet5)
    assert C.to_json_dict(c)["model"]["name"] == "convjax.models.lenet:LeNet5"
