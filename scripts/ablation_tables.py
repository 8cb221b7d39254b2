r"""Rebuild ablation tables and accuracy figures from recorded per-seed results; no training.

Command (what results/ablations/ records)::

    PYTHONPATH=. .venv/bin/python scripts/ablation_tables.py results/ablations/pooling \
        results/ablations/dilation results/ablations/pooling_quick \
        results/ablations/dilation_quick_1ep

Each argument is a folder holding an ablation's ``runs.csv`` (or that file itself). Next to
it, ``convjax.train.ablation_tables.tables_from_runs`` writes ``results.md``, ``results.csv``,
``accuracy.png`` and ``differences.png``: every variant against the baseline (``--baseline``,
default the first variant in the file), paired by seed. ``runs.csv`` and
``learning_curves.png`` are left as they are. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convjax.train.ablation_tables import tables_from_runs  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", help="folders holding runs.csv, or runs.csv files")
    parser.add_argument("--baseline", default=None, help="variant to compare with")
    parser.add_argument("--title", default=None, help="table heading (default: folder name)")
    args = parser.parse_args(argv)
    for runs in args.runs:
        out = tables_from_runs(runs, baseline=args.baseline, title=args.title)
        print(Path(out["files"]["results.md"]).read_text())
        for name, path in out["files"].items():
            print(f"wrote {name}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
