"""Metrics out: JSON lines, TensorBoard event files and a terminal progress bar.

:class:`MetricsWriter` appends one JSON object per record to ``WORKDIR/metrics.jsonl`` and
writes every numeric field as a TensorBoard scalar (``tensorboardX``) under
``WORKDIR/tensorboard``. Records carry ``"kind"`` (``"train_log"`` every few steps,
``"epoch"`` once per epoch) and ``"step"``. A resumed run first truncates ``metrics.jsonl``
to the records up to its checkpoint's step, so the file reads as one uninterrupted run.

:class:`ProgressBar` draws ``epoch 2/3 [#####.....] 234/468 loss 0.412 acc 86.1% 712 img/s``
on one line of a terminal (carriage returns), or prints a line every ``print_every`` updates
when the stream is not a terminal (logs stay readable).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path


class MetricsWriter:
    """Append metrics records to ``metrics.jsonl`` and TensorBoard.

    Args:
      workdir: the run's folder.
      tensorboard: also write TensorBoard event files (``tensorboardX``).
    """

    def __init__(self, workdir, *, tensorboard: bool = True):
        self.path = Path(workdir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(str(Path(workdir) / "tensorboard"))

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
        """Append ``{"kind": kind, "step": step, **values}``; numbers also go to TensorBoard."""
        rec = {"kind": kind, "step": int(step), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self._tb is not None:
            for name, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(f"{kind}/{name}", v, int(step))

    def flush(self) -> None:
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


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
        self._t0 = time.perf_counter()

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
