"""Image-classification data sets as in-memory arrays, loaded through TFDS.

:func:`load_dataset` returns an :class:`ImageDataset`: numpy arrays for the train and test
splits (images ``(N, H, W, C)`` uint8, labels ``(N,)`` int32) plus the class names. The arrays
are small enough for the whole split to live on the device, which is how ``convjax.train``
uses them: batches are gathered and augmented there, never streamed from the host.

Where the data come from:

- ``"fashion_mnist"``: offline, from Debian's ``dataset-fashion-mnist`` files, through the
  :class:`~convjax.data.fashion_mnist_local.FashionMnistLocal` TFDS builder (no TensorFlow).
- any other registered TFDS name (``"mnist"``, ``"cifar10"``, ``"cifar100"``,
  ``"svhn_cropped"``, ...): ``tfds.builder(name)``, ``download_and_prepare`` in the
  ``array_record`` format (needs network the first time), read back with
  ``builder.as_data_source``.

Either way TFDS prepares the data once into ``data_dir``; later loads read the prepared files and
do not rebuild or download. ``data_dir`` is, in order: the argument, the environment variable
``CONVJAX_DATA_DIR``, then TFDS's default (``TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import os
from typing import TYPE_CHECKING

import jax
import numpy as np

from convjax.data.idx_files import DatasetNotFoundError, check_fashion_mnist_files
from convjax.data.preprocess import channel_stats

if TYPE_CHECKING:
    import tensorflow_datasets as tfds

__all__ = [
    "ImageDataset",
    "KNOWN_SHAPES",
    "dataset_shape",
    "load_dataset",
    "default_data_dir",
    "split_validation",
]

#: ``((H, W, C), classes)`` of data sets whose shapes are fixed, so a model can be built (and
#: its config checked) before the data are loaded.
KNOWN_SHAPES = {
    "fashion_mnist": ((28, 28, 1), 10),
    "mnist": ((28, 28, 1), 10),
    "cifar10": ((32, 32, 3), 10),
    "cifar100": ((32, 32, 3), 100),
    "svhn_cropped": ((32, 32, 3), 10),
}


def dataset_shape(name: str) -> tuple[tuple[int, int, int], int] | None:
    """``((H, W, C), num_classes)`` of a data set in :data:`KNOWN_SHAPES`, else None."""
    return KNOWN_SHAPES.get(name)


# Names served by the offline builder instead of TFDS's downloading one.
_LOCAL_FASHION_MNIST_NAMES = ("fashion_mnist", "fashion_mnist_local")

# Examples read from a data source per call: bounds the list of per-example dicts in memory.
_READ_CHUNK = 10000


def _check_images_labels(images, labels, split: str) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(
            f"{split}_images must be a numpy uint8 array of shape (N, H, W, C); got "
            f"{type(images).__name__} with shape {getattr(images, 'shape', None)} and dtype "
            f"{getattr(images, 'dtype', None)}. Convert with np.asarray(x, np.uint8)."
        )
    if not isinstance(labels, np.ndarray) or labels.ndim != 1 or labels.dtype != np.int32:
        raise ValueError(
            f"{split}_labels must be a numpy int32 array of shape (N,); got "
            f"{type(labels).__name__} with shape {getattr(labels, 'shape', None)} and dtype "
            f"{getattr(labels, 'dtype', None)}. Convert with np.asarray(y, np.int32)."
        )
    if len(images) != len(labels):
        raise ValueError(
            f"{split}_images has {len(images)} examples but {split}_labels has {len(labels)}; "
            "pass one label per image."
        )


# eq=False: equality/hash by identity (element-wise array comparison has no single truth
# value), which also lets functools.cached_property store the channel statistics.
@dataclasses.dataclass(frozen=True, eq=False)
class ImageDataset:
    """An image-classification data set held as numpy arrays.

    Attributes:
      train_images: ``(N_train, H, W, C)`` uint8.
      train_labels: ``(N_train,)`` int32 in ``[0, num_classes)``.
      test_images: ``(N_test, H, W, C)`` uint8.
      test_labels: ``(N_test,)`` int32.
      num_classes: number of classes.
      class_names: ``num_classes`` names, in label order.
      name: the data set's name (``"fashion_mnist"``, ``"cifar10"``, ...).
      validation_images: ``(N_val, H, W, C)`` uint8 held out of the training split by
        :func:`split_validation`, or ``None``.
      validation_labels: ``(N_val,)`` int32, or ``None``.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]
    name: str
    validation_images: np.ndarray | None = None
    validation_labels: np.ndarray | None = None

    def __post_init__(self):
        _check_images_labels(self.train_images, self.train_labels, "train")
        _check_images_labels(self.test_images, self.test_labels, "test")
        if (self.validation_images is None) != (self.validation_labels is None):
            raise ValueError(
                "validation_images and validation_labels must both be arrays or both be None; "
                f"got {type(self.validation_images).__name__} and "
                f"{type(self.validation_labels).__name__}."
            )
        splits = [("train", self.train_images), ("test", self.test_images)]
        if self.validation_images is not None:
            _check_images_labels(self.validation_images, self.validation_labels, "validation")
            splits.append(("validation", self.validation_images))
        for split, images in splits[1:]:
            if images.shape[1:] != self.train_images.shape[1:]:
                raise ValueError(
                    f"{split}_images has image shape {images.shape[1:]} but train_images has "
                    f"{self.train_images.shape[1:]}; every split needs the same (H, W, C)."
                )
        if (
            isinstance(self.num_classes, bool)
            or not isinstance(self.num_classes, (int, np.integer))
            or self.num_classes < 1
        ):
            raise ValueError(f"num_classes={self.num_classes!r} must be a positive int.")
        for split, labels in (
            ("train", self.train_labels),
            ("test", self.test_labels),
            ("validation", self.validation_labels),
        ):
            if labels is None or not labels.size:
                continue
            lo, hi = int(labels.min()), int(labels.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise ValueError(
                    f"{split}_labels contains {bad}, outside [0, {self.num_classes}) for "
                    f"num_classes={self.num_classes}; labels must be class indices "
                    f"0..{self.num_classes - 1} (fix num_classes or the labels)."
                )
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"class_names has {len(self.class_names)} names but num_classes="
                f"{self.num_classes}; pass one name per class."
            )
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(H, W, C)`` of one image."""
        return tuple(int(d) for d in self.train_images.shape[1:])

    @property
    def has_validation(self) -> bool:
        """Whether :func:`split_validation` has held out a validation split."""
        return self.validation_images is not None

    @functools.cached_property
    def train_mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel ``(mean, std)`` of the training split in ``[0, 1]`` units, float32 ``(C,)``.

        Computed once per data set object (cached) by :func:`convjax.data.channel_stats`; only
        the training split is used, so no statistic leaks from validation or test data. Pass
        the pair to :func:`convjax.data.normalize`.
        """
        return channel_stats(self.train_images)


