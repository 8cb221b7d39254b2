"""Metrics out: JSON lines, TensorBoard event files and a terminal progress bar.

:class:`MetricsWriter` appends one JSON object per record to ``WORKDIR/metrics.jsonl`` and
writes every numeric field as a TensorBoard scalar (``tensorboardX``) under
``WORKDIR/tensorboard``. Records carry ``"kind"`` (``"train_log"`` every few steps,
``"epoch"`` once per epoch, ``"health"`` for per-layer norms) and ``"step"``. A run opens
its writer at the step it resumes from (0 for a fresh start): ``metrics.jsonl`` keeps only the
records up to that step and TensorBoard purges later events, so after any kill -- even one
during the first checkpoint write -- the log holds each record once.

:class:`ProgressBar` draws ``epoch 2/3 [#####.....] 234/468 loss 0.412 acc 86.1% 712 img/s``
on one line of a terminal (carriage returns), or prints a line every ``print_every`` updates
when the stream is not a terminal (logs stay readable).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path


class MetricsWriter:
    """Append metrics records to ``metrics.jsonl`` and TensorBoard.

    Args:
      workdir: the run's (or member's) folder.
      tensorboard: also write TensorBoard event files (``tensorboardX``).
      resume_step: the step the run continues from: records after it are dropped from
        ``metrics.jsonl`` and purged from TensorBoard (they belong to a killed attempt).
    """

    def __init__(self, workdir, *, tensorboard: bool = True, resume_step: int = 0):
        self.path = Path(workdir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.truncate_after(resume_step)
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(
                str(Path(workdir) / "tensorboard"), purge_step=int(resume_step) + 1
            )

    def truncate_after(self, step: int) -> None:
        """Drop records with ``step > step`` (the part of a killed run after its checkpoint)."""
        if not self.path.exists():
            return
        keep = []
        for line in self.path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by SIGKILL mid-write
                continue
            if rec.get("step", 0) <= step:
                keep.append(line)
        tmp = self.path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(k + "\n" for k in keep))
        os.replace(tmp, self.path)

    def write(self, kind: str, step: int, **values) -> None:
        """Append ``{"kind": kind, "step": step, **values}``; numbers also go to TensorBoard
        (a dict value ``{"a": 1.0}`` as the scalar ``kind/name/a``)."""
        rec = {"kind": kind, "step": int(step), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for name, v in values.items():
                items = v.items() if isinstance(v, dict) else [(None, v)]
                for sub, x in items:
                    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
                        tag = f"{kind}/{name}" if sub is None else f"{kind}/{name}/{sub}"
                        self._tb.add_scalar(tag, x, int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


class NullWriter:
    """A :class:`MetricsWriter` that writes nothing (processes other than the first in a
    multi-process run, where only process 0 writes files)."""

    def write(self, kind: str, step: int, **values) -> None:
        del kind, step, values

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class ProgressBar:
    """One-line progress for an epoch: loss, accuracy and images/s.

    Args:
      total: steps in the epoch.
      prefix: text before the bar (e.g. ``"epoch 1/3"``).
      stream: where to draw (default ``sys.stderr``).
      enabled: False draws nothing.
      print_every: when ``stream`` is not a terminal, print a line every this many updates.
    """

    def __init__(self, total, prefix="", *, stream=None, enabled=True, print_every=20):
        self.total = max(1, int(total))
        self.prefix = prefix
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.print_every = print_every
        self._updates = 0

    def text(self, done, loss, acc, images_per_s) -> str:
        width = 20
        filled = int(width * min(done, self.total) / self.total)
        bar = "#" * filled + "." * (width - filled)
        return (
            f"{self.prefix} [{bar}] {done}/{self.total} loss {loss:.4f} acc {100 * acc:.1f}% "
            f"{images_per_s:.0f} img/s"
        )

    def update(self, done, loss, acc, images_per_s) -> None:
        if not self.enabled:
            return
        self._updates += 1
        line = self.text(done, loss, acc, images_per_s)
        if self.tty:
            self.stream.write("\r" + line)
            self.stream.flush()
        elif self._updates % self.print_every == 0 or done >= self.total:
            self.stream.write(line + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
