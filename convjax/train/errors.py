"""The exceptions of convjax.train: a bad config, a diverged single run, an interruption."""

from __future__ import annotations

import signal


class ConfigError(ValueError):
    """A config field is unknown or has a bad value; the message names the field and the fix."""


class NonFiniteLossError(FloatingPointError):
    """A single run's loss or gradient became NaN or Inf; the message names the step."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a checkpoint was saved at ``step``. Call again to resume."""

    def __init__(self, signum: int, step: int, checkpoint_dir: str):
        self.signum, self.step, self.checkpoint_dir = signum, step, checkpoint_dir
        super().__init__(
            f"{signal.Signals(signum).name} received: checkpoint saved at step {step} in "
            f"{checkpoint_dir}; run the same command again to resume."
        )
