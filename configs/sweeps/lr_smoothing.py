r"""Grid sweep: learning rate x label smoothing x seed, ONE population of 12 members.

Every field here is numeric, so all 12 trials train together: stacked parameters and
optimizer states, per-member learning rates / smoothing / seeds as arrays, one population step.

Commands::

    .venv/bin/python experiments/sweep.py --config=configs/sweeps/lr_smoothing.py \
        --workdir=workdirs/sweeps/lr_smoothing
    .venv/bin/python experiments/sweep.py --config=configs/sweeps/lr_smoothing.py:smoke \
        --workdir=/tmp/lr_smoothing_smoke           # seconds-to-minutes, for tests

Expected time on the 2-core CPU (idle): 12 members x 3 epochs x 55000 images at ~600
images/s = about 55 min (the population runs at least as fast as 12 runs one by one, which
would take as long plus 11 extra compiles); smoke about 2-4 min.
"""

from configs.sweeps import common


def get_config(arg=None):
    space = [
        ("learning_rate", (0.05, 0.1, 0.2)),
        ("label_smoothing", (0.0, 0.1)),
        ("seed", (0, 1)),
    ]
    return common.sweep("lr_smoothing", space, arg)
