"""Data sets (convjax.data.datasets, fashion_mnist_local) and normalisation (preprocess).

The Fashion-MNIST tests read the REAL files of Debian's ``dataset-fashion-mnist`` package
(``scripts/install.sh`` installs it), built once per test session into a temporary TFDS
``data_dir``. The generic TFDS path is tested offline with a tiny builder defined here (the
real ``tfds.builder`` -> ``download_and_prepare`` -> ``as_data_source`` path, no network) and
with ``tfds.testing.mock_data`` for real TFDS names (cifar10, mnist, ...).
"""

import dataclasses
import gzip
import importlib.util
import os
import shutil
import subprocess
import sys
import threading

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from convjax.data import (
    FASHION_MNIST_CLASS_NAMES,
    DatasetNotFoundError,
    FashionMnistLocal,
    ImageDataset,
    channel_stats,
    default_data_dir,
    load_dataset,
    normalize,
    read_idx,
    split_validation,
)
from convjax.data import datasets as datasets_module

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
TINY_NAMES = ("ant", "bee", "cat", "dog")


def _tiny_image(i: int) -> np.ndarray:
    # Distinct per index (first pixel holds i), so examples can be matched exactly.
    img = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 7 + i * 13) % 256
    img[0, 0, 0] = i
    return img.astype(np.uint8)


class ConvjaxTinyImages(tfds.core.GeneratorBasedBuilder):
    """24 train + 8 test images of 8x8x3 uint8, labels i % 4: a stand-in for a TFDS download."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=list(TINY_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 24), "test": self._generate_examples(24, 32)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": _tiny_image(i), "label": i % 4}


class ConvjaxOfflineImages(ConvjaxTinyImages):
    """A builder whose download fails as it does without network."""

    def _split_generators(self, dl_manager):
        raise ConnectionError("Failed to resolve 'storage.googleapis.com'")


class ConvjaxNoLabels(ConvjaxTinyImages):
    """Features without image/label keys: not an image-classification data set."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {"x": tfds.features.Tensor(shape=(2,), dtype=np.float32)}
            ),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 2), "test": self._generate_examples(2, 3)}

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"x": np.full((2,), i, np.float32)}


class ConvjaxFloatImages(ConvjaxTinyImages):
    """Images stored as float32: not raw uint8 pixels."""

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Tensor(shape=(8, 8, 3), dtype=np.float32),
                    "label": tfds.features.ClassLabel(names=list(TINY_NAMES)),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _generate_examples(self, start, stop):
        for i in range(start, stop):
            yield i, {"image": _tiny_image(i).astype(np.float32), "label": i % 4}


class ConvjaxTrainOnly(ConvjaxTinyImages):
    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(0, 4)}


def _rows(images, labels):
    """Sorted (image bytes + label) rows: split contents compared as multisets."""
    flat = np.concatenate([images.reshape(len(images), -1), labels[:, None].astype(np.uint8)], 1)
    flat = np.ascontiguousarray(flat)
    return np.sort(flat.view(np.dtype((np.void, flat.shape[1]))).ravel())


# ---------------------------------------------------------------- Fashion-MNIST, real files


@pytest.fixture(scope="session")
def fmnist_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="session")
def fmnist(fmnist_dir):
    return load_dataset("fashion_mnist", data_dir=fmnist_dir)


def test_fashion_mnist_real_files_shapes_and_counts(fmnist):
    ds = fmnist
    assert ds.name == "fashion_mnist"
    assert ds.train_images.shape == (60000, 28, 28, 1) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (10000, 28, 28, 1) and ds.test_images.dtype == np.uint8
    assert ds.train_labels.shape == (60000,) and ds.train_labels.dtype == np.int32
    assert ds.test_labels.dtype == np.int32
    np.testing.assert_array_equal(np.bincount(ds.train_labels), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.test_labels), [1000] * 10)
    assert ds.image_shape == (28, 28, 1)
    assert ds.num_classes == 10 and ds.class_names == FASHION_MNIST_CLASS_NAMES
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert not ds.has_validation
    assert not ds.train_images.flags.writeable  # shared arrays are read-only