def _import_tfds():
    """``tensorflow_datasets``, imported when a data set is first loaded.

    It comes with the ``data`` extra (``pip install "convjax[data]"``), not with the core, so a
    missing TFDS is an error that says how to install it.
    """
    try:
        import tensorflow_datasets as tfds
    except ModuleNotFoundError as err:
        if err.name != "tensorflow_datasets":
            raise
        raise ModuleNotFoundError(
            "loading a data set needs tensorflow-datasets, which convjax's core does not "
            'install: pip install "convjax[data]" (or the pinned requirements.txt).',
            name=err.name,
        ) from err
    return tfds


def default_data_dir() -> str:
    """Where TFDS data sets are prepared: ``$CONVJAX_DATA_DIR``, else TFDS's default.

    TFDS's default is ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``.
    """
    env = os.environ.get("CONVJAX_DATA_DIR")
    if env:
        return os.path.expanduser(env)
    tfds = _import_tfds()  # lazily, as in load_dataset
    return os.path.expanduser(tfds.core.constants.DATA_DIR)


def _get_items(source, keys: range) -> list:
    """``source[k] for k in keys``, batched: ``__getitems__`` reads 60000 Fashion-MNIST records
    in ~1.4 s against ~10 s one by one (measured here)."""
    try:
        return source.__getitems__(list(keys))
    except TypeError:
        # tfds.testing.mock_data's source (TFDS 4.9.10) has a __getitems__ with a broken
        # signature; reading one by one gives the same examples.
        return [source[k] for k in keys]


