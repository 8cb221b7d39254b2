"""Shared test setup: float64 available for references, quiet logs."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys
import tempfile

# The experiment configs are the package `configs` at the repository root (config files
# import each other, e.g. `from configs import default`); the experiments put the root on
# the path themselves, the tests do it here.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# impl="auto" caches its measurements in a JSON file; keep the suite's out of the user's home.
os.environ.setdefault("CONVJAX_CACHE_DIR", tempfile.mkdtemp(prefix="convjax-test-cache-"))