def test_fashion_mnist_content_equals_the_idx_files(fmnist):
    # TFDS stores records in its own (deterministic) order: compare each split as a multiset
    # of (image, label) pairs against the raw files decoded with a separate, by-hand parser.
    def raw(prefix, kind, header):
        with gzip.open(os.path.join(DEBIAN_DIR, f"{prefix}-{kind}.gz"), "rb") as f:
            return np.frombuffer(f.read()[header:], np.uint8)

    for split, prefix, n in (("train", "train", 60000), ("test", "t10k", 10000)):
        images = raw(prefix, "images-idx3-ubyte", 16).reshape(n, 28, 28, 1)
        labels = raw(prefix, "labels-idx1-ubyte", 8)
        got_x, got_y = getattr(fmnist, f"{split}_images"), getattr(fmnist, f"{split}_labels")
        np.testing.assert_array_equal(_rows(got_x, got_y), _rows(images, labels))


def test_fashion_mnist_second_load_reads_cache_without_source(fmnist, fmnist_dir, tmp_path):
    # Prepared once: a second load needs neither the source files nor the generator.
    def boom(*args, **kwargs):
        raise AssertionError("rebuilt")

    mp = pytest.MonkeyPatch()
    mp.setattr(FashionMnistLocal, "_split_generators", boom)
    try:
        again = load_dataset("fashion_mnist", data_dir=fmnist_dir, source_dir=tmp_path)
    finally:
        mp.undo()
    np.testing.assert_array_equal(again.train_images, fmnist.train_images)  # same order
    np.testing.assert_array_equal(again.test_labels, fmnist.test_labels)


def test_fashion_mnist_channel_stats_match_published_values(fmnist):
    mean, std = fmnist.train_mean_std
    # Published Fashion-MNIST training statistics (in [0, 1] units): 0.2860, 0.3530.
    np.testing.assert_allclose(mean, [0.2860], atol=5e-5)
    np.testing.assert_allclose(std, [0.3530], atol=5e-5)
    x = fmnist.train_images.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, [x.mean()], rtol=1e-6)
    np.testing.assert_allclose(std, [x.std()], rtol=1e-6)
    assert fmnist.train_mean_std is fmnist.train_mean_std  # cached
    z = np.asarray(normalize(fmnist.train_images[:20000], mean, std))
    assert z.dtype == np.float32
    assert abs(z.mean() - (x[:20000].mean() - mean[0]) / std[0]) < 1e-4


def test_fashion_mnist_split_validation_is_stratified(fmnist):
    split = split_validation(fmnist, 5000, seed=0)
    assert split.train_images.shape == (55000, 28, 28, 1)
    assert split.validation_images.shape == (5000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(split.validation_labels), [500] * 10)
    np.testing.assert_array_equal(np.bincount(split.train_labels), [5500] * 10)
    assert split.test_images is fmnist.test_images
    both = _rows(
        np.concatenate([split.train_images, split.validation_images]),
        np.concatenate([split.train_labels, split.validation_labels]),
    )
    np.testing.assert_array_equal(both, _rows(fmnist.train_images, fmnist.train_labels))


def test_fashion_mnist_missing_files_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"apt-get install dataset-fashion-mnist"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"), source_dir=empty)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    # Only the training files present: the message lists exactly what is missing.
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(DEBIAN_DIR, name), empty / name)
    with pytest.raises(
        DatasetNotFoundError,
        match=r"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz missing from .*empty",
    ):
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"), source_dir=empty)
    assert not (tmp_path / "tfds" / "fashion_mnist_local" / "1.0.0").exists()


def test_fashion_mnist_source_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVJAX_FASHION_MNIST_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetNotFoundError, match=r"missing from .*nowhere.*CONVJAX_FASHION"):
        load_dataset("fashion_mnist", data_dir=str(tmp_path / "tfds"))


