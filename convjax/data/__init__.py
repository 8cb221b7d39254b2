"""convjax.data: image data sets as arrays (TFDS, offline Fashion-MNIST), normalisation,
on-device augmentation and batching.

Public API:

- Data sets: :func:`load_dataset`, :class:`ImageDataset`, :func:`split_validation`,
  :func:`default_data_dir`, :class:`DatasetNotFoundError`, :class:`FashionMnistLocal` (the
  TFDS builder ``fashion_mnist_local`` over Debian's ``dataset-fashion-mnist`` files),
  :func:`read_idx`, :data:`FASHION_MNIST_CLASS_NAMES`.
- Normalisation: :func:`channel_stats`, :func:`normalize`.
- Augmentation (JAX, jit-able, per-example keys): :func:`random_crop`, :func:`random_flip`,
  :func:`random_translate`, :func:`augment`, :data:`PAD_MODES`.
- Batching on the device: :func:`epoch_permutation`, :func:`sequential_batches`,
  :func:`num_batches`.
"""

from convjax.data.augment import PAD_MODES, augment, random_crop, random_flip, random_translate
from convjax.data.batching import epoch_permutation, num_batches, sequential_batches
from convjax.data.datasets import (
    KNOWN_SHAPES,
    ImageDataset,
    dataset_shape,
    default_data_dir,
    load_dataset,
    split_validation,
)
from convjax.data.idx_files import FASHION_MNIST_CLASS_NAMES, DatasetNotFoundError, read_idx
from convjax.data.preprocess import channel_stats, normalize

_LAZY = ("FashionMnistLocal",)


def __getattr__(name: str):
    # FashionMnistLocal subclasses a TFDS builder, so it is imported on first use only:
    # importing convjax.data must not import TFDS (see convjax.data.idx_files).
    if name == "FashionMnistLocal":
        from convjax.data.fashion_mnist_local import FashionMnistLocal

        return FashionMnistLocal
    raise AttributeError(f"module 'convjax.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir() (tab completion, the API reference's completeness test) lists the lazy name too.
    return sorted(list(globals()) + list(_LAZY))
