"""One tracker, one repeat, in a process of its own: trains each workload once and prints JSON.

A process per tracker keeps trackers from seeing each other (MLflow autologging
patches `fit` for the whole process). `peers.py` launches these interleaved.

Run: `python benchmarks/peer_worker.py --tracker mlrepro --workdir DIR
      --workload tiny:16:500:50 --workload resnet20:128:20:3`
(workload = name:batch_size:measured_steps:warmup_steps). The last stdout line is the JSON result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import trackers  # noqa: E402


def parse_workload(text: str) -> dict:
    """`name:batch:steps:warmup` -> dict."""
    name, batch, steps, warmup = text.split(":")
    return {"workload": name, "batch_size": int(batch), "steps": int(steps),
            "warmup": int(warmup)}


def tree_bytes(path: str) -> int:
    """Bytes of every regular file under `path` (what the tracker left on disk)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            total += st.st_size
    return total


def run_workload(tracker, spec: dict, workdir: str, seed: int) -> dict:
    import bench_models
    import hook_timing

    name = spec["workload"]
    total_steps = spec["steps"] + spec["warmup"]
    model, x, y = bench_models.build(name, steps=total_steps, batch_size=spec["batch_size"],
                                     seed=seed)
    run_dir = os.path.join(workdir, name)
    os.makedirs(run_dir, exist_ok=True)
    tracker.prepare(run_dir)
    baseline_bytes = tree_bytes(run_dir)
    params = {"workload": name, "batch_size": spec["batch_size"], "steps": total_steps,
              "seed": seed}
    clock = hook_timing.install(warmup=spec["warmup"])
    t0 = time.perf_counter_ns()
    callbacks = tracker.start(run_dir, f"{name}-{tracker.name}", params)
    setup_ns = time.perf_counter_ns() - t0
    clock.start()
    model.fit(x, y, batch_size=spec["batch_size"], epochs=1, shuffle=False, verbose=0,
              callbacks=[clock] + list(callbacks))
    t_fit_done = time.perf_counter_ns()
    tracker.finish()
    t_done = time.perf_counter_ns()
    out = clock.summary()
    last = out.pop("last_step_end_ns")
    tracker.settle(run_dir)
    out.update({"workload": name, "batch_size": spec["batch_size"], "setup_ns": setup_ns,
                "fit_return_ns": t_fit_done - last, "finish_ns": t_done - last,
                "record_bytes": tree_bytes(run_dir) - baseline_bytes})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracker", required=True, choices=sorted(trackers.TRACKERS))
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--workload", action="append", required=True, type=parse_workload)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mlflow-backend", default="sqlite", choices=trackers.MLFLOW_BACKENDS)
    parser.add_argument("--with-models", action="store_true",
                        help="let mlrepro and MLflow save checkpoints and models (their defaults)")
    parser.add_argument("--out", help="also write the JSON result to this file")
    parser.add_argument("--keep", action="store_true", help="keep the tracker's files")
    args = parser.parse_args(argv)
    result = {"tracker": args.tracker, "workloads": [], "pid": os.getpid()}
    tracker = None
    try:
        t0 = time.perf_counter_ns()
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        result["tf_import_ns"] = time.perf_counter_ns() - t0
        tracker = trackers.make(args.tracker, mlflow_backend=args.mlflow_backend,
                                with_models=args.with_models)
        t0 = time.perf_counter_ns()
        tracker.load()
        result["import_ns"] = time.perf_counter_ns() - t0
        result["version"] = tracker.version()
        for spec in args.workload:
            result["workloads"].append(run_workload(tracker, spec, args.workdir, args.seed))
    except Exception as exc:  # reported in the table, not a crash of the whole benchmark
        result["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        try:  # close the tracker's run before its files go
            if tracker is not None:
                tracker.finish()
        except Exception:
            pass
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    text = json.dumps(result)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as fh:
            fh.write(text)
    sys.stdout.flush()
    print("\n" + text, flush=True)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
