"""A spot job's life on this machine: train.py interrupted twice by SIGTERM, then finished.

    python examples/resnet_cifar10/spot_demo.py            # about a minute on 2 CPU cores
    python examples/resnet_cifar10/spot_demo.py --store /tmp/spot-runs --keep

It runs `train.py` (ResNet-8 on synthetic data, a few steps per epoch) as a managed
spot job would: `MLREPRO_SPOT=1`, step checkpoints (`--checkpoint-every "4 steps"`).
Twice, once the run has logged a given step, it sends the training process SIGTERM —
what SageMaker sends at a spot interruption — and waits for it to exit (the run
records a checkpoint at the next step and ends the attempt as `preempted`). Then it
starts the same command again, as SageMaker restarts the job, and the third attempt
finishes the run. Last, it prints `mlrepro show` of that one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TIMEOUT_S = 600
FLAGS = ["--data", "synthetic", "--synthetic-examples", "192", "--depth", "8",
         "--batch-size", "32", "--epochs", "3", "--log-every-n-steps", "1",
         "--checkpoint-every", "4 steps", "--export", "none", "--verbose", "0"]
STOP_AFTER = (5, 13)   # the steps after which the two interruptions come (6 steps an epoch)


def _env(store: str) -> dict:
    from mlrepro import env as mlrepro_env

    out = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2")
    out[mlrepro_env.SPOT.name] = "1"     # what `mlrepro launch --spot` sets in the job
    out[mlrepro_env.STORE.name] = store
    return out


def _last_step(store: str) -> int:
    from mlrepro.store.local import LocalStore

    s = LocalStore(store)
    steps = [max(s.read_points(r).steps("loss") or [-1]) for r in s.run_ids()]
    return max(steps or [-1])


def attempt(store: str, workdir: str, stop_after: int | None) -> int:
    """One process of the job; with `stop_after`, SIGTERM once that step is logged."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train.py"), *FLAGS],
                            env=_env(store), cwd=workdir)
    deadline = time.monotonic() + TIMEOUT_S
    if stop_after is not None:
        while proc.poll() is None and _last_step(store) < stop_after:
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.05)
        if proc.poll() is None:
            print(f"spot_demo.py: step {_last_step(store)} logged: SIGTERM", flush=True)
            proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=TIMEOUT_S)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", help="the store to record into (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = p.parse_args(argv)
    work = tempfile.mkdtemp(prefix="mlrepro-spot-demo-")
    store = args.store or os.path.join(work, "mlrepro-runs")
    try:
        for n, stop in enumerate((*STOP_AFTER, None), start=1):
            rc = attempt(store, work, stop)
            print(f"spot_demo.py: attempt {n} exited with status {rc}", flush=True)
        from mlrepro.store.local import LocalStore

        run_id = sorted(LocalStore(store).run_ids())[-1]   # ids sort by time
        subprocess.run([sys.executable, "-m", "mlrepro", "show", run_id, "--store", store],
                       env=_env(store), check=True)
        return 0
    finally:
        if args.store is None and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        elif args.store is None:
            print(f"spot_demo.py: the store is {store}")


if __name__ == "__main__":
    sys.exit(main())
