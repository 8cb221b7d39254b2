"""The pictures a finished member writes into its folder.

- ``learning_curves.png``: loss and accuracy with a point per logged training interval and per
  evaluation (:func:`convjax.train.report.learning_curves_figure`);
- ``gradient_health.png`` when ``grad_health_every_steps`` logged norms: per-layer gradient
  norm and update/parameter ratio over training;
- when the member's final state is at hand: ``filters.png``, ``activation_maps.png`` and
  ``explanations.png`` (saliency, SmoothGrad and Grad-CAM of eight test images), drawn by
  :func:`convjax.inspect.figures.save_model_figures` for any model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np

from convjax import data as cdata
from convjax.train import report
from convjax.train.state import merge_model

#: Test images the explanation figure shows.
EXPLAINED_IMAGES = 8


def read_log(path: Path, kind: str) -> list[dict[str, Any]]:
    """The records of ``kind`` in a ``metrics.jsonl`` (none if the file does not exist)."""
    if not path.exists():
        return []
    recs = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return [r for r in recs if r.get("kind") == kind]


def gradient_health_figure(records: list[dict[str, Any]], steps_per_epoch: int):
    """Per-layer gradient norm and update/parameter ratio against epochs (log scales)."""
    fig, ((ax_grad, ax_ratio),) = report.figure(10, 3.8, ncols=2)
    x = np.array([r["step"] for r in records]) / steps_per_epoch
    layers = list(records[0]["grad_norm"])
    for i, layer in enumerate(layers):
        style = dict(color=f"C{i % 10}", linestyle="-" if i < 10 else "--", label=layer)
        ax_grad.plot(x, [r["grad_norm"][layer] for r in records], **style)
        ax_ratio.plot(x, [r["update_to_param"][layer] for r in records], **style)
    for ax, label in ((ax_grad, "gradient norm"), (ax_ratio, "|update| / |parameters|")):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
    ax_ratio.legend(fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def member_figures(run, member: int, state, results: dict[str, Any]) -> None:
    """Write one member's pictures (module docstring); ``state`` None skips the model ones."""
    folder = Path(run.member_dirs[member])
    spe = run.steps_per_epoch
    points = [
        (r["step"] / spe, r["loss"], r["accuracy"])
        for r in read_log(folder / "metrics.jsonl", "train_log")
    ]
    fig = report.learning_curves_figure(
        results["history"],
        train_points=points,
        label_smoothing=float(run.cfgs[member].label_smoothing),
    )
    report.save_figure(fig, folder / "learning_curves.png")
    health = read_log(folder / "metrics.jsonl", "health")
    if health:
        report.save_figure(gradient_health_figure(health, spe), folder / "gradient_health.png")
    if state is None:
        return
    from convjax.inspect.figures import save_model_figures

    params = state.params if state.ema_params is None else state.ema_params
    model = merge_model(run.model_def, params, state.batch_stats)
    ds = run.data.datasets[member]
    mean, std = ds.train_mean_std
    images = np.asarray(cdata.normalize(ds.test_images[:EXPLAINED_IMAGES], mean, std))
    save_model_figures(
        model,
        images,
        ds.test_labels[:EXPLAINED_IMAGES],
        ds.class_names,
        folder,
        smoothgrad_key=jax.random.key(int(run.cfgs[member].seed)),
    )
