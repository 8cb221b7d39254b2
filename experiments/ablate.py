"""Run an ablation: every variant x seed of a base config, then tables and plots.

    .venv/bin/python experiments/ablate.py --config=configs/ablations/pooling.py --workdir=DIR

The config file's docstring gives the exact command and expected time. Rerunning the same
command resumes: finished runs (their final results JSON exists) are read back, an
interrupted one resumes from its checkpoint. Any config field can be overridden on the command
line, e.g. ``--config.seeds=0,1`` or ``--config.base.num_epochs=2``; a typo is an error that
lists the valid keys (the config is locked).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from convjax import xla_env

xla_env.use_cpu_cores()  # before JAX starts: one CPU device per core (see experiments/train.py)

from convjax.train.ablation import run_ablation

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Ablation config file (configs/ablations/<name>.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (resumes when it exists).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every checkpoint step at INFO
    out = run_ablation(_CONFIG.value, _WORKDIR.value)
    for name, path in out["files"].items():
        print(f"wrote {name}: {path}")


if __name__ == "__main__":
    app.run(main)