def test_read_idx_errors_and_plain_files(tmp_path):
    good = tmp_path / "x.idx"
    good.write_bytes(bytes([0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3]) + bytes(range(6)))
    np.testing.assert_array_equal(read_idx(good), np.arange(6, dtype=np.uint8).reshape(2, 3))
    bad = tmp_path / "bad.idx"
    bad.write_bytes(bytes([0, 0, 0x0D, 1, 0, 0, 0, 1]) + bytes(4))  # float32 type code
    with pytest.raises(ValueError, match=r"path=.*bad.idx.* is not an unsigned-byte idx file"):
        read_idx(bad)
    short = tmp_path / "short.idx.gz"
    with gzip.open(short, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 5]) + bytes(3))
    with pytest.raises(ValueError, match=r"holds 3 data bytes but its header says shape \(5,\)"):
        read_idx(short)


def test_fashion_mnist_wrong_file_shapes(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"):
        shutil.copy(os.path.join(DEBIAN_DIR, name), src / name)
    # Test files replaced by 3 examples: the builder refuses them by shape.
    with gzip.open(src / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28]) + bytes(3 * 784))
    with gzip.open(src / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 3]) + bytes(3))
    builder = FashionMnistLocal(data_dir=str(tmp_path / "tfds"), source_dir=src)
    gen = builder._generate_examples(
        src / "t10k-images-idx3-ubyte.gz", src / "t10k-labels-idx1-ubyte.gz", 10000
    )
    with pytest.raises(ValueError, match=r"hold shapes \(3, 28, 28\) / \(3,\), expected"):
        next(gen)


# ---------------------------------------------------------------- generic TFDS path, offline


def test_generic_tfds_path_with_local_builder(tmp_path, monkeypatch):
    data_dir = str(tmp_path)
    ds = load_dataset("convjax_tiny_images", data_dir=data_dir)
    assert ds.name == "convjax_tiny_images" and ds.class_names == TINY_NAMES
    assert ds.train_images.shape == (24, 8, 8, 3) and ds.test_images.shape == (8, 8, 8, 3)
    assert ds.num_classes == 4 and ds.image_shape == (8, 8, 3)
    want_train = np.stack([_tiny_image(i) for i in range(24)])
    np.testing.assert_array_equal(
        _rows(ds.train_images, ds.train_labels),
        _rows(want_train, np.arange(24) % 4),
    )
    # Each image's first pixel is its index: labels travel with their images.
    np.testing.assert_array_equal(ds.test_labels, ds.test_images[:, 0, 0, 0] % 4)
    assert os.path.isdir(os.path.join(data_dir, "convjax_tiny_images", "1.0.0"))

    def boom(*args, **kwargs):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(ConvjaxTinyImages, "_split_generators", boom)
    again = load_dataset("convjax_tiny_images", data_dir=data_dir)
    np.testing.assert_array_equal(again.train_images, ds.train_images)


def test_concurrent_prepare_waits_for_the_lock_and_does_not_rebuild(tmp_path, monkeypatch):
    # Two processes preparing one data set at once made TFDS's final rename fail
    # (FileExistsError); load_dataset now waits on a lock and re-checks before building.
    data_dir = str(tmp_path)
    result = {}

    def load():
        try:
            result["ds"] = load_dataset("convjax_tiny_images", data_dir=data_dir)
        except BaseException as err:  # reported below
            result["err"] = err

    with datasets_module._build_lock(data_dir, "convjax_tiny_images"):
        waiter = threading.Thread(target=load)
        waiter.start()
        waiter.join(timeout=1.0)
        assert waiter.is_alive()  # blocked on the lock, not building
        # "The other process" prepares the data set meanwhile ...
        ConvjaxTinyImages(data_dir=data_dir).download_and_prepare(file_format="array_record")

        def boom(*args, **kwargs):
            raise AssertionError("rebuilt")

        monkeypatch.setattr(ConvjaxTinyImages, "_split_generators", boom)
    waiter.join(timeout=60)
    assert "err" not in result, result.get("err")
    assert result["ds"].train_images.shape == (24, 8, 8, 3)  # ... and the waiter just reads


