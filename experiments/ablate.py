"""Run an ablation: every variant x seed of a base config, then tables and plots.

    .venv/bin/python experiments/ablate.py --config=configs/ablations/pooling.py --workdir=DIR

The config file's docstring gives the exact command and expected time. Rerunning the same
command resumes: finished runs are read back, an interrupted group resumes from its checkpoint.
Any config field can be overridden on the command line, e.g. ``--config.seeds=0,1`` or
``--config.base.num_epochs=2``; errors and exit statuses as in ``convjax.train.cli``.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from convjax import xla_env

xla_env.use_cpu_cores()  # before JAX starts: one CPU device per core (see experiments/train.py)

from convjax.train import cli

cli.define_flags("Ablation config file (configs/ablations/<name>.py).")


def ablate(config, workdir):
    from convjax.train import run_ablation

    out = run_ablation(config, workdir)
    for name, path in out["files"].items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    cli.main(ablate)
