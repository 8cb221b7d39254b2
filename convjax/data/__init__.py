"""convjax.data: image data sets as arrays (TFDS, offline Fashion-MNIST), normalisation,
on-device augmentation and batching.

Public API:

- :func:`load_dataset`, :class:`ImageDataset`, :func:`split_validation`,
  :func:`default_data_dir`, :class:`DatasetNotFoundError`, :class:`FashionMnistLocal`
  (the TFDS builder ``fashion_mnist_local`` over Debian's ``dataset-fashion-mnist`` files).
- :func:`channel_stats`, :func:`normalize`.
"""

from convjax.data.datasets import ImageDataset, default_data_dir, load_dataset, split_validation
from convjax.data.fashion_mnist_local import (
    FASHION_MNIST_CLASS_NAMES,
    DatasetNotFoundError,
    FashionMnistLocal,
    read_idx,
)
from convjax.data.preprocess import channel_stats, normalize
