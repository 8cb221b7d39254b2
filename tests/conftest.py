"""Shared test setup: float64 available for references, quiet logs."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys

# The experiment configs are the package `configs` at the repository root (config files
# import each other, e.g. `from configs import default`); the experiments put the root on
# the path themselves, the tests do it here.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
