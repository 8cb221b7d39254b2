r"""Random search: 8 draws of learning rate (log-uniform), weight decay (log-uniform),
momentum (uniform) and label smoothing (uniform) -> one population of 8 members.

Commands::

    .venv/bin/python experiments/sweep.py --config=configs/sweeps/random_optimizer.py \
        --workdir=workdirs/sweeps/random_optimizer
    .venv/bin/python experiments/sweep.py --config=configs/sweeps/random_optimizer.py:smoke \
        --workdir=/tmp/random_optimizer_smoke

Expected time on the 2-core CPU (idle): 8 x 3 epochs x 55000 images at ~600 images/s = about
37 min; smoke about 2-4 min. ``--config.num_trials=16`` or ``--config.search_seed=1`` change
the draws.
"""

from configs.sweeps import common


def get_config(arg=None):
    space = [
        ("learning_rate", {"dist": "log_uniform", "low": 0.02, "high": 0.3}),
        ("weight_decay", {"dist": "log_uniform", "low": 1e-5, "high": 1e-3}),
        ("momentum", {"dist": "uniform", "low": 0.8, "high": 0.95}),
        ("label_smoothing", {"dist": "uniform", "low": 0.0, "high": 0.2}),
    ]
    return common.sweep("random_optimizer", space, arg, search="random", num_trials=8)
