"""Many runs, trained as few populations: what ablations and sweeps have in common.

An ablation (variants x seeds) and a sweep (trials) both come down to a list of
:class:`Run` -- a run config and the folder its results go to. :func:`train_runs` reads back
every run whose ``results.json`` exists, groups the others by structure (runs that differ only
in ``convjax.train.POPULATION_FIELDS``, e.g. seeds or learning rates, form one group)
and trains each group with one :func:`~convjax.train.engine.fit`. A group of one trains in its
run's own folder; a larger group keeps its checkpoints in ``ROOT/groups/<id>``, where ``<id>``
is derived from the member folders, so rerunning the same command resumes the same group from
its checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from convjax.train import config as config_lib
from convjax.train import report
from convjax.train.build import POPULATION_FIELDS, structure_key
from convjax.train.engine import RESULTS_FILE, fit

__all__ = ["Run", "group_runs", "train_runs"]

FitFn = Callable[..., list[dict[str, Any]]]


@dataclasses.dataclass
class Run:
    """One run of an ablation or a sweep.

    Attributes:
      name: for progress lines (``"pooling=max seed=0"``).
      config: its run config.
      directory: where its results, metrics and figures go; it is finished when
        ``directory/results.json`` exists.
    """

    name: str
    config: Any
    directory: Path

    @property
    def results_path(self) -> Path:
        return Path(self.directory) / RESULTS_FILE


def group_runs(
    runs: Sequence[Run], population_fields: Sequence[str] = POPULATION_FIELDS
) -> list[list[int]]:
    """Indices of ``runs`` grouped by structure (first-seen order); each group can train as one
    population because its configs differ only in ``population_fields``."""
    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(runs):
        key = structure_key(config_lib.prepare(r.config), population_fields)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def _group_dir(root: Path, members: Sequence[Run]) -> Path:
    names = "\n".join(sorted(str(Path(r.directory).resolve()) for r in members))
    return root / "groups" / hashlib.sha1(names.encode()).hexdigest()[:10]


def train_runs(
    runs: Sequence[Run],
    root,
    *,
    population_fields: Sequence[str] = POPULATION_FIELDS,
    populations: bool = True,
    strategy: str = "auto",
    mesh: str | None = "auto",
    fit_fn: FitFn | None = None,
    log: Callable[[str], None] = print,
    schedule: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Results of every run (module docstring), in the order of ``runs``.

    Args:
      runs: the runs; their folders decide what is already finished.
      root: folder for the groups' checkpoints.
      population_fields: fields that may differ inside one population.
      populations: False trains every run alone (N = 1).
      strategy, mesh: passed to :func:`~convjax.train.engine.fit`.
      fit_fn: replaces :func:`~convjax.train.engine.fit` (same signature; tests use it).
      log: progress printer.
      schedule: ``{"halving": {...}}`` or ``{"pbt": {...}}`` for every group's ``fit``
        (``convjax.train.schedules``).
    """
    fit_fn = fit_fn or fit
    root = Path(root)
    results: list[dict[str, Any] | None] = [None] * len(runs)
    pending = []
    for i, r in enumerate(runs):
        if r.results_path.exists():
            log(f"{r.name}: finished earlier, reading {r.results_path}")
            results[i] = report.read_json(r.results_path)
        else:
            pending.append(i)
    todo = [runs[i] for i in pending]
    groups = group_runs(todo, population_fields) if populations else [[j] for j in range(len(todo))]
    for g, idx in enumerate(groups, start=1):
        members = [todo[j] for j in idx]
        workdir = members[0].directory if len(members) == 1 else _group_dir(root, members)
        log(
            f"group {g}/{len(groups)}: {', '.join(r.name for r in members)}"
            + (f" as one population in {workdir}" if len(members) > 1 else "")
        )
        out = fit_fn(
            [r.config for r in members],
            workdir,
            member_dirs=[r.directory for r in members],
            strategy=strategy,
            mesh=mesh,
            log=log,
            **dict(schedule or {}),
        )
        for j, res in zip(idx, out):
            results[pending[j]] = res
    return results
