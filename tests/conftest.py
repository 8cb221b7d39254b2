"""Shared test setup: float64 available for references, quiet logs."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile

# impl="auto" caches its measurements in a JSON file; keep the suite's out of the user's home.
os.environ.setdefault("CONVJAX_CACHE_DIR", tempfile.mkdtemp(prefix="convjax-test-cache-"))
