"""A spot job's life on this machine: train.py interrupted twice by SIGTERM, then finished.

    python examples/resnet_cifar10/spot_demo.py            # about a minute on 2 CPU cores
    python examples/resnet_cifar10/spot_demo.py --store /tmp/spot-runs --keep

It runs `train.py` (ResNet-20 on synthetic data, 12 steps an epoch) as a managed
spot job would: `MLREPRO_SPOT=1`, step checkpoints (`--checkpoint-every "4 steps"`).
Twice, just after a given step's checkpoint, it sends the training process SIGTERM —
what SageMaker sends at a spot interruption — and waits for it to exit (the run
records a checkpoint at the next step and ends the attempt as `preempted`). Then it
starts the same command again, as SageMaker restarts the job, and the third attempt
finishes the run. Last, it prints `mlrepro show` of that one run.
"""

from __future__ import annotations

import argparse
import glob
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
FLAGS = ["--data", "synthetic", "--synthetic-examples", "384", "--depth", "20",
         "--batch-size", "32", "--epochs", "3", "--log-every-n-steps", "1",
         "--checkpoint-every", "4 steps", "--export", "none", "--verbose", "0"]
STEPS_PER_EPOCH = 12
STOP_AFTER = (8, 20)   # the step checkpoints after which the two interruptions come


def _env(store: str) -> dict:
    from mlrepro import env as mlrepro_env

    out = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p), TF_CPP_MIN_LOG_LEVEL="2")
    out[mlrepro_env.SPOT.name] = "1"     # what `mlrepro launch --spot` sets in the job
    out[mlrepro_env.STORE.name] = store
    out[mlrepro_env.FLUSH_SECONDS.name] = "0.1"   # so that the demo sees each step soon
    return out


def _saved(checkpoints: str, step: int) -> bool:
    """Whether the step checkpoint at global `step` is on disk (ReproCallback's file names)."""
    epoch, batch = divmod(step, STEPS_PER_EPOCH)
    return bool(glob.glob(os.path.join(checkpoints, "**",
                                       f"*epoch-{epoch:05d}-batch-{batch:06d}*"),
                          recursive=True))


def attempt(store: str, workdir: str, stop_after: int | None) -> int:
    """One process of the job; with `stop_after`, SIGTERM soon after that step's checkpoint."""
    checkpoints = os.path.join(workdir, "checkpoints")
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "train.py"), *FLAGS,
                             "--checkpoint-dir", checkpoints], env=_env(store), cwd=workdir)
    deadline = time.monotonic() + TIMEOUT_S
    if stop_after is not None:
        while proc.poll() is None and not _saved(checkpoints, stop_after):
            if time.monotonic() > deadline:
                proc.kill()
                break
            time.sleep(0.02)
        if proc.poll() is None:
            print(f"spot_demo.py: the step {stop_after} checkpoint is written: SIGTERM",
                  flush=True)
            proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=TIMEOUT_S)


def print_attempts(manifest: dict) -> None:
    """Each attempt of the run: how it ended, where it saved, where the next one resumed."""
    print("attempts (run.json):")
    for a in manifest.get("attempts") or []:
        line = f"  {a.get('attempt')}  {a.get('status', 'running'):<9}"
        if a.get("restored_step") is not None:
            line += f"  resumed at step {a['restored_step']} ({a.get('granularity')}, " \
                    f"lost steps {a.get('lost_steps')})"
        p = a.get("preemption") or {}
        if p:
            line += f"  SIGTERM: checkpoint at step {p.get('step')} " \
                    f"{p.get('seconds')} s after the signal" if p.get("checkpoint") else \
                    f"  SIGTERM: {p.get('reason')}"
        print(line)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", help="the store to record into (default: a temporary one)")
    p.add_argument("--keep", action="store_true",
                   help="keep the temporary store and the checkpoints")
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
        print_attempts(LocalStore(store).read_manifest(run_id))
        return 0
    finally:
        if args.keep:
            print(f"spot_demo.py: the store is {store}, the checkpoints are in {work}")
        else:   # the checkpoints, and the store unless --store named one
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
