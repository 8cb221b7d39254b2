"""Offline Fashion-MNIST: a TFDS builder over Debian's ``dataset-fashion-mnist`` files.

TFDS's own ``fashion_mnist`` builder cannot be used offline here: it downloads, and the gzip
files Debian ships (``apt-get install dataset-fashion-mnist``, which puts them in
``/usr/share/datasets/fashion-mnist/``) have other bytes than the ones TFDS registered, so it
rejects them with ``NonMatchingChecksumError``. The decoded arrays are the real data.

:class:`FashionMnistLocal` (registered in TFDS as ``fashion_mnist_local``) reads those idx files
directly. Its image feature is ``tfds.features.Tensor((28, 28, 1), uint8)`` rather than
``tfds.features.Image`` because encoding images needs TensorFlow, which convjax does not require;
the records are written as ``array_record`` so ``builder.as_data_source(split)`` reads them back
without TensorFlow too. TFDS writes the prepared dataset once into its ``data_dir``; later
builders with the same ``data_dir`` find it there and do not rebuild.

The folder holding the idx files: :func:`convjax.data.idx_files.fashion_mnist_source_dir`.
This module imports TFDS; ``convjax.data`` imports it only when a data set is loaded (or
``convjax.data.FashionMnistLocal`` is first used).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from convjax.data.idx_files import (
    FASHION_MNIST_CLASS_NAMES,
    SPLIT_FILES,
    check_fashion_mnist_files,
    fashion_mnist_source_dir,
    read_idx,
)

__all__ = ["FashionMnistLocal"]


class FashionMnistLocal(tfds.core.GeneratorBasedBuilder):
    """Fashion-MNIST from local idx files (Debian's ``dataset-fashion-mnist``), no download.

    Features: ``image`` ``Tensor((28, 28, 1), uint8)``, ``label`` ``ClassLabel`` (10 names).
    Splits: ``train`` (60000 examples, 6000 per class), ``test`` (10000, 1000 per class).

    Example::

        builder = FashionMnistLocal(data_dir="~/tensorflow_datasets")
        builder.download_and_prepare(file_format="array_record")  # no-op once prepared
        train = builder.as_data_source("train")  # train[i] == {"image": ..., "label": ...}
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Original Fashion-MNIST idx files, Tensor uint8 image feature."}

    def __init__(self, *, source_dir: str | os.PathLike | None = None, **kwargs):
        # Resolved at construction so a later change of the env var cannot mix sources.
        self._source_dir = fashion_mnist_source_dir(source_dir)
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 28x28 grayscale images of "
                "10 kinds of clothing, read from the original idx files."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(FASHION_MNIST_CLASS_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://github.com/zalandoresearch/fashion-mnist",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # nothing to download: the files are local
        folder = check_fashion_mnist_files(self._source_dir)
        return {
            split: self._generate_examples(folder / images, folder / labels, count)
            for split, (images, labels, count) in SPLIT_FILES.items()
        }

    def _generate_examples(self, images_path: Path, labels_path: Path, count: int):
        images = read_idx(images_path)
        labels = read_idx(labels_path)
        if images.shape != (count, 28, 28) or labels.shape != (count,):
            raise ValueError(
                f"{images_path.name} / {labels_path.name} hold shapes {images.shape} / "
                f"{labels.shape}, expected ({count}, 28, 28) / ({count},); the files are not "
                "the original Fashion-MNIST files, reinstall dataset-fashion-mnist."
            )
        for i in range(count):
            yield i, {"image": images[i][:, :, None], "label": int(labels[i])}
