r"""Grid sweep: dropout rate x weight decay, 2 populations (dropout off; dropout on, 3 rates).

The dropout *rate* is a population field (each member's rate is an array the train step
writes into the Dropout layers), but dropout on/off is structural: the network has no
Dropout layer at rate 0, so the 0.0 trials form their own population of 2 and the 0.2 / 0.4
/ 0.6 trials one population of 6.

Commands::

    .venv/bin/python experiments/sweep.py --config=configs/sweeps/dropout_wd.py \
        --workdir=workdirs/sweeps/dropout_wd
    .venv/bin/python experiments/sweep.py --config=configs/sweeps/dropout_wd.py:smoke \
        --workdir=/tmp/dropout_wd_smoke             # seconds-to-minutes, for tests

Expected time on the 2-core CPU (idle): 8 members x 3 epochs x 55000 images at ~600 images/s
= about 40 min; smoke about 1-3 min.
"""

from configs.sweeps import common


def get_config(arg=None):
    space = [
        ("model.dropout", (0.0, 0.2, 0.4, 0.6)),
        ("weight_decay", (5e-4, 5e-3)),
    ]
    return common.sweep("dropout_wd", space, arg)
