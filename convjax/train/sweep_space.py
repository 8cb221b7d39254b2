"""Search spaces of a sweep: grid and random trials, grouping, best-config files.

A sweep config's ``space`` maps a base-config field path (dots between levels, e.g.
``"optimizer.learning_rate"``) to either

- a tuple/list of values: a grid axis (``search="grid"``), or a uniform choice
  (``search="random"``); or
- a distribution dict for random search: ``{"dist": "log_uniform", "low": 1e-3, "high": 1}``,
  ``{"dist": "uniform", "low": 0, "high": 0.2}``, ``{"dist": "int_uniform", "low": 0,
  "high": 9}`` (inclusive), ``{"dist": "choice", "values": (...)}``.

Field paths are strings (``ml_collections.ConfigDict`` refuses dots in keys, so a sweep config
stores the space as a tuple of ``(path, values)`` pairs, see ``configs/sweeps/``).

Trials are plain dicts ``{path: value}``; ``convjax.train.runs.group_runs`` splits them into
populations by their *structural* fields (anything that changes array shapes or the traced
program: widths, kernel size, stride, dilation, pooling kind ...), inside which the numeric
fields vary per member.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")


def _as_items(space) -> list[tuple[str, Any]]:
    if isinstance(space, Mapping):
        items = list(space.items())
    else:
        items = [tuple(x) for x in space]
    for item in items:
        if len(item) != 2 or not isinstance(item[0], str) or not item[0]:
            raise ValueError(
                f"space: entry {item!r} must be a (field_path, values) pair with a non-empty "
                "string path like 'optimizer.learning_rate'."
            )
    names = [k for k, _ in items]
    if len(set(names)) != len(names):
        raise ValueError(f"space: field paths {names} repeat a path; list each field once.")
    if not items:
        raise ValueError("space: it is empty; give at least one (field_path, values) pair.")
    return items


def _is_dist(v) -> bool:
    return isinstance(v, Mapping) or hasattr(v, "keys")


def grid_trials(space) -> list[dict[str, Any]]:
    """Cartesian product of the value lists (first field varies slowest)."""
    items = _as_items(space)
    for name, values in items:
        if _is_dist(values) or isinstance(values, (str, bytes)) or not len(values):
            raise ValueError(
                f"space[{name!r}]={values!r}: grid search needs a non-empty tuple of values; "
                "distributions only work with search='random'."
            )
    names = [n for n, _ in items]
    return [dict(zip(names, combo)) for combo in itertools.product(*[v for _, v in items])]


def _sample(name: str, spec, rng: np.random.Generator):
    if not _is_dist(spec):
        if isinstance(spec, (str, bytes)) or not len(spec):
            raise ValueError(f"space[{name!r}]={spec!r} must be a non-empty tuple of values.")
        return spec[int(rng.integers(len(spec)))]
    spec = dict(spec)
    dist = spec.get("dist")
    if dist not in DISTRIBUTIONS:
        raise ValueError(
            f"space[{name!r}]: dist={dist!r} is not one of {DISTRIBUTIONS}; e.g. "
            "{'dist': 'log_uniform', 'low': 1e-3, 'high': 1.0}."
        )
    if dist == "choice":
        return _sample(name, tuple(spec.get("values", ())), rng)
    low, high = spec.get("low"), spec.get("high")
    if low is None or high is None or not low <= high:
        raise ValueError(
            f"space[{name!r}]: low={low!r}, high={high!r} must both be set with low <= high."
        )
    if dist == "uniform":
        return float(rng.uniform(low, high))
    if dist == "int_uniform":
        return int(rng.integers(int(low), int(high) + 1))
    if low <= 0:
        raise ValueError(f"space[{name!r}]: log_uniform needs low > 0, got low={low!r}.")
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def random_trials(space, num_trials: int, seed: int = 0) -> list[dict[str, Any]]:
    """``num_trials`` independent draws from the space (numpy Generator seeded with ``seed``)."""
    if isinstance(num_trials, bool) or not isinstance(num_trials, int) or num_trials < 1:
        raise ValueError(f"random_trials: num_trials={num_trials!r} must be a positive int.")
    items = _as_items(space)
    rng = np.random.default_rng(seed)
    return [{n: _sample(n, spec, rng) for n, spec in items} for _ in range(num_trials)]


def make_trials(search: str, space, *, num_trials: int | None = None, seed: int = 0):
    """Trials of a ``"grid"`` or ``"random"`` search."""
    if search == "grid":
        return grid_trials(space)
    if search == "random":
        if num_trials is None:
            raise ValueError("make_trials: search='random' needs num_trials (e.g. 16).")
        return random_trials(space, num_trials, seed)
    raise ValueError(f"make_trials: search={search!r} must be 'grid' or 'random'.")
