"""Run a hyperparameter sweep: each group of trials trains as one population.

    .venv/bin/python experiments/sweep.py --config=configs/sweeps/lr_smoothing.py --workdir=DIR

The config file's docstring gives the exact command and expected time. Writes
``DIR/results.md`` and ``results.csv`` (sorted by validation accuracy), ``best_config.py``
(train it alone with ``experiments/train.py --config=DIR/best_config.py``), one
``metric_vs_<field>.png`` per swept field and ``trials/<i>/`` per trial; rerunning the command
reads finished trials back and resumes unfinished populations from their checkpoints.
``--mesh`` (the default; ``--nomesh`` keeps one device) shards each population over every
device -- on a CPU one device per core (``convjax.xla_env``) -- and, after ``--coordinator``/
``--num_processes``/``--process_id``, over several processes:

    # TPU pod slice: the same command on every host (JAX finds the coordinator itself)
    python experiments/sweep.py --config=configs/sweeps/lr_smoothing.py --workdir=DIR \\
        --mesh --distributed
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags

from convjax import xla_env

xla_env.use_cpu_cores()  # before JAX starts: one CPU device per core (see experiments/train.py)

from convjax.train import cli

cli.define_flags("Sweep config file (configs/sweeps/<name>.py).")
_MESH = flags.DEFINE_bool("mesh", True, "Shard the members and batch axes over all devices.")
_DIST = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize first (multi-host / multi-process)."
)
_COORD = flags.DEFINE_string("coordinator", None, "host:port of process 0 (None: auto-detect).")
_NPROC = flags.DEFINE_integer("num_processes", None, "Number of processes (None: auto-detect).")
_PID = flags.DEFINE_integer("process_id", None, "This process's index (None: auto-detect).")


def sweep(config, workdir):
    from convjax.train import distributed, run_sweep

    if _DIST.value or _COORD.value:
        distributed.initialize(_COORD.value, _NPROC.value, _PID.value)
    main_proc = distributed.is_main_process()
    out = run_sweep(
        config,
        workdir,
        mesh="auto" if _MESH.value else None,
        log=print if main_proc else (lambda s: None),
        write_files=main_proc,
    )
    if main_proc:
        print(open(out["files"]["results.md"]).read())
        for name, path in out["files"].items():
            print(f"wrote {name}: {path}")
    distributed.shutdown()


if __name__ == "__main__":
    cli.main(sweep)
