"""Layer 7: training. ``train_and_evaluate(config, workdir)`` is the one entry point.

Modules, one job each:

- :mod:`~convjax.train.optim`: optimizer and learning-rate schedule from a config.
- :mod:`~convjax.train.state`: :class:`TrainState` (a pure pytree) split from an NNX model.
- :mod:`~convjax.train.steps`: the pure member step ``train_step(state, batch, key, hparams)
  -> (state, metrics)`` and the eval step (population/sweep code reuses them).
- :mod:`~convjax.train.loops`: loop forms (separate calls, rolled scan, unrolled scan),
  chosen per backend by measurement.
- :mod:`~convjax.train.metrics`: JSON lines, TensorBoard, progress bar.
- :mod:`~convjax.train.checkpoint`: Orbax checkpoints (atomic, every epoch, on SIGINT/SIGTERM).
- :mod:`~convjax.train.plots`: learning curves, first-layer filters, activation maps.
- :mod:`~convjax.train.trainer`: :func:`train_and_evaluate`.

Populations, sweeps, ablations, sharding and multi-process helpers live beside them
(``population``, ``sweep_space``, ``ablation``, ``sharding``, ``distributed``).
"""

from convjax.train.checkpoint import Checkpointer
from convjax.train.loops import BEST_FORM, FORMS, best_form, make_multi_step
from convjax.train.metrics import MetricsWriter, ProgressBar
from convjax.train.optim import OPTIMIZERS, SCHEDULES, make_optimizer, make_schedule
from convjax.train.state import ModelDef, TrainState, create_train_state, merge_model, split_model
from convjax.train.steps import make_eval_step, make_train_step, smoothed_cross_entropy
from convjax.train.trainer import (
    NonFiniteLossError,
    TrainingInterrupted,
    load_data,
    make_model,
    prepare_config,
    train_and_evaluate,
)

# --- populations/sweeps ---
# isort: split
from convjax.train.ablation import run_ablation
from convjax.train.population import (
    STRATEGIES,
    PopulationStep,
    choose_strategy,
    population_step,
    stack,
    unstack,
)
from convjax.train.sweep import POPULATION_FIELDS, run_sweep, train_population