def test_default_data_dir_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVJAX_DATA_DIR", str(tmp_path / "cache"))
    assert default_data_dir() == str(tmp_path / "cache")
    load_dataset("convjax_tiny_images")
    assert os.path.isdir(tmp_path / "cache" / "convjax_tiny_images" / "1.0.0")
    monkeypatch.delenv("CONVJAX_DATA_DIR")
    assert default_data_dir() == os.path.expanduser(tfds.core.constants.DATA_DIR)


@pytest.mark.parametrize(
    "name,shape,num_classes",
    [
        ("cifar10", (32, 32, 3), 10),
        ("mnist", (28, 28, 1), 10),
        ("svhn_cropped", (32, 32, 3), 10),
        ("cifar100", (32, 32, 3), 100),
    ],
)
def test_generic_tfds_path_with_mock_data(tmp_path, name, shape, num_classes):
    with tfds.testing.mock_data(num_examples=6):
        ds = load_dataset(name, data_dir=str(tmp_path))
    assert ds.name == name
    assert ds.train_images.shape == (6, *shape) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (6, *shape) and ds.test_labels.dtype == np.int32
    assert ds.num_classes == num_classes and len(ds.class_names) == num_classes
    assert ((0 <= ds.train_labels) & (ds.train_labels < num_classes)).all()


def test_network_failure_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"could not download.*ConnectionError.*network"):
        load_dataset("convjax_offline_images", data_dir=str(tmp_path))


def test_generic_path_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"name='no_such_dataset_xyz' is not a TFDS data set"):
        load_dataset("no_such_dataset_xyz", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"name='' must be a non-empty data set name"):
        load_dataset("", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"source_dir=.* is only used for 'fashion_mnist'"):
        load_dataset("convjax_tiny_images", data_dir=str(tmp_path), source_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"name='convjax_no_labels'.*'image' and 'label'"):
        load_dataset("convjax_no_labels", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"name='convjax_train_only' has splits \['train'\]"):
        load_dataset("convjax_train_only", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"name='convjax_float_images' stores 'image' as float32"):
        load_dataset("convjax_float_images", data_dir=str(tmp_path))
    with tfds.testing.mock_data(num_examples=2):
        with pytest.raises(ValueError, match=r"name='oxford_flowers102' has images of varying"):
            load_dataset("oxford_flowers102", data_dir=str(tmp_path))

    def not_random_access(self, split):
        raise NotImplementedError("Random access data source for file format tfrecord")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", not_random_access)
    with pytest.raises(DatasetNotFoundError, match=r"format without random access"):
        load_dataset("convjax_tiny_images", data_dir=str(tmp_path))
    monkeypatch.setattr(tfds.core.DatasetBuilder, "as_data_source", lambda self, split: [])
    with pytest.raises(DatasetNotFoundError, match=r"Split 'train' of .* holds no examples"):
        load_dataset("convjax_tiny_images", data_dir=str(tmp_path))


# ---------------------------------------------------------------- ImageDataset, split_validation


def _small_dataset(n_train=40, num_classes=4):
    # Image i holds the value i everywhere (i < 256): rows identify examples.
    idx = np.arange(n_train)
    x = np.broadcast_to(idx[:, None, None, None], (n_train, 3, 3, 1)).astype(np.uint8)
    return ImageDataset(
        train_images=x,
        train_labels=(idx % num_classes).astype(np.int32),
        test_images=x[:5].copy(),
        test_labels=np.zeros(5, np.int32),
        num_classes=num_classes,
        class_names=[str(k) for k in range(num_classes)],
        name="small",
    )


