#!/usr/bin/env bash
# Packaging check (run by scripts/test.sh, so in CI): build convjax's wheel, install it into a
# fresh virtual environment with nothing but the dependencies pyproject.toml declares, and use
# the core from outside the repository: convjax.functional, testing, nn, models, inspect and
# interop import, a small convolution gives the hand-computed numbers, and the data extra's
# absence is a clear error. Dependencies come from pip's cache or the package index, at the
# versions requirements.txt pins (a constraints file), so the check needs no other network.
# Usage: bash scripts/check_wheel.sh   (about a minute with a warm pip cache)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Built from a copy: an in-tree build would leave build/ behind, whose stale files a later
# build could ship.
mkdir "$tmp/src"
tar --exclude=__pycache__ -cf - pyproject.toml README.md convjax | tar -xf - -C "$tmp/src"
"$PY" -m pip wheel -q --no-deps -w "$tmp/dist" "$tmp/src"
wheel=$(ls "$tmp"/dist/convjax-*.whl)
# requirements.txt without extras (a constraints file may not name any): jax[cpu] -> jax.
sed -E 's/\[[^]]*\]//' requirements.txt > "$tmp/constraints.txt"
"$PY" -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q -c "$tmp/constraints.txt" "$wheel"

# From an empty folder, so that the repository's own convjax/ cannot be imported by accident.
mkdir "$tmp/run"
cd "$tmp/run"
"$tmp/venv/bin/python" - "$wheel" <<'EOF'
import importlib.metadata
import importlib.util
import pathlib
import sys
import zipfile

import convjax

where = pathlib.Path(convjax.__file__).resolve()
assert "site-packages" in where.parts, f"convjax imported from {where}, not the installed wheel"
assert importlib.metadata.version("convjax") == convjax.__version__, (
    importlib.metadata.version("convjax"),
    convjax.__version__,
)
names = zipfile.ZipFile(sys.argv[1]).namelist()
assert "convjax/py.typed" in names, "the wheel does not ship convjax/py.typed"
assert (where.parent / "py.typed").is_file()

import jax.numpy as jnp
from flax import nnx

import convjax.functional as cf
import convjax.inspect as ci
import convjax.interop
import convjax.nn as cnn
from convjax.models import PatternCNN
from convjax.testing import gradcheck

# Ten 3x3x3 filters of ones on a 7x7x3 input of ones, stride 2: (7 - 3) // 2 + 1 = 3 outputs
# per side, each the sum of 27 ones plus the bias 0.5.
y = cf.conv(jnp.ones((1, 7, 7, 3)), jnp.ones((3, 3, 3, 10)), jnp.full((10,), 0.5), stride=2)
assert y.shape == (1, 3, 3, 10) and bool((y == 27.5).all()), y
gradcheck(lambda k: cf.conv(jnp.arange(25.0).reshape(5, 5, 1), k).sum(), jnp.ones((3, 3, 1, 2)))
layer = cnn.Conv(3, 10, (5, 5), rngs=nnx.Rngs(0))
assert ci.summary(layer, (32, 32, 3), print_fn=None).rows[0].params == 760  # 10 * (75 + 1)
model = PatternCNN((28, 28, 1), 10, rngs=nnx.Rngs(0))
assert model(jnp.zeros((2, 28, 28, 1))).shape == (2, 10)
assert convjax.interop.conv_weight_from_torch(jnp.zeros((10, 3, 5, 5))).shape == (5, 5, 3, 10)

# The core installs no TFDS; convjax.data imports, and loading names the extra to install.
assert importlib.util.find_spec("tensorflow_datasets") is None
import convjax.data

try:
    convjax.data.load_dataset("fashion_mnist")
except ModuleNotFoundError as err:
    assert "convjax[data]" in str(err), err
else:
    raise AssertionError("load_dataset worked without tensorflow-datasets")
print(f"wheel check passed: {pathlib.Path(sys.argv[1]).name} in a fresh venv")
EOF
