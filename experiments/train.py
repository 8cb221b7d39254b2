r"""Train one config and print its test accuracy.

Usage::

    .venv/bin/python experiments/train.py --config=configs/default.py --workdir=workdirs/default
    .venv/bin/python experiments/train.py --config=configs/default.py --config.num_epochs=5 \
        --workdir=workdirs/five_epochs

Rerunning the same command in the same workdir resumes from its last checkpoint. All the
training logic lives in ``convjax.train.train_and_evaluate``; the command-line behaviour (typos,
errors, exit statuses) in ``convjax.train.cli``.

Exit status: 0 done (the last line is ``TEST ACCURACY: xx.xx%``), 2 bad command line, config or
data, 3 NaN/Inf loss, 128 + signal number after SIGINT/SIGTERM (checkpoint saved).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convjax import xla_env

# Before JAX starts: one XLA CPU device per core, so the trainer can split each batch over
# the cores (config.data_parallel; XLA runs one small conv on about one core).
xla_env.use_cpu_cores()

from convjax.train import cli

cli.define_flags("Run config file (configs/default.py or your own).")


def train(config, workdir):
    from convjax.train import train_and_evaluate

    results = train_and_evaluate(config, workdir)
    print(f"TEST ACCURACY: {100 * results['test_accuracy']:.2f}%", flush=True)


if __name__ == "__main__":
    cli.main(train)
