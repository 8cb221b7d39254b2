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

The folder holding the idx files is, in order: the ``source_dir`` argument, the environment
variable ``CONVJAX_FASHION_MNIST_DIR``, or ``/usr/share/datasets/fashion-mnist``.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

__all__ = [
    "FASHION_MNIST_CLASS_NAMES",
    "DEBIAN_FASHION_MNIST_DIR",
    "FashionMnistLocal",
    "DatasetNotFoundError",
    "check_fashion_mnist_files",
    "fashion_mnist_source_dir",
    "read_idx",
]

#: Where Debian's ``dataset-fashion-mnist`` package installs the original files.
DEBIAN_FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"

#: Label names in label order, as published with the data set (Xiao et al., 2017).
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# split name -> (images file, labels file, number of examples)
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", 60000),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", 10000),
}


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not where convjax looks; the message says how to get them."""


def fashion_mnist_source_dir(source_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the Fashion-MNIST idx files (argument, env var, or Debian's path)."""
    if source_dir is not None:
        return Path(source_dir)
    return Path(os.environ.get("CONVJAX_FASHION_MNIST_DIR", DEBIAN_FASHION_MNIST_DIR))


def _missing_message(folder: Path, missing: list[str]) -> str:
    return (
        f"Fashion-MNIST files not found: {', '.join(missing)} missing from {folder}. "
        "Install them with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; puts "
        f"them in {DEBIAN_FASHION_MNIST_DIR}), or put the four original idx .gz files "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz) in a folder and set CONVJAX_FASHION_MNIST_DIR to it. "
        "`bash scripts/install.sh` installs the package."
    )


def check_fashion_mnist_files(source_dir: str | os.PathLike | None = None) -> Path:
    """Return the source folder, or raise :class:`DatasetNotFoundError` saying how to get it."""
    folder = fashion_mnist_source_dir(source_dir)
    names = [name for images, labels, _ in _FILES.values() for name in (images, labels)]
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(_missing_message(folder, missing))
    return folder


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read a (optionally gzipped) idx file (the MNIST file format) into a uint8 array.

    The header is two zero bytes, a type byte (0x08 = unsigned byte, the only type the
    (Fashion-)MNIST files use), the number of dimensions, then each dimension as a big-endian
    uint32; the data follows in C order.

    Raises:
      ValueError: naming ``path`` if the header is not an unsigned-byte idx header or the data
        length does not match the dimensions in the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(
            f"path={str(path)!r} is not an unsigned-byte idx file (header {data[:4]!r}); "
            "pass an original (Fashion-)MNIST idx file."
        )
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(
            f"path={str(path)!r} holds {len(data) - header} data bytes but its header says "
            f"shape {shape}; the file is truncated or corrupt, reinstall it."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


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
            for split, (images, labels, count) in _FILES.items()
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