def _read_split(builder: tfds.core.DatasetBuilder, split: str, image_key: str, label_key: str):
    """Read one prepared split into (images uint8 (N, H, W, C), labels int32 (N,))."""
    try:
        source = builder.as_data_source(split)
    except NotImplementedError as err:
        raise DatasetNotFoundError(
            f"Data set {builder.name!r} is prepared in {builder.data_dir} in a format without "
            f"random access ({builder.info.file_format}); convjax reads the array_record "
            "format. Prepare it again into another data_dir (load_dataset(..., data_dir=...)) "
            "or delete that folder."
        ) from err
    n = len(source)
    images, labels = [], []
    for start in range(0, n, _READ_CHUNK):
        examples = _get_items(source, range(start, min(start + _READ_CHUNK, n)))
        images.append(np.stack([np.asarray(e[image_key], dtype=np.uint8) for e in examples]))
        labels.append(np.asarray([e[label_key] for e in examples], dtype=np.int32))
    if n == 0:
        raise DatasetNotFoundError(
            f"Split {split!r} of {builder.name!r} in {builder.data_dir} holds no examples; "
            "delete that folder so it is prepared again."
        )
    images, labels = np.concatenate(images), np.concatenate(labels)
    if images.ndim == 3:  # a Tensor feature without a channel axis: add C = 1
        images = images[..., None]
    # The arrays may be shared by several users of one ImageDataset: make mutation an error.
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def _image_shape(builder, image_key: str) -> tuple[int, ...]:
    return tuple(builder.info.features[image_key].shape)


def _to_image_dataset(builder: tfds.core.DatasetBuilder, name: str) -> ImageDataset:
    info = builder.info
    image_key, label_key = info.supervised_keys or ("image", "label")
    features = info.features
    if image_key not in features or label_key not in features:
        raise ValueError(
            f"name={name!r}: convjax loads image-classification data sets with "
            f"'{image_key}' and '{label_key}' features; this one has {list(features.keys())}."
        )
    shape = _image_shape(builder, image_key)
    dtype = np.dtype(getattr(features[image_key], "np_dtype", np.uint8))
    if dtype != np.uint8:
        raise ValueError(
            f"name={name!r} stores '{image_key}' as {dtype}; convjax holds raw images as uint8 "
            "(normalize() scales them), so pick a data set with uint8 images."
        )
    if any(d is None for d in shape):
        raise ValueError(
            f"name={name!r} has images of varying size {shape}; convjax holds a split as one "
            "(N, H, W, C) array, so pick a data set with a fixed image size (e.g. cifar10, "
            "svhn_cropped, mnist)."
        )
    label_feature = features[label_key]
    num_classes = int(label_feature.num_classes)
    names = getattr(label_feature, "names", None) or [str(i) for i in range(num_classes)]
    missing = [s for s in ("train", "test") if s not in info.splits]
    # An empty split list means split metadata is unavailable (tfds.testing.mock_data): the
    # reads below then find out.
    if info.splits and missing:
        raise ValueError(
            f"name={name!r} has splits {list(info.splits.keys())}; convjax needs 'train' and "
            "'test' splits."
        )
    train_images, train_labels = _read_split(builder, "train", image_key, label_key)
    test_images, test_labels = _read_split(builder, "test", image_key, label_key)
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        num_classes=num_classes,
        class_names=tuple(names),
        name=name,
    )


