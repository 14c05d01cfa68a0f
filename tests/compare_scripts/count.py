"""A training-shaped script without TensorFlow: fast runs for the compare/reproduce tests.

The loss curve is a pure function of the data file and `--scale`, plus `--noise`
times an unseeded random draw (to make a run that cannot be reproduced exactly);
`draw` comes from Python's `random`, seeded by mlrepro.
"""

import argparse
import os
import random

import mlrepro
from mlrepro.capture.data import fingerprint_files

SCALE_OFFSET = 0.0


def _read(path: str) -> bytes:
    if not os.path.isdir(path):
        with open(path, "rb") as fh:
            return fh.read()
    return b"".join(_read(os.path.join(path, name)) for name in sorted(os.listdir(path)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--project", default="count")
    parser.add_argument("--generated-seed", action="store_true",
                        help="let mlrepro draw the seed (deterministic=True, seed=None)")
    args = parser.parse_args()

    params = {"scale": args.scale, "steps": args.steps}
    if args.generated_seed:
        run = mlrepro.start_run(project=args.project, params=params, deterministic=True)
    else:
        run = mlrepro.start_run(project=args.project, params=params, seed=7)
    run.log_data("train", fingerprint_files([args.data]))
    base = sum(_read(args.data)) % 97 + 1
    noise = random.SystemRandom()
    for step in range(args.steps):
        loss = (args.scale + SCALE_OFFSET) * base / (step + 1) + args.noise * noise.random()
        run.log_metrics({"loss": loss, "draw": random.random(),
                         "step_time_seconds": noise.random()}, step=step)
    run.finish()
    print(f"run_id={run.id}")


if __name__ == "__main__":
    main()
