"""The data of a run of N >= 1 members: loaded once per distinct split, on the device once.

Members that share a seed (or hold out no validation split) share one training split, which
lives on the device once; members whose validation splits differ (other seeds with
``validation_size > 0``) each get their own training and validation arrays, stacked on a
leading member axis. The test split is always shared. Batches are gathered from these device
arrays inside the jitted steps (``convjax.train.loops``), never streamed from the host.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from convjax import data as cdata

__all__ = ["PopulationData", "load_data", "load_population_data"]


def load_data(config) -> cdata.ImageDataset:
    """The data set of ``config.dataset`` with the config's subsets and validation split."""
    ds = cdata.load_dataset(config.dataset)
    repl = {}
    if config.train_subset:
        repl["train_images"] = ds.train_images[: config.train_subset]
        repl["train_labels"] = ds.train_labels[: config.train_subset]
    if config.test_subset:
        repl["test_images"] = ds.test_images[: config.test_subset]
        repl["test_labels"] = ds.test_labels[: config.test_subset]
    if repl:
        ds = dataclasses.replace(ds, **repl)
    if config.validation_size:
        ds = cdata.split_validation(ds, config.validation_size, seed=config.seed)
    return ds


@dataclasses.dataclass
class PopulationData:
    """Every member's data set (the same object where shared) and the shared test split.

    Attributes:
      datasets: one :class:`convjax.data.ImageDataset` per member.
      shared_train: whether all members train on one split (one device copy).
      test_images, test_labels: ``(N_test, H, W, C)`` uint8 and ``(N_test,)`` on the device.
    """

    datasets: list[cdata.ImageDataset]
    shared_train: bool
    test_images: Any
    test_labels: Any

    @property
    def first(self) -> cdata.ImageDataset:
        return self.datasets[0]

    @property
    def n_train(self) -> int:
        return int(self.first.train_labels.shape[0])

    @property
    def has_validation(self) -> bool:
        return self.first.has_validation

    def stats(self, member: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Member ``member``'s per-channel ``(mean, std)`` as hashable tuples."""
        mean, std = self.datasets[member].train_mean_std
        return (
            tuple(np.asarray(mean, np.float32).reshape(-1).tolist()),
            tuple(np.asarray(std, np.float32).reshape(-1).tolist()),
        )

    def train_arrays(self, live: Sequence[int], place: Callable) -> tuple[Any, Any]:
        """``(images, labels)`` for the live members: one shared copy, or ``(N_live, ...)``."""
        if self.shared_train:
            ds = self.first
            return place(jnp.asarray(ds.train_images)), place(jnp.asarray(ds.train_labels))
        images = np.stack([self.datasets[m].train_images for m in live])
        labels = np.stack([self.datasets[m].train_labels for m in live])
        return place(jnp.asarray(images)), place(jnp.asarray(labels))

    def validation_arrays(self, live: Sequence[int], place: Callable) -> tuple[Any, Any]:
        """``(N_live, N_val, H, W, C)`` images and ``(N_live, N_val)`` labels."""
        images = np.stack([self.datasets[m].validation_images for m in live])
        labels = np.stack([self.datasets[m].validation_labels for m in live])
        return place(jnp.asarray(images)), place(jnp.asarray(labels))


def load_population_data(configs: Sequence[Any], place: Callable) -> PopulationData:
    """Load the data of N prepared configs (one load per distinct seed; the validation split
    depends on the seed) and put the test split on the device with ``place``."""
    by_seed: dict[int, cdata.ImageDataset] = {}
    for c in configs:
        if c.seed not in by_seed:
            by_seed[c.seed] = load_data(c)
    datasets = [by_seed[c.seed] for c in configs]
    shared = len(by_seed) == 1 or not configs[0].validation_size
    if shared:
        datasets = [datasets[0]] * len(configs)
    first = datasets[0]
    return PopulationData(
        datasets=datasets,
        shared_train=shared,
        test_images=place(jnp.asarray(first.test_images)),
        test_labels=place(jnp.asarray(first.test_labels)),
    )
