"""Write CIFAR-10 as TFRecord shards (the form a SageMaker channel carries), from any source.

    python examples/resnet_cifar10/prepare_data.py --data cifar-binary \\
        --data-dir cifar-10-binary.tar.gz --output cifar10-tfrecords --shards 4
    aws s3 sync cifar10-tfrecords s3://my-bucket/cifar10/      # then the `training` channel

Writes `train-0000i-of-0000n.tfrecord` and `test-00000-of-00001.tfrecord` (see
formats.py for the record layout) and `manifest.json` naming the source and the
sha256 of every file written, so a run trained on them can be traced back.
`--data synthetic` writes generated data (for trying the pipeline end to end).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import formats  # noqa: E402

MANIFEST = "manifest.json"
SOURCE_FIELDS = ("source", "digest", "format", "archive", "archive_sha256", "tfds_version")
EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", choices=formats.SOURCES, default="tfds",
                   help="where to read CIFAR-10 from (as for train.py)")
    p.add_argument("--data-dir", default=None, help="the source's files (as for train.py)")
    p.add_argument("--output", required=True, help="folder to write the TFRecord files into")
    p.add_argument("--shards", type=int, default=4, help="files for the training split")
    p.add_argument("--test-shards", type=int, default=1, help="files for the test split")
    p.add_argument("--train-examples", type=int, default=0, help="first N only (0: all)")
    p.add_argument("--test-examples", type=int, default=0, help="first N only (0: all)")
    p.add_argument("--synthetic-examples", type=int, default=2048)
    p.add_argument("--seed", type=int, default=1, help="seed of --data synthetic")
    return p


def prepare(args) -> dict:
    """Read both splits and write them; returns the manifest written."""
    import data
    from mlrepro.capture.data import file_digest

    manifest = {"format": "tfrecord", "feature_spec": {formats.IMAGE_KEY: "bytes (32x32x3 uint8, "
                                                       "height-width-channel)",
                                                       formats.LABEL_KEY: "int64"},
                "source": args.data, "splits": {}}
    for split, shards, limit in (("train", args.shards, args.train_examples),
                                 ("test", args.test_shards, args.test_examples)):
        loaded = data.load_split(args.data, split, args.data_dir, limit=limit,
                                 synthetic_examples=args.synthetic_examples,
                                 synthetic_seed=args.seed)
        images, labels = data.arrays(loaded)
        for old in formats.find_tfrecords(args.output, split):
            os.remove(old)  # a re-run with fewer shards must not leave stale files behind
        paths = formats.write_tfrecords(args.output, split, images, labels, shards=shards)
        source = data.fingerprint(loaded)
        manifest["splits"][split] = {
            "examples": int(len(labels)),
            "files": {os.path.basename(p): file_digest(p) for p in paths},
            "from": {k: source.get(k) for k in SOURCE_FIELDS if source.get(k) is not None},
        }
        print(f"prepare_data.py: {split}: {len(labels)} examples -> {len(paths)} file(s) in "
              f"{args.output}", flush=True)
    with open(os.path.join(args.output, MANIFEST), "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=1, sort_keys=True)
        fh.write("\n")
    return manifest


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    if args.shards < 1 or args.test_shards < 1:
        parser().error("--shards and --test-shards must be at least 1")
    import data

    try:
        prepare(args)
    except data.DataUnavailable as exc:
        print(f"prepare_data.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