def test_split_validation_partition_and_determinism():
    ds = _small_dataset()
    a = split_validation(ds, 10, seed=3)
    assert a.has_validation and a.image_shape == (3, 3, 1)
    val_ids = a.validation_images[:, 0, 0, 0].astype(int)
    train_ids = a.train_images[:, 0, 0, 0].astype(int)
    assert sorted(val_ids.tolist() + train_ids.tolist()) == list(range(40))
    np.testing.assert_array_equal(a.validation_labels, val_ids % 4)  # labels follow images
    np.testing.assert_array_equal(np.diff(train_ids) > 0, True)  # original order kept
    np.testing.assert_array_equal(np.bincount(a.validation_labels), [3, 3, 2, 2])
    b = split_validation(ds, 10, seed=3)
    np.testing.assert_array_equal(a.validation_images, b.validation_images)
    c = split_validation(ds, 10, seed=4)
    assert set(c.validation_images[:, 0, 0, 0].tolist()) != set(val_ids.tolist())
    assert a.class_names == ("0", "1", "2", "3")


def test_split_validation_unbalanced_classes_largest_remainder():
    labels = np.array([0] * 70 + [1] * 20 + [2] * 10, np.int32)
    ds = dataclasses.replace(_small_dataset(100, 3), train_labels=labels)
    split = split_validation(ds, 15, seed=0)
    # Exact shares 10.5, 3.0, 1.5 -> floors 10, 3, 1 and the one left over goes to class 0
    # (largest remainder, ties to the lower class).
    np.testing.assert_array_equal(np.bincount(split.validation_labels, minlength=3), [11, 3, 1])


def test_split_validation_errors():
    ds = _small_dataset()
    with pytest.raises(ValueError, match=r"num_validation=0 must be between 1 and 39"):
        split_validation(ds, 0, seed=0)
    with pytest.raises(ValueError, match=r"num_validation=40 must be between 1 and 39"):
        split_validation(ds, 40, seed=0)
    with pytest.raises(ValueError, match=r"num_validation=0.1 must be an int"):
        split_validation(ds, 0.1, seed=0)
    with pytest.raises(ValueError, match=r"seed='a' must be an int"):
        split_validation(ds, 5, seed="a")
    with pytest.raises(ValueError, match=r"ds=dict must be an ImageDataset"):
        split_validation({}, 5, seed=0)
    with pytest.raises(ValueError, match=r"ds already has a validation split \(5 examples\)"):
        split_validation(split_validation(ds, 5, seed=0), 5, seed=0)


def test_image_dataset_checks():
    good = _small_dataset()
    kw = dict(
        train_images=good.train_images,
        train_labels=good.train_labels,
        test_images=good.test_images,
        test_labels=good.test_labels,
        num_classes=4,
        class_names=("a", "b", "c", "d"),
        name="x",
    )
    with pytest.raises(ValueError, match=r"train_images must be a numpy uint8 array"):
        ImageDataset(**{**kw, "train_images": good.train_images.astype(np.float32)})
    with pytest.raises(ValueError, match=r"test_labels must be a numpy int32 array"):
        ImageDataset(**{**kw, "test_labels": good.test_labels.astype(np.int64)})
    with pytest.raises(ValueError, match=r"train_images has 40 examples but train_labels has 3"):
        ImageDataset(**{**kw, "train_labels": good.train_labels[:3]})
    with pytest.raises(ValueError, match=r"test_images has image shape \(2, 2, 1\)"):
        ImageDataset(**{**kw, "test_images": np.zeros((5, 2, 2, 1), np.uint8)})
    with pytest.raises(ValueError, match=r"class_names has 2 names but num_classes=4"):
        ImageDataset(**{**kw, "class_names": ("a", "b")})
    with pytest.raises(ValueError, match=r"validation_images and validation_labels must both"):
        ImageDataset(**kw, validation_images=good.test_images)


# ---------------------------------------------------------------- normalisation


