r"""Grid sweep with a structural field: pooling kind x learning rate -> 3 populations of 3.

``model.pool`` changes the traced program, so the sweep splits into one group per pooling
kind; inside a group the three learning rates train as one population.

Commands::

    .venv/bin/python experiments/sweep.py --config=configs/sweeps/pooling_lr.py \
        --workdir=workdirs/sweeps/pooling_lr
    .venv/bin/python experiments/sweep.py --config=configs/sweeps/pooling_lr.py:smoke \
        --workdir=/tmp/pooling_lr_smoke

Expected time on the 2-core CPU (idle): 9 trials x 3 epochs x 55000 images at ~600 images/s
= about 40 min; smoke about 3-5 min.
"""

from configs.sweeps import common


def get_config(arg=None):
    space = [("model.pool", ("max", "avg", "l2")), ("learning_rate", (0.05, 0.1, 0.2))]
    return common.sweep("pooling_lr", space, arg)
