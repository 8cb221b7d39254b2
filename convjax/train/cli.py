"""The command-line front shared by ``experiments/train.py``, ``ablate.py`` and ``sweep.py``.

Every script takes ``--config=PATH[:ARG]`` (an ``ml_collections`` config file, locked, with
``--config.field=value`` overrides) and ``--workdir=DIR``, and behaves the same way:

- an override naming no field lists just the unknown keys with the closest valid names and
  exits 2 (``--config.num_epoch=5`` -> "did you mean 'num_epochs'?");
- a config or data error (a bad value, a missing data set, a damaged checkpoint folder) prints
  ``error: ...`` and exits 2 -- never a traceback;
- a single run whose loss stops being finite exits 3;
- SIGINT/SIGTERM save a checkpoint and exit with 128 + the signal number; the same command
  resumes.

Usage in a script::

    from convjax.train import cli
    cli.main(lambda config, workdir: ..., description="what the script does")
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Callable
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from convjax.train import config as config_lib
from convjax.train.config_files import load_config

FLAGS = flags.FLAGS

#: Exit status of a command-line, config or data error (``error: ...`` on stderr).
EXIT_USAGE = 2
#: Exit status of a single run whose loss or gradient stopped being finite.
EXIT_DIVERGED = 3


def define_flags(config_help: str) -> None:
    """``--config`` (a locked config file with overrides) and ``--workdir``."""
    config_flags.DEFINE_config_file("config", None, config_help, lock_config=True)
    flags.DEFINE_string("workdir", None, "Output folder (rerunning the same command resumes).")
    flags.mark_flags_as_required(["config", "workdir"])


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USAGE)


def _override_keys(argv) -> list[str]:
    return [a.split("=", 1)[0][len("--config.") :] for a in argv if a.startswith("--config.")]


def unknown_override_message(argv) -> str | None:
    """For ``--config.x=...`` overrides naming no field of the config file: a message listing
    them with the closest valid keys (None when every override exists or no config is named)."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is None:
        return None
    try:
        cfg = load_config(spec)
    except Exception:  # noqa: BLE001 -- absl reports an unloadable file itself
        return None
    valid = list(config_lib.flatten(cfg))
    bad = [k for k in _override_keys(argv) if k not in valid]
    if not bad:
        return None
    # A run field or model argument the file leaves at its default is valid, but the locked
    # config cannot grow on the command line: say so instead of calling it a typo.
    run_cfg, prefix = (cfg.base, "base.") if "base" in cfg else (cfg, "")
    settable = {prefix + k for k in config_lib.valid_keys(run_cfg)}
    parts = []
    for k in bad:
        close = difflib.get_close_matches(k, valid, n=3, cutoff=0.6)
        if k in settable:
            parts.append(
                f"--config.{k} (a valid field that the file leaves at its default: set it in the "
                "config file; the command line only changes fields the file has)"
            )
        else:
            parts.append(
                f"--config.{k}"
                + (f" (did you mean {', '.join(map(repr, close))}?)" if close else "")
            )
    return (
        f"unknown config field{'s' if len(bad) > 1 else ''} {', '.join(parts)}; the config "
        f"file {spec.split(':')[0]} has no such field."
    )


def parse_flags(argv):
    """absl's parser, with config typos and flag errors turned into one line and exit 2."""
    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if spec is not None and not Path(spec.split(":")[0]).is_file():
        _fail(f"--config={spec}: no such config file; pass the path of a .py config file.")
    message = unknown_override_message(argv)
    if message:
        _fail(message)
    try:
        return FLAGS(argv)
    except flags.Error as e:
        _fail(str(e))
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(re.sub(r"\s+", " ", str(e)).strip("'\" "))


def run(body: Callable[[object, str], None]) -> None:
    """Call ``body(config, workdir)`` and turn the errors it may raise into exit statuses."""
    from convjax.data import DatasetNotFoundError
    from convjax.train.checkpoint import CheckpointError
    from convjax.train.engine import NonFiniteLossError, TrainingInterrupted

    # Orbax logs every checkpoint step at INFO; keep the terminal for the progress bar.
    if FLAGS.verbosity <= 0:
        logging.set_verbosity(logging.WARNING)
    try:
        body(FLAGS.config, FLAGS.workdir)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr, flush=True)
        sys.exit(128 + e.signum)
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(EXIT_DIVERGED)
    except (ValueError, DatasetNotFoundError, CheckpointError) as e:
        _fail(str(e))


def main(body: Callable[[object, str], None]) -> None:
    """Parse the command line (:func:`parse_flags`) and :func:`run` ``body``."""

    def absl_main(argv):
        if len(argv) > 1:
            _fail(f"unexpected arguments {argv[1:]}; flags look like --name=value.")
        run(body)

    app.run(absl_main, flags_parser=parse_flags)
