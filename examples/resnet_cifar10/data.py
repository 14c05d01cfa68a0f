"""CIFAR-10 from any of four sources, each split read by TensorFlow's own file readers.

Sources (`--data`): `tfds` (tensorflow-datasets `cifar10`, downloaded once into
`--data-dir` or `~/tensorflow_datasets`), `cifar-binary` (the official
`cifar-10-binary.tar.gz` or a folder of `data_batch_*.bin`), `tfrecord` (files
written by `prepare_data.py`; the form a SageMaker channel carries) and
`synthetic` (generated, learnable, no files).

Every source becomes a `Split`: a one-element dataset holding the whole split
(uint8 images, int64 labels), read from its files by `FixedLengthRecordDataset`
/ `TFRecordDataset` (so `ReproCallback` finds and fingerprints the files in the
pipeline's graph) and cached in memory. `pipeline.py` turns splits into
training and evaluation batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import socket
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import tensorflow as tf

import formats

SOURCES = formats.SOURCES
TFDS_NAME = "cifar10"
_COMPLETE = ".complete"  # marks a fully unpacked archive in the cache
# The file tensorflow-datasets downloads for cifar10 (also the official binary archive).
DOWNLOAD_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
PROBE_TIMEOUT_S = 10.0


class DataUnavailable(Exception):
    """The chosen source cannot be read; the message says which other sources to use."""


@dataclass
class Split:
    """One split of CIFAR-10, ready for the pipelines below.

    Args:
        build: makes the table: a dataset with exactly one element, (images [n,32,32,3]
            uint8, labels [n] int64), read from `files` and cached in memory.
        size: n.
        source: "tfds", "cifar-binary", "tfrecord" or "synthetic".
        split: "train" or "test".
        files: the files read (empty for synthetic data).
        description: where the data came from, for people.
        origin: what the files came from, for the record (the archive's sha256, the
            tensorflow-datasets version).
        table: the table `load_split` built (eagerly, its cache filled once).
    """

    build: Callable[[], tf.data.Dataset]
    size: int
    source: str
    split: str
    files: list = field(default_factory=list)
    description: str = ""
    origin: dict = field(default_factory=dict)
    table: tf.data.Dataset | None = None

    def rebuilt(self) -> "Split":
        """The same split with its table built again in the current graph.

        A tf.estimator input_fn runs inside the Estimator's graph, which cannot use
        a dataset made eagerly: call this there.
        """
        return dataclasses.replace(self, table=self.build())


# -- sources -----------------------------------------------------------------------------------

def load_train_and_test(args, data_dir: str | None) -> tuple[Split, Split]:
    """Both splits as the training scripts' flags ask (`--data`, `--*-examples`, `--seed`)."""
    return tuple(load_split(args.data, split, data_dir, limit=limit,
                            synthetic_examples=args.synthetic_examples,
                            synthetic_seed=args.seed)
                 for split, limit in (("train", args.train_examples),
                                      ("test", args.test_examples)))


