"""Layer 7: training. One engine trains N >= 1 members; a single run is N = 1.

Entry points:

- :func:`train_and_evaluate` ``(config, workdir)``: one run (``fit`` with one member).
- :func:`fit` ``(configs, workdir)``: a population trained as one jitted program.
- :func:`run_ablation` / :func:`run_sweep`: orchestrators over ``fit`` (variants x seeds,
  search spaces), resumable, writing tables and figures; :func:`tables_from_runs` rebuilds an
  ablation's tables from its recorded ``runs.csv``.
- :func:`compare_paired`: a variant against a baseline over shared seeds (difference,
  bootstrap interval, paired t-test and Wilcoxon p-values, seeds needed), the statistics in
  those tables.

Modules, one job each: :mod:`~convjax.train.config` (fields, defaults, loading, overrides,
validation, the model factory), :mod:`~convjax.train.engine` (the loop),
:mod:`~convjax.train.state` (the train state and the versioned loop state),
:mod:`~convjax.train.steps` (pure member steps), :mod:`~convjax.train.population` (N members as
one step), :mod:`~convjax.train.loops` (k steps per call), :mod:`~convjax.train.inputs` (data on
the device), :mod:`~convjax.train.optim`, :mod:`~convjax.train.checkpoint` (verified
checkpoints), :mod:`~convjax.train.metrics` (JSON lines, TensorBoard, progress bar),
:mod:`~convjax.train.report` (JSON, tables, figures), :mod:`~convjax.train.stats` (paired
statistics over seeds), :mod:`~convjax.train.runs` (grouping runs
into populations), :mod:`~convjax.train.sharding` and :mod:`~convjax.train.distributed` (many
devices and hosts), :mod:`~convjax.train.cli` (the experiments' command line).
"""

from convjax.train.ablation import run_ablation
from convjax.train.ablation_tables import tables_from_runs
from convjax.train.checkpoint import CheckpointError
from convjax.train.config import ConfigError, prepare
from convjax.train.config_files import load_config
from convjax.train.engine import (
    POPULATION_FIELDS,
    NonFiniteLossError,
    TrainingInterrupted,
    fit,
    train_and_evaluate,
)
from convjax.train.factory import make_model
from convjax.train.population import population_step, stack, unstack
from convjax.train.saved import load_model
from convjax.train.state import LoopState, TrainState
from convjax.train.stats import (
    PairedComparison,
    bootstrap_interval,
    compare_paired,
    mean_interval,
    seeds_needed,
)
from convjax.train.sweep import run_sweep

__all__ = [
    "CheckpointError",
    "ConfigError",
    "LoopState",
    "NonFiniteLossError",
    "POPULATION_FIELDS",
    "PairedComparison",
    "TrainState",
    "TrainingInterrupted",
    "bootstrap_interval",
    "compare_paired",
    "fit",
    "load_config",
    "load_model",
    "make_model",
    "mean_interval",
    "population_step",
    "prepare",
    "run_ablation",
    "run_sweep",
    "seeds_needed",
    "stack",
    "tables_from_runs",
    "train_and_evaluate",
    "unstack",
]