def test_channel_stats_hand_computed():
    x = np.zeros((2, 1, 2, 2), np.uint8)
    x[..., 0] = [[[0, 255]], [[255, 255]]]  # mean 191.25, std 110.42...
    x[..., 1] = 51  # constant: std 0
    mean, std = channel_stats(x)
    assert mean.dtype == np.float32 and mean.shape == (2,)
    np.testing.assert_allclose(mean, [0.75, 0.2], rtol=1e-6)
    np.testing.assert_allclose(std, [np.sqrt(0.75 * 0.25), 0.0], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match=r"images has shape \(2, 2\) and dtype uint8"):
        channel_stats(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match=r"dtype float32; channel_stats needs"):
        channel_stats(np.zeros((1, 2, 2, 1), np.float32))


def test_channel_stats_blocks_agree_with_float64(monkeypatch):
    x = np.random.default_rng(0).integers(0, 256, (37, 4, 5, 3), dtype=np.uint8)
    monkeypatch.setattr("convjax.data.preprocess._BLOCK", 5)  # several partial sums
    mean, std = channel_stats(x)
    ref = x.astype(np.float64) / 255
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-6)


def test_normalize_hand_computed_and_jit():
    x = np.array([[[[0, 255], [51, 102]]]], np.uint8)  # (1, 1, 2, 2): two channels
    mean, std = np.array([0.2, 0.4]), np.array([0.5, 0.2])
    want = np.array([[[[-0.4, 3.0], [0.0, 0.0]]]], np.float32)
    out = normalize(x, mean, std)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out, want, atol=1e-6)
    np.testing.assert_allclose(jax.jit(lambda im: normalize(im, mean, std))(x), want, atol=1e-6)
    np.testing.assert_allclose(normalize(x, 0.0, 1.0), x / 255.0, atol=1e-7)


def test_normalize_errors():
    x = np.zeros((2, 3, 3, 3), np.uint8)
    with pytest.raises(ValueError, match=r"images has dtype float32; normalize expects"):
        normalize(x.astype(np.float32), 0.5, 0.5)
    with pytest.raises(ValueError, match=r"mean has 2 entries \[0.5, 0.5\] but images have 3"):
        normalize(x, [0.5, 0.5], 0.5)
    with pytest.raises(ValueError, match=r"std has 4 entries"):
        normalize(x, 0.5, [1.0] * 4)
    with pytest.raises(ValueError, match=r"std=\[0.5, 0.0, 0.5\] must be positive"):
        normalize(x, 0.5, [0.5, 0.0, 0.5])


def test_works_without_tensorflow(tmp_path):
    # Layer 6 must not need TensorFlow. etils/TFDS probe for it with importlib.util.find_spec,
    # so it cannot be blocked reliably where it is installed; the project's environment does
    # not install it, and there the whole build/read path must run.
    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed; this checks the TensorFlow-free environment")
    ds = load_dataset("convjax_tiny_images", data_dir=str(tmp_path))
    assert ds.train_images.shape == (24, 8, 8, 3)
    assert "tensorflow" not in sys.modules


def test_importing_the_training_code_does_not_import_tfds():
    # TFDS is imported when a data set is loaded, not by `import convjax.train`: populations
    # and sweeps then run where TFDS is missing (a lent GPU image) and every process starts
    # faster. A fresh interpreter, since this test process has TFDS loaded already.
    code = (
        "import sys\n"
        "import convjax.data, convjax.train\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] == 'tensorflow_datasets')\n"
        "assert not loaded, loaded\n"
        "from convjax.data import FashionMnistLocal\n"
        "assert 'tensorflow_datasets' in sys.modules\n"
        "assert FashionMnistLocal.name == 'fashion_mnist_local', FashionMnistLocal.name\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-2000:]


def test_missing_tfds_names_the_data_extra(tmp_path, monkeypatch):
    # The core install (pip install convjax) has no TFDS; loading says which extra brings it.
    # A None entry in sys.modules makes `import tensorflow_datasets` fail as if not installed.
    monkeypatch.delenv("CONVJAX_DATA_DIR", raising=False)
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ModuleNotFoundError, match=r'pip install "convjax\[data\]"'):
        load_dataset("fashion_mnist", data_dir=tmp_path)
    with pytest.raises(ModuleNotFoundError, match=r"needs tensorflow-datasets"):
        default_data_dir()
