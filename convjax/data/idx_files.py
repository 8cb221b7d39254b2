"""Fashion-MNIST's original idx files: where they are, checking them, reading them (no TFDS).

The folder holding the idx files is, in order: the ``source_dir`` argument, the environment
variable ``CONVJAX_FASHION_MNIST_DIR``, or ``/usr/share/datasets/fashion-mnist`` (where Debian's
``dataset-fashion-mnist`` package puts them). Kept apart from the TFDS builder
(:mod:`convjax.data.fashion_mnist_local`) so that importing ``convjax.data`` -- and with it
``convjax.train`` -- does not import TFDS: it is imported when a data set is first loaded.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

__all__ = [
    "FASHION_MNIST_CLASS_NAMES",
    "DEBIAN_FASHION_MNIST_DIR",
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
SPLIT_FILES = {
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
    if folder.exists() and not folder.is_dir():
        raise ValueError(
            f"source_dir={str(folder)!r} is a file, not a folder; pass the folder that holds "
            "the four Fashion-MNIST idx .gz files."
        )
    names = [name for images, labels, _ in SPLIT_FILES.values() for name in (images, labels)]
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
    if path.is_dir():
        raise ValueError(
            f"path={str(path)!r} is a folder; pass one idx file (e.g. "
            f"train-images-idx3-ubyte.gz inside it)."
        )
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(
            f"path={str(path)!r} is not a readable gzip file ({type(err).__name__}: {err}); "
            "the file is truncated or corrupt, reinstall it (apt-get install --reinstall "
            "dataset-fashion-mnist) or download the original file again."
        ) from err
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