@contextlib.contextmanager
def _build_lock(data_dir: str, name: str):
    """Exclusive lock per (data_dir, data set) across processes while TFDS prepares it.

    TFDS writes into a temporary folder and renames it at the end; two processes preparing
    the same data set at once (two trainers, two test workers) made the second rename fail
    with FileExistsError (seen here). With the lock the second waits and then reads.
    """
    if "://" in data_dir:  # remote file systems (gs://...): no local lock file possible
        yield
        return
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(data_dir, f".{name}.convjax-lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _prepared_builder(make, data_dir: str, prepare):
    """``make()`` a builder; if its data are not prepared yet, ``prepare`` it under the lock."""
    builder = make()
    if builder.is_prepared():
        return builder
    with _build_lock(data_dir, builder.name):
        # Another process may have finished while we waited: a new builder reads its files.
        builder = make()
        if not builder.is_prepared():
            prepare(builder)
    return builder


def load_dataset(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    source_dir: str | os.PathLike | None = None,
) -> ImageDataset:
    """Load an image-classification data set's train and test splits into numpy arrays.

    Args:
      name: ``"fashion_mnist"`` (offline, from Debian's ``dataset-fashion-mnist`` files) or
        any TFDS image-classification name with fixed-size images and ``train``/``test``
        splits (``"mnist"``, ``"cifar10"``, ``"cifar100"``, ``"svhn_cropped"``, ...; these
        download on first use and need network then).
      data_dir: where TFDS prepares and caches the data set; default
        :func:`default_data_dir` (``$CONVJAX_DATA_DIR`` or ``~/tensorflow_datasets``).
      source_dir: Fashion-MNIST only: the folder with the original idx ``.gz`` files; default
        ``$CONVJAX_FASHION_MNIST_DIR`` or ``/usr/share/datasets/fashion-mnist``. Read only
        when the data set is not yet prepared in ``data_dir``.

    Returns:
      An :class:`ImageDataset` (images ``(N, H, W, C)`` uint8, labels ``(N,)`` int32; the
      arrays are read-only).

    Raises:
      DatasetNotFoundError: (a ``FileNotFoundError``) when the data are neither prepared in
        ``data_dir`` nor obtainable: the message says how to get them (install
        ``dataset-fashion-mnist``; network access for TFDS downloads).
      ValueError: for a ``name`` TFDS does not know, or a data set convjax cannot hold as
        arrays.

    Example::

        ds = load_dataset("fashion_mnist")
        ds.train_images.shape  # (60000, 28, 28, 1)
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} must be a non-empty data set name such as 'cifar10'.")
    data_dir = os.fspath(data_dir) if data_dir is not None else default_data_dir()
    data_dir = os.path.expanduser(data_dir)
    if os.path.exists(data_dir) and not os.path.isdir(data_dir):
        raise ValueError(
            f"data_dir={data_dir!r} is a file, not a folder; pass a folder where TFDS may "
            "prepare data sets (it is created if missing), e.g. ~/tensorflow_datasets."
        )

    # TFDS is imported here, when data are loaded, so that importing convjax.data (and
    # convjax.train, home of the population and sweep code) needs no TFDS: about 0.5 s
    # less per process, and populations run on machines without TFDS (a lent GPU image).
    tfds = _import_tfds()

    from convjax.data.fashion_mnist_local import FashionMnistLocal

    if name in _LOCAL_FASHION_MNIST_NAMES:

        def prepare(builder):
            check_fashion_mnist_files(source_dir)  # the clear error before TFDS starts
            builder.download_and_prepare(file_format="array_record")

        builder = _prepared_builder(
            lambda: FashionMnistLocal(data_dir=data_dir, source_dir=source_dir), data_dir, prepare
        )
        return _to_image_dataset(builder, "fashion_mnist")

    if source_dir is not None:
        raise ValueError(
            f"source_dir={os.fspath(source_dir)!r} is only used for 'fashion_mnist'; TFDS "
            f"downloads {name!r} itself. Drop source_dir."
        )

    def make():
        try:
            return tfds.builder(name, data_dir=data_dir, file_format="array_record")
        except tfds.core.registered.DatasetNotFoundError as err:
            raise ValueError(
                f"name={name!r} is not a TFDS data set known here; use 'fashion_mnist' "
                "(offline) or a TFDS image-classification name such as 'mnist', 'cifar10', "
                "'cifar100', 'svhn_cropped' (see tfds.list_builders())."
            ) from err

    def prepare(builder):
        try:
            builder.download_and_prepare(file_format="array_record")
        except Exception as err:  # network errors come in many types; all mean "not here"
            raise DatasetNotFoundError(
                f"Data set {name!r} is not prepared in {data_dir} and TFDS could not download "
                f"and prepare it ({type(err).__name__}: {err}). Run once with network access "
                "(load_dataset downloads it into data_dir), or copy a prepared "
                f"array_record copy of {name!r} into {data_dir}. Offline, use "
                "'fashion_mnist' (apt-get install dataset-fashion-mnist)."
            ) from err

    return _to_image_dataset(_prepared_builder(make, data_dir, prepare), name)


def split_validation(ds: ImageDataset, num_validation: int, *, seed: int) -> ImageDataset:
    """Hold out ``num_validation`` training examples as a validation split, per class.

    The held-out examples are drawn at random (``jax.random.key(seed)``) in the same class
    proportions as the training split (largest-remainder rounding), so a balanced training
    split gives a balanced validation split. The test split is untouched. Same seed, same split.

    Args:
      ds: a data set without a validation split.
      num_validation: examples to hold out, ``1 <= num_validation < len(ds.train_labels)``.
      seed: integer seed of the random choice.

    Returns:
      A new :class:`ImageDataset` whose ``train_*`` arrays hold the remaining examples (in
      their original order) and whose ``validation_*`` arrays hold the held-out ones (in
      random order).

    Raises:
      ValueError: naming ``num_validation``, ``seed`` or ``ds`` when out of range.
    """
    if not isinstance(ds, ImageDataset):
        raise ValueError(f"ds={type(ds).__name__} must be an ImageDataset from load_dataset.")
    if ds.has_validation:
        raise ValueError(
            f"ds already has a validation split ({len(ds.validation_labels)} examples); split "
            "the data set returned by load_dataset instead."
        )
    n = len(ds.train_labels)
    if isinstance(num_validation, bool) or not isinstance(num_validation, (int, np.integer)):
        raise ValueError(f"num_validation={num_validation!r} must be an int.")
    if not 1 <= num_validation < n:
        raise ValueError(
            f"num_validation={num_validation} must be between 1 and {n - 1} (the training "
            f"split has {n} examples)."
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed={seed!r} must be an int.")
    labels = np.asarray(ds.train_labels)
    order = np.asarray(jax.random.permutation(jax.random.key(int(seed)), n))
    counts = np.bincount(labels, minlength=ds.num_classes).astype(np.int64)
    exact = num_validation * counts / n
    quota = np.floor(exact).astype(np.int64)
    # Largest remainder; ties to the lower class index (stable sort) so the split is exact.
    leftover = int(num_validation - quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:leftover]] += 1
    shuffled_labels = labels[order]
    taken = np.zeros(n, dtype=bool)  # position in `order` held out
    for k in np.flatnonzero(quota):
        taken[np.flatnonzero(shuffled_labels == k)[: quota[k]]] = True
    val_idx = order[taken]
    keep = np.ones(n, dtype=bool)
    keep[val_idx] = False
    return dataclasses.replace(
        ds,
        train_images=ds.train_images[keep],
        train_labels=ds.train_labels[keep],
        validation_images=ds.train_images[val_idx],
        validation_labels=ds.train_labels[val_idx],
    )
