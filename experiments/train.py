r"""Train one config and print its test accuracy.

Usage::

    .venv/bin/python experiments/train.py --config=configs/default.py --workdir=workdirs/default
    .venv/bin/python experiments/train.py --config=configs/default.py --config.num_epochs=5 \
        --workdir=workdirs/five_epochs

The config is locked: ``--config.num_epoch=5`` (a typo) is an error that lists the valid keys.
Rerunning the same command in the same workdir resumes from its last checkpoint. All the
training logic lives in ``convjax.train.train_and_evaluate``.

Exit status: 0 done (the last line is ``TEST ACCURACY: xx.xx%``), 2 bad command line or
config, 3 NaN/Inf loss, 128 + signal number after SIGINT/SIGTERM (checkpoint saved).
"""

import importlib.util
import re
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from convjax import xla_env

# Before JAX starts: one XLA CPU device per core, so the trainer can split each batch over
# the cores (config.data_parallel; XLA runs one small conv on about one core).
xla_env.use_cpu_cores()

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to a config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "Folder for checkpoints, metrics, results and figures.")
flags.mark_flags_as_required(["config", "workdir"])


def config_keys(cfg, prefix="") -> list[str]:
    """Dotted names of every leaf field of a ConfigDict (``model.widths``, ``seed`` ...)."""
    keys = []
    for k, v in cfg.items():
        if hasattr(v, "items"):
            keys += config_keys(v, f"{prefix}{k}.")
        else:
            keys.append(f"{prefix}{k}")
    return keys


def _load_config_for_help(argv):
    """The config named by ``--config=PATH[:ARG]`` in ``argv``, or None."""
    for a in argv:
        if a.startswith("--config="):
            path, _, arg = a.split("=", 1)[1].partition(":")
            spec = importlib.util.spec_from_file_location("_config_for_help", path)
            mod = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(mod)
            return mod.get_config(arg or None)
    return None


def parse_flags(argv):
    """absl's parser, with a config typo turned into a message listing the valid keys."""
    try:
        return FLAGS(argv)
    except (AttributeError, KeyError) as e:
        msg = str(e).strip("'\"").replace("\\n", " ").replace("\\'", "'")
        field = re.search(r"'([^']+)'", msg)
        overrides = [a.split("=", 1)[0] for a in argv if a.startswith("--config.")]
        bad = [o for o in overrides if field and o.endswith("." + field.group(1))] or overrides
        cfg = _load_config_for_help(argv)
        valid = ", ".join(sorted(config_keys(cfg))) if cfg is not None else "?"
        print(
            f"error: unknown config field {' '.join(bad)} ({msg}).\nValid keys: {valid}",
            file=sys.stderr,
        )
        sys.exit(2)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    # Orbax logs every checkpoint step at INFO; keep the terminal for the progress bar.
    if FLAGS.verbosity <= 0:
        logging.set_verbosity(logging.WARNING)
    from convjax.train import NonFiniteLossError, TrainingInterrupted, train_and_evaluate

    try:
        results = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(3)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    print(f"TEST ACCURACY: {100 * results['test_accuracy']:.2f}%", flush=True)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