def load_split(source: str, split: str, data_dir: str | None = None, *, limit: int | None = None,
               synthetic_examples: int = 2048, synthetic_seed: int = 0) -> Split:
    """Read one split of CIFAR-10 from `source` (see the module doc).

    Args:
        source: one of SOURCES.
        split: "train" or "test".
        data_dir: where the files are (tfds: its data_dir; cifar-binary: the archive or a
            folder; tfrecord: a folder). Not needed for synthetic data.
        limit: keep only the first `limit` examples (quick runs).
        synthetic_examples: examples in a synthetic split (the test split gets a fifth).
        synthetic_seed: seed of the synthetic data itself.

    Raises DataUnavailable when the source cannot be read.
    """
    if source not in SOURCES:
        raise DataUnavailable(f"--data {source!r} is not one of {', '.join(SOURCES)}")
    if split not in formats.SPLITS:
        raise ValueError(f"split {split!r} must be one of {formats.SPLITS}")
    if source == "synthetic":
        n = synthetic_examples if split == "train" else max(1, synthetic_examples // 5)
        result = synthetic_split(split, n, synthetic_seed)
    elif source == "cifar-binary":
        result = _binary_split(split, _required(data_dir, source))
    elif source == "tfrecord":
        result = _tfrecord_split(split, _required(data_dir, source))
    else:
        result = _tfds_split(split, data_dir)
    return _limited(result, limit) if limit else result


def _required(data_dir, source) -> str:
    if not data_dir:
        raise DataUnavailable(f"--data {source} needs --data-dir (the folder or archive that "
                              "holds the files)")
    if not os.path.exists(data_dir):
        raise DataUnavailable(f"--data-dir {data_dir} does not exist")
    return data_dir


def _count(records: tf.data.Dataset) -> int:
    """Elements in a finite dataset: its cardinality when known, else one pass."""
    known = int(records.cardinality())
    if known >= 0:
        return known
    return int(records.reduce(np.int64(0), lambda count, _: count + 1))


def _as_table(examples: tf.data.Dataset, size: int) -> tf.data.Dataset:
    """`size` (image, label) pairs -> one cached element holding them all."""
    if size <= 0:
        raise DataUnavailable("the data source holds no examples")
    return examples.batch(size).take(1).cache()


def _loaded(split: Split) -> Split:
    """Build the split's table and read it once, filling its in-memory cache (eager mode)."""
    table = split.build()
    if tf.executing_eagerly():
        for _, labels in table:
            if int(labels.shape[0]) != split.size:
                raise DataUnavailable(f"{split.description}: read {int(labels.shape[0])} "
                                      f"examples, expected {split.size}")
    return dataclasses.replace(split, table=table)


def _decode_binary(record):
    row = tf.io.decode_raw(record, tf.uint8)
    label = tf.cast(row[0], tf.int64)
    planes = tf.reshape(row[formats.LABEL_BYTES:],
                        [formats.CHANNELS, formats.HEIGHT, formats.WIDTH])
    return tf.transpose(planes, [1, 2, 0]), label


def _binary_split(split: str, data_dir: str) -> Split:
    files = formats.find_binary_files(data_dir, split) if os.path.isdir(data_dir) else []
    archive, origin = None, {}
    if not files:
        archive = formats.find_binary_archive(data_dir)
        if archive is None:
            raise DataUnavailable(
                f"--data-dir {data_dir} holds neither {formats.BINARY_ARCHIVE} nor "
                f"{', '.join(formats.BINARY_FILES[split])}: point it at the official CIFAR-10 "
                "binary archive or the folder it unpacks to")
        folder, sha256 = _extracted(archive)
        origin = {"archive": os.path.basename(archive), "archive_sha256": sha256,
                  "archive_size": os.path.getsize(archive)}
        files = formats.find_binary_files(folder, split)
        if not files:
            raise DataUnavailable(f"{archive} holds no {', '.join(formats.BINARY_FILES[split])}")
    for path in files:
        if os.path.getsize(path) % formats.RECORD_BYTES:
            raise DataUnavailable(f"{path} is not a CIFAR-10 binary batch: its size is not a "
                                  f"multiple of {formats.RECORD_BYTES} bytes")
    size = sum(os.path.getsize(f) for f in files) // formats.RECORD_BYTES

    def build():
        records = tf.data.FixedLengthRecordDataset(files, formats.RECORD_BYTES)
        return _as_table(records.map(_decode_binary), size)

    described = f"{archive} ({len(files)} files)" if archive else f"{data_dir} ({len(files)} files)"
    return _loaded(Split(build, size, "cifar-binary", split, files, described, origin))


def _extracted(archive: str) -> tuple[str, str]:
    """The archive unpacked once into the cache, under a folder named by its content.

    Returns (folder, the archive's sha256). Safe when several processes (workers
    on one host) unpack the same archive at once: each unpacks into a folder of
    its own and the first to finish renames it into place.
    """
    digest = hashlib.sha256()
    with open(archive, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    base = os.environ.get("MLREPRO_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "mlrepro")
    parent = os.path.join(base, "cifar10-binary")
    target = os.path.join(parent, digest.hexdigest()[:16])
    if os.path.exists(os.path.join(target, _COMPLETE)):
        return target, digest.hexdigest()
    os.makedirs(parent, exist_ok=True)
    mine = tempfile.mkdtemp(prefix=".unpacking-", dir=parent)
    formats.extract_binary_archive(archive, mine)
    open(os.path.join(mine, _COMPLETE), "w").close()
    try:
        os.rename(mine, target)
    except OSError:  # another process put a folder there first
        if os.path.exists(os.path.join(target, _COMPLETE)):
            shutil.rmtree(mine, ignore_errors=True)
        else:
            return mine, digest.hexdigest()
    return target, digest.hexdigest()


def _parse_tfrecords(serialized):
    parsed = tf.io.parse_single_example(serialized, formats.feature_spec())
    image = tf.reshape(tf.io.decode_raw(parsed[formats.IMAGE_KEY], tf.uint8),
                       [formats.HEIGHT, formats.WIDTH, formats.CHANNELS])
    return image, parsed[formats.LABEL_KEY]


def _tfrecord_split(split: str, data_dir: str) -> Split:
    files = formats.find_tfrecords(data_dir, split)
    if not files:
        raise DataUnavailable(
            f"--data-dir {data_dir} holds no {formats.tfrecord_pattern(split)} files: write them "
            "with `python examples/resnet_cifar10/prepare_data.py --data cifar-binary "
            "--data-dir <archive> --output <folder>`")
    size = _count(tf.data.TFRecordDataset(files))

    def build():
        return _as_table(tf.data.TFRecordDataset(files).map(_parse_tfrecords), size)

    return _loaded(Split(build, size, "tfrecord", split, files,
                         f"{data_dir} ({len(files)} files)"))


def other_sources_hint() -> str:
    """What to do instead of downloading: the other three sources."""
    return ("to train without a download, use --data cifar-binary --data-dir "
            "<cifar-10-binary.tar.gz or a folder of data_batch_*.bin> (fetch the archive "
            f"from {DOWNLOAD_URL} on a machine with network), --data tfrecord --data-dir "
            "<folder written by prepare_data.py>, or --data synthetic")


def probe_download(url: str | None = None, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None if the download host answers, else why not (checked in seconds, not minutes of retries).

    tensorflow-datasets retries an unreachable host for minutes before it fails;
    one connection attempt tells the same thing at once.
    """
    parts = urllib.parse.urlsplit(url or DOWNLOAD_URL)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return f"cannot reach {host}:{port} ({exc})"


def _tfds_split(split: str, data_dir: str | None) -> Split:
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataUnavailable("--data tfds needs tensorflow-datasets (pip install "
                              f"tensorflow-datasets); {other_sources_hint()}") from None

    def load(download: bool):
        return tfds.load(TFDS_NAME, split=split, as_supervised=True, data_dir=data_dir,
                         shuffle_files=False, download=download)

    try:
        examples = load(download=False)  # already prepared in data_dir
    except Exception:  # noqa: BLE001 - not there yet: download it, if the host answers
        problem = probe_download()
        if problem:
            raise DataUnavailable(f"tensorflow-datasets cannot download {TFDS_NAME}: "
                                  f"{problem}; {other_sources_hint()}") from None
        try:
            examples = load(download=True)
        except Exception as exc:  # noqa: BLE001 - any download/prepare failure: same advice
            raise DataUnavailable(f"tensorflow-datasets could not load {TFDS_NAME} "
                                  f"({type(exc).__name__}: {str(exc)[:300]}); "
                                  f"{other_sources_hint()}") from None
    size = _count(examples)

    def build():
        cast = load(download=False).map(lambda image, label: (tf.cast(image, tf.uint8),
                                                              tf.cast(label, tf.int64)))
        return _as_table(cast, size)

    builder = tfds.builder(TFDS_NAME, data_dir=data_dir)
    files = _tfds_files(builder, split)
    where = getattr(builder, "data_dir", data_dir)
    return _loaded(Split(build, size, "tfds", split, files,
                         f"tensorflow-datasets {TFDS_NAME} {builder.version} in {where}",
                         {"tfds": TFDS_NAME, "tfds_version": str(builder.version)}))


def _tfds_files(builder, split) -> list:
    try:
        return sorted(str(p) for p in builder.info.splits[split].filepaths
                      if os.path.exists(str(p)))
    except Exception:  # noqa: BLE001 - mock data has no files
        return []


def synthetic_split(split: str, n: int, seed: int = 0) -> Split:
    """`n` generated 32x32 images a ResNet can learn from: a smooth pattern per class plus noise."""
    rng = np.random.default_rng([seed, 0])
    coarse = rng.uniform(0, 255, size=(formats.NUM_CLASSES, 4, 4, formats.CHANNELS))
    templates = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
    rng = np.random.default_rng([seed, 1 if split == "train" else 2])
    labels = rng.integers(0, formats.NUM_CLASSES, size=n)
    noise = rng.normal(0, 48, size=(n, formats.HEIGHT, formats.WIDTH, formats.CHANNELS))
    images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
    labels = labels.astype(np.int64)

    def build():
        return tf.data.Dataset.from_tensors((images, labels))

    return _loaded(Split(build, n, "synthetic", split, [],
                         f"synthetic (seed {seed}, {n} examples)"))


def arrays(split: Split) -> tuple[np.ndarray, np.ndarray]:
    """The split as NumPy (images NHWC uint8, labels int64)."""
    for images, labels in split.table:
        return images.numpy(), labels.numpy()
    raise ValueError("empty split")


def _limited(split: Split, limit: int) -> Split:
    size = min(split.size, int(limit))
    whole = split.build

    def build():
        return whole().map(lambda images, labels: (images[:size], labels[:size]))

    return _loaded(dataclasses.replace(split, build=build, size=size, table=None,
                                       description=f"{split.description}, first {size} examples"))


def fingerprint(split: Split) -> dict:
    """The data fingerprint of the files a split was read from (mlrepro's file digest)."""
    from mlrepro.capture.data import fingerprint_array, fingerprint_files

    if split.files:
        found = fingerprint_files(split.files, source=split.description)
    else:
        images, labels = arrays(split)
        found = {"kind": "array", "source": split.description,
                 "digest": hashlib.sha256((fingerprint_array(images)["digest"]
                                           + fingerprint_array(labels)["digest"]).encode())
                 .hexdigest(), "size": int(images.nbytes + labels.nbytes)}
    found.update(examples=split.size, format=split.source, split=split.split, **split.origin)
    return found
