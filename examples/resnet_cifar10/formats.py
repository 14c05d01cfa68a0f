"""The on-disk forms of CIFAR-10 this example reads and writes, defined once.

- **CIFAR-10 binary** (https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"):
  `data_batch_1.bin` ... `data_batch_5.bin` and `test_batch.bin`, each record one
  label byte then 3072 pixel bytes (the red, green and blue 32x32 planes, row
  major); shipped as `cifar-10-binary.tar.gz` holding `cifar-10-batches-bin/`.
- **TFRecord** (what a SageMaker channel carries): `tf.train.Example`s with the
  image as 3072 raw bytes in height-width-channel order and an int64 label, in
  files named `train-00000-of-00004.tfrecord`, `test-00000-of-00001.tfrecord`.

Nothing here imports TensorFlow except the TFRecord functions, so tests can
build archives cheaply.
"""

from __future__ import annotations

import glob
import os
import tarfile

import numpy as np

HEIGHT = WIDTH = 32
CHANNELS = 3
IMAGE_BYTES = HEIGHT * WIDTH * CHANNELS          # 3072
LABEL_BYTES = 1
RECORD_BYTES = LABEL_BYTES + IMAGE_BYTES          # 3073
NUM_CLASSES = 10
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")
TRAIN_EXAMPLES, TEST_EXAMPLES = 50_000, 10_000

SOURCES = ("tfds", "cifar-binary", "tfrecord", "synthetic")   # the --data choices
SPLITS = ("train", "test")
BINARY_FILES = {"train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
                "test": ("test_batch.bin",)}
BINARY_ARCHIVE = "cifar-10-binary.tar.gz"
BINARY_ARCHIVE_DIR = "cifar-10-batches-bin"

TFRECORD_SUFFIX = ".tfrecord"
IMAGE_KEY, LABEL_KEY = "image", "label"


def tfrecord_name(split: str, shard: int, shards: int) -> str:
    """`train-00000-of-00004.tfrecord`."""
    return f"{split}-{shard:05d}-of-{shards:05d}{TFRECORD_SUFFIX}"


def tfrecord_pattern(split: str) -> str:
    return f"{split}-*{TFRECORD_SUFFIX}"


# -- CIFAR-10 binary ---------------------------------------------------------------------------

def encode_binary(images: np.ndarray, labels: np.ndarray) -> bytes:
    """Records in the official binary layout from HWC uint8 images and int labels."""
    images = np.asarray(images, dtype=np.uint8).reshape(-1, HEIGHT, WIDTH, CHANNELS)
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), IMAGE_BYTES)
    return np.concatenate([labels, planes], axis=1).tobytes()


def decode_binary(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(images NHWC uint8, labels int64) from bytes in the official binary layout."""
    if len(data) % RECORD_BYTES:
        raise ValueError(f"{len(data)} bytes is not a whole number of {RECORD_BYTES}-byte "
                         "CIFAR-10 records")
    rows = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD_BYTES)
    images = rows[:, LABEL_BYTES:].reshape(-1, CHANNELS, HEIGHT, WIDTH).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), rows[:, 0].astype(np.int64)


def write_binary_dir(directory: str, splits: dict) -> list[str]:
    """Write `{"train": (images, labels), "test": ...}` as `data_batch_*.bin` / `test_batch.bin`.

    Training examples are split over the five batch files as evenly as they go.
    """
    os.makedirs(directory, exist_ok=True)
    written = []
    for split, (images, labels) in splits.items():
        names = BINARY_FILES[split]
        for name, part in zip(names, np.array_split(np.arange(len(labels)), len(names))):
            path = os.path.join(directory, name)
            with open(path, "wb") as fh:
                fh.write(encode_binary(np.asarray(images)[part], np.asarray(labels)[part]))
            written.append(path)
    return written


def write_binary_archive(path: str, splits: dict) -> str:
    """Write a `cifar-10-binary.tar.gz`-shaped archive (files under `cifar-10-batches-bin/`)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        inner = os.path.join(tmp, BINARY_ARCHIVE_DIR)
        write_binary_dir(inner, splits)
        with tarfile.open(path, "w:gz") as tar:
            tar.add(inner, arcname=BINARY_ARCHIVE_DIR)
    return path


def find_binary_files(directory: str, split: str) -> list[str]:
    """The split's `.bin` files in `directory` or its `cifar-10-batches-bin/`, sorted."""
    for folder in (directory, os.path.join(directory, BINARY_ARCHIVE_DIR)):
        found = [os.path.join(folder, n) for n in BINARY_FILES[split]
                 if os.path.isfile(os.path.join(folder, n))]
        if found:
            return found
    return []


def find_binary_archive(path: str) -> str | None:
    """`path` if it is a .tar.gz, or the `cifar-10-binary.tar.gz` inside directory `path`."""
    if os.path.isfile(path) and (path.endswith(".tar.gz") or path.endswith(".tgz")):
        return path
    candidate = os.path.join(path, BINARY_ARCHIVE)
    if os.path.isfile(candidate):
        return candidate
    archives = sorted(glob.glob(os.path.join(glob.escape(path), "*.tar.gz")))
    return archives[0] if len(archives) == 1 else None


def extract_binary_archive(archive: str, destination: str) -> str:
    """Extract the `.bin` members of a CIFAR-10 binary archive; returns the folder holding them."""
    os.makedirs(destination, exist_ok=True)
    wanted = set(BINARY_FILES["train"] + BINARY_FILES["test"])
    with tarfile.open(archive, "r:*") as tar:
        members = [m for m in tar.getmembers()
                   if m.isfile() and os.path.basename(m.name) in wanted]
        if not members:
            raise ValueError(f"{archive} holds no data_batch_*.bin or test_batch.bin")
        for member in members:
            target = os.path.join(destination, os.path.basename(member.name))
            tmp = target + ".part"
            with tar.extractfile(member) as src, open(tmp, "wb") as dst:
                dst.write(src.read())
            os.replace(tmp, target)
    return destination


# -- TFRecord --------------------------------------------------------------------------------

def feature_spec() -> dict:
    """The `tf.io.parse_example` spec of one record."""
    import tensorflow as tf

    return {IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
            LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}


def encode_example(image: np.ndarray, label: int) -> bytes:
    """One serialized `tf.train.Example` (image: HWC uint8)."""
    import tensorflow as tf

    image = np.asarray(image, dtype=np.uint8).reshape(HEIGHT, WIDTH, CHANNELS)
    return tf.train.Example(features=tf.train.Features(feature={
        IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
        LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
    })).SerializeToString()


def write_tfrecords(directory: str, split: str, images, labels, shards: int = 1) -> list[str]:
    """Write a split as `shards` TFRecord files (examples dealt out in contiguous runs)."""
    import tensorflow as tf

    os.makedirs(directory, exist_ok=True)
    shards = max(1, min(int(shards), max(1, len(labels))))
    paths = []
    for shard, part in enumerate(np.array_split(np.arange(len(labels)), shards)):
        path = os.path.join(directory, tfrecord_name(split, shard, shards))
        with tf.io.TFRecordWriter(path) as writer:
            for i in part:
                writer.write(encode_example(images[i], labels[i]))
        paths.append(path)
    return paths


def find_tfrecords(directory: str, split: str) -> list[str]:
    """The split's TFRecord files in `directory` (or `directory/<split>/`), sorted."""
    for folder in (directory, os.path.join(directory, split)):
        found = sorted(glob.glob(os.path.join(glob.escape(folder), tfrecord_pattern(split))))
        if found:
            return found
    return []
