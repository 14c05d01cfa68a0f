"""Per-step cost of `mlrepro.keras.ReproCallback` over bare `model.fit`, in one process.

Two workloads from `bench_models.py`: a tiny dense net at batch 16 (where any
per-step cost shows) and ResNet-20 at batch 128 (CIFAR-10 shapes). For each, bare `fit` and `fit` with
ReproCallback logging every step (checkpoints and TensorBoard on) run
interleaved, several times. A timing callback placed first in the list times
each epoch after the first (epoch 0 traces) from its begin to its end, so the
number is per-step training time, batch hooks included; a fit's value is its
least disturbed epoch. The callback's epoch-end work (checkpoint, TensorBoard
flush) and its start/end of fit are reported apart. Inside the ReproCallback arm
the batch hook itself is timed with `perf_counter_ns` (wall, which on a loaded
machine includes waiting for the GIL on Keras' callback thread) and
`thread_time_ns` (CPU it used): on a noisy machine that is the honest cost.

Usage: python benchmarks/callback_overhead.py [--quick] [--repeats N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGETS = {"tiny": {"pct": 3.0, "us": 20.0}, "resnet20": {"pct": 1.0, "us": None}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--models", default="tiny,resnet20")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import keras

    import bench_models  # the shared workloads (benchmarks/bench_models.py)
    import mlrepro.keras

    class StepTimer(keras.callbacks.Callback):
        """Times epochs 1.. from begin to end (batch hooks of every callback included)."""

        def __init__(self):
            super().__init__()
            self.per_step = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            if epoch >= 1:  # epoch 0 traces the train function
                seconds = time.perf_counter() - self._t
                self.per_step.append(seconds / self.params.get("steps") * 1e6)

    class TimedRepro(mlrepro.keras.ReproCallback):
        """ReproCallback whose hooks are timed with perf_counter_ns."""

        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.batch_ns = 0
            self.batch_cpu_ns = 0
            self.batches = 0
            self.epoch_end_ns = []
            self.begin_ns = 0
            self.end_ns = 0

        def on_train_begin(self, logs=None):
            t = time.perf_counter_ns()
            super().on_train_begin(logs)
            self.begin_ns = time.perf_counter_ns() - t

        def on_train_batch_end(self, batch, logs=None):
            t = time.perf_counter_ns()
            c = time.thread_time_ns()
            super().on_train_batch_end(batch, logs)
            self.batch_cpu_ns += time.thread_time_ns() - c
            self.batch_ns += time.perf_counter_ns() - t
            self.batches += 1

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter_ns()
            super().on_epoch_end(epoch, logs)
            self.epoch_end_ns.append(time.perf_counter_ns() - t)

        def on_train_end(self, logs=None):
            t = time.perf_counter_ns()
            super().on_train_end(logs)
            self.end_ns = time.perf_counter_ns() - t

    work = tempfile.mkdtemp(prefix="mlrepro-bench-")
    os.environ.setdefault("MLREPRO_SPOOL", os.path.join(work, "spool"))
    os.environ.setdefault("MLREPRO_CACHE", os.path.join(work, "cache"))
    configs = {
        "tiny": dict(batch=16, epochs=2 if args.quick else 4, steps=128 if args.quick else 256,
                     repeats=3 if args.quick else 7),
        "resnet20": dict(batch=128, epochs=2, steps=3 if args.quick else 6,
                         repeats=2 if args.quick else 4),
    }
    results = []
    for name in args.models.split(","):
        cfg = configs[name]
        repeats = args.repeats or cfg["repeats"]
        model, x, y = bench_models.build(name, steps=cfg["steps"], batch_size=cfg["batch"],
                                         seed=0)
        bare, repro, hook_us, hook_cpu_us, epoch_end_ms, begin_ms, end_ms = ([] for _ in range(7))
        for r in range(repeats):
            for arm in ("bare", "repro"):
                timer = StepTimer()
                callbacks = [timer]
                cb = None
                if arm == "repro":
                    cb = TimedRepro(project=f"bench-{name}", store=os.path.join(work, "store"),
                                    log_every_n_steps=1, export=False,
                                    checkpoint=os.path.join(work, f"ckpt-{name}-{r}"))
                    callbacks.append(cb)
                model.fit(x, y, batch_size=cfg["batch"], epochs=cfg["epochs"], verbose=0,
                          callbacks=callbacks)
                per_step = min(timer.per_step)  # the least disturbed epoch of this fit
                (bare if arm == "bare" else repro).append(per_step)
                if cb is not None:
                    hook_us.append(cb.batch_ns / max(cb.batches, 1) / 1e3)
                    hook_cpu_us.append(cb.batch_cpu_ns / max(cb.batches, 1) / 1e3)
                    epoch_end_ms.append(statistics.median(cb.epoch_end_ns) / 1e6)
                    begin_ms.append(cb.begin_ns / 1e6)
                    end_ms.append(cb.end_ns / 1e6)
        b_med, c_med = statistics.median(bare), statistics.median(repro)
        row = {
            "model": name, "batch": cfg["batch"], "steps_per_epoch": cfg["steps"],
            "repeats": repeats, "bare_us_per_step_median": b_med,
            "repro_us_per_step_median": c_med, "overhead_us_median": c_med - b_med,
            "overhead_pct_median": (c_med / b_med - 1) * 100,
            "ratio_of_minima": min(repro) / min(bare),
            "hook_us_per_step_median": statistics.median(hook_us),
            "hook_cpu_us_per_step_median": statistics.median(hook_cpu_us),
            "hook_pct_of_bare_step": statistics.median(hook_us) / b_med * 100,
            "epoch_end_ms_median": statistics.median(epoch_end_ms),
            "train_begin_ms_median": statistics.median(begin_ms),
            "train_end_ms_median": statistics.median(end_ms),
            "bare_all": bare, "repro_all": repro,
        }
        results.append(row)
        print_row(row)
    print()
    print_table(results)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


def print_row(row: dict) -> None:
    print(f"[{row['model']}] bare {['%.0f' % v for v in row['bare_all']]} us/step, "
          f"repro {['%.0f' % v for v in row['repro_all']]} us/step", file=sys.stderr)


def print_table(results: list[dict]) -> None:
    head = ("model", "batch", "bare us/step", "repro us/step", "e2e overhead",
            "min ratio", "hook us/step (cpu)", "hook %", "target", "epoch-end ms",
            "begin/end ms")
    rows = []
    for r in results:
        t = TARGETS.get(r["model"], {})
        target = f"<= {t['pct']:.0f}%" + (f" (<= {t['us']:.0f} us)" if t.get("us") else "")
        rows.append((r["model"], str(r["batch"]), f"{r['bare_us_per_step_median']:.0f}",
                     f"{r['repro_us_per_step_median']:.0f}",
                     f"{r['overhead_us_median']:+.1f} us ({r['overhead_pct_median']:+.2f}%)",
                     f"{r['ratio_of_minima']:.3f}",
                     f"{r['hook_us_per_step_median']:.2f} ({r['hook_cpu_us_per_step_median']:.2f})",
                     f"{r['hook_pct_of_bare_step']:.3f}%", target,
                     f"{r['epoch_end_ms_median']:.1f}",
                     f"{r['train_begin_ms_median']:.0f}/{r['train_end_ms_median']:.0f}"))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = " | ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("-+-".join("-" * w for w in widths))
    for row in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(row, widths)))


if __name__ == "__main__":
    sys.exit(main())
