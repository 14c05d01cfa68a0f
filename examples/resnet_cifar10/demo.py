"""`make demo`: train ResNet-20 briefly on generated CIFAR-shaped data, then show the recorded run.

About a minute on 2 CPU cores: ResNet-20 (the paper's model and recipe), 2
epochs over 2,048 synthetic 32x32 images (learnable: one smooth pattern per
class plus noise), evaluated on 409 more, recorded in ./mlrepro-runs (or
$MLREPRO_STORE). Then prints `mlrepro runs` and `mlrepro show <run>`.
Real data: see README.md in this folder.
"""

from __future__ import annotations

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEMO_FLAGS = ["--data", "synthetic", "--synthetic-examples", "2048", "--depth", "20",
              "--epochs", "2", "--batch-size", "64", "--lr-boundaries", "1.5",
              "--log-every-n-steps", "8", "--project", "cifar10-resnet-demo"]


def main(argv=None) -> int:
    import train
    from mlrepro.cli import main as mlrepro_cli

    flags = DEMO_FLAGS + list(sys.argv[1:] if argv is None else argv)
    print("$ python examples/resnet_cifar10/train.py " + " ".join(flags), flush=True)
    started = time.perf_counter()
    try:
        run = train.train(flags)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    print(f"(training and recording took {time.perf_counter() - started:.0f} s)\n", flush=True)
    print("$ mlrepro runs", flush=True)
    mlrepro_cli(["runs"])
    print(f"\n$ mlrepro show {run.id}", flush=True)
    return mlrepro_cli(["show", run.id])


if __name__ == "__main__":
    sys.exit(main())
