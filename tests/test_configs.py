"""Every single-run config under configs/: loads, documents itself, shrinks for smoke runs."""

import glob
import importlib.util
import os
import re

import pytest

from convjax.train.config import prepare
from convjax.train.config_files import load_config
from convjax.train.factory import make_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
CONFIGS = [p for p in CONFIGS if not os.path.basename(p).startswith("_")]


def load(path):
    spec = importlib.util.spec_from_file_location("_cfg_" + os.path.basename(path)[:-3], path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_docstring_gives_command_time_and_accuracy(path):
    mod = load(path)
    doc = mod.__doc__
    rel = os.path.relpath(path, ROOT)
    assert f"experiments/train.py --config={rel}" in doc
    assert re.search(r"\d+(\.\d+)?%", doc), "expected accuracy"
    assert re.search(r"\d+\s*(-\s*\d+\s*)?(min|minutes)", doc), "expected time"
    assert "smoke" in doc


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_config_builds_and_smoke_shrinks(path):
    mod = load(path)
    full = prepare(mod.get_config())
    smoke = prepare(mod.get_config("smoke"))
    assert smoke.train_subset == 512 and smoke.num_epochs <= 2 and full.train_subset == 0
    model = make_model(full, (28, 28, 1), 10)
    assert model(__import__("jax").numpy.zeros((2, 28, 28, 1))).shape == (2, 10)


def test_long_config_differs_from_default_as_documented():
    default = load_config(os.path.join(ROOT, "configs", "default.py"))
    long = load_config(os.path.join(ROOT, "configs", "fashion_mnist_long.py"))
    assert (default.num_epochs, long.num_epochs) == (3, 15)
    assert long.augment.crop_padding == 2 and long.augment.flip and long.tta_flip
    assert not default.augment.flip and default.augment.crop_padding == 0
