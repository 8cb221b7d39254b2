r"""Time to 93% Fashion-MNIST test accuracy: convjax vs the same recipe in PyTorch (CPU).

Runs ``configs/default.py`` with ``convjax.train.train_and_evaluate`` and then the same recipe
written in PyTorch (``benchmarks/torch_reference.py``), one after the other in one process on
the same machine, evaluating the test split after every epoch. Time to accuracy = wall time
from the start of training (model building and compilation included; convjax's also includes
reading the data set from its TFDS cache) to the end of the first epoch whose test accuracy
reaches the threshold.

Usage::

    .venv/bin/python benchmarks/bench_time_to_accuracy.py --write     # full: ~2 x 5-10 min
    .venv/bin/python benchmarks/bench_time_to_accuracy.py --smoke     # seconds-long check

``--write`` writes ``benchmarks/results/time_to_accuracy.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
sys.path.insert(0, ROOT)

from convjax import xla_env

# As experiments/train.py does: one XLA CPU device per core, so train_and_evaluate splits each
# batch over the cores (config.data_parallel). CONVJAX_CPU_DEVICES=1 measures one device.
xla_env.use_cpu_cores()


def load_config(path):
    from convjax.train import load_config as load

    return load(path)


def cpu_load() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def time_to(records, threshold):
    """Elapsed seconds at the first record with ``test_accuracy >= threshold``, else None."""
    for r in records:
        if r["test_accuracy"] is not None and r["test_accuracy"] >= threshold:
            return r["elapsed_s"]
    return None


def run(config, threshold, workdir):
    import torch_reference

    from convjax import data as cdata
    from convjax.train import train_and_evaluate

    config.progress = False
    config.eval_test_every_epoch = True
    print(f"convjax: {config.num_epochs} epochs ({cpu_load()})", flush=True)
    res = train_and_evaluate(config, workdir)
    h = res["history"]
    jax_records = [
        {"epoch": i + 1, "test_accuracy": h["test_accuracy"][i], "elapsed_s": h["elapsed_s"][i]}
        for i in range(len(h["test_accuracy"]))
    ]
    cfg = config
    ds = cdata.load_dataset(cfg.dataset)
    tr_x, tr_y = ds.train_images, ds.train_labels
    te_x, te_y = ds.test_images, ds.test_labels
    if cfg.get("smoke", False) or cfg.get("train_subset", 0):
        n = cfg.get("train_subset", 0) or 512
        tr_x, tr_y = tr_x[:n], tr_y[:n]
    if cfg.get("smoke", False) or cfg.get("test_subset", 0):
        n = cfg.get("test_subset", 0) or 256
        te_x, te_y = te_x[:n], te_y[:n]
    print(f"pytorch: {cfg.num_epochs} epochs ({cpu_load()})", flush=True)
    torch_records = torch_reference.train(tr_x, tr_y, te_x, te_y, cfg)
    return {
        "convjax": {
            "records": jax_records,
            "time_to": time_to(jax_records, threshold),
            "images_per_s": res["images_per_s"],
            "devices": res["data_parallel_devices"],
        },
        "pytorch": {"records": torch_records, "time_to": time_to(torch_records, threshold)},
    }


def to_markdown(out, threshold, header) -> str:
    lines = [header, ""]
    lines.append(f"| framework | time to {100 * threshold:.1f}% (s) | test accuracy per epoch "
                 f"(elapsed s) |")  # fmt: skip
    lines.append("|---|---|---|")
    for name in ("convjax", "pytorch"):
        r = out[name]
        per = ", ".join(
            f"{100 * x['test_accuracy']:.2f}% ({x['elapsed_s']:.0f})" for x in r["records"]
        )
        t = f"{r['time_to']:.1f}" if r["time_to"] is not None else "not reached"
        lines.append(f"| {name} | {t} | {per} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default=os.path.join(ROOT, "configs", "default.py"))
    p.add_argument("--threshold", type=float, default=0.93)
    p.add_argument(
        "--smoke", action="store_true", help="smoke subsets, narrow net, 2 epochs, threshold 0.5"
    )
    p.add_argument("--write", action="store_true", help="write results/time_to_accuracy.md")
    a = p.parse_args(argv)
    cfg = load_config(a.config)
    if a.smoke:
        from convjax.train import prepare

        cfg.smoke = True
        cfg = prepare(cfg).unlock()
        cfg.smoke = False
        cfg.model.widths, cfg.model.fc_widths = (8, 16), (32,)
        a.threshold = min(a.threshold, 0.5)
    load_before = cpu_load()
    with tempfile.TemporaryDirectory() as wd:
        out = run(cfg, a.threshold, wd)
    import jax
    import torch

    header = (
        f"# Time to {100 * a.threshold:.1f}% Fashion-MNIST test accuracy: convjax vs PyTorch\n\n"
        f"Command: `.venv/bin/python benchmarks/bench_time_to_accuracy.py "
        f"{' '.join(sys.argv[1:])}`  \n"
        f"Recipe: `{os.path.relpath(a.config, ROOT)}` ({cfg.num_epochs} epochs, batch "
        f"{cfg.batch_size}); jax {jax.__version__} ({jax.default_backend()}, "
        f"{out['convjax']['devices']} device(s) per batch), torch "
        f"{torch.__version__} (CPU, {torch.get_num_threads()} threads); {os.cpu_count()} CPUs; "
        f"{load_before} before, {cpu_load()} after (shared machine: times are pessimistic)."
    )
    md = to_markdown(out, a.threshold, header)
    print(md)
    if a.write:
        path = os.path.join(ROOT, "benchmarks", "results", "time_to_accuracy.md")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(md)
    return out


if __name__ == "__main__":
    main()
