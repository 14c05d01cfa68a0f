"""What spot-ready checkpoints cost: SIGTERM to checkpoint written, and per-step cost of checkpoint_every.

Two measurements on the bundled example's ResNet-20 (examples/resnet_cifar10/model.py,
option A, 0.27 M parameters, SGD with momentum, CIFAR-10 shapes, random data):

- **sigterm**: a training process (`--worker`) trains with
  `ReproCallback(checkpoint_every="epoch")`; after a few steps the bench sends it
  SIGTERM at a random point inside a step, as SageMaker does on a spot interruption.
  Reported: seconds from the signal to the checkpoint on disk (the newest file's
  mtime in the checkpoint directory) and to the process's exit, its exit status, and
  the step time, since the checkpoint waits for the step in flight to end.
- **per step**: in one process, interleaved over repeats, the same `fit` with no
  callback, with ReproCallback without checkpoints, with epoch checkpoints, and with
  `checkpoint_every="N steps"` for each N. Per-step time is the wall time from the
  first step after the warm-up to the end of `fit` (every save included, and the
  run's finish, the same for every ReproCallback arm), over the steps in between; the
  ratios are the median of each arm over the median of bare `fit` and over the
  median of ReproCallback without checkpoints (what the checkpoints alone add). The time inside ReproCallback's batch-begin hook (the step
  boundary where a due checkpoint is written) at the steps where one falls due, and
  inside its epoch-end hook for epoch checkpoints, is reported beside it: the stall of
  one save.

Usage: python benchmarks/checkpoint_bench.py [--quick] [--repeats N] [--every 1,10,100]
       [--json OUT]. `--quick` uses a tiny dense model and a few steps: it checks the
       harness, its numbers are not results.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
EXAMPLE = os.path.join(REPO, "examples", "resnet_cifar10")
sys.path.insert(0, HERE)

import table  # noqa: E402

SIGTERM_TARGET_S = 30.0   # ReproCallback's default preemption_timeout; SageMaker allows 120 s
WORKER_TIMEOUT_S = 600


def add_arguments(parser) -> None:
    parser.add_argument("--repeats", type=int, help="per-step repeats (default 3; quick 1)")
    parser.add_argument("--sigterm-repeats", type=int, help="SIGTERM repeats (default 3)")
    parser.add_argument("--every", default="1,10,100",
                        help="checkpoint_every step counts to compare (comma list)")
    parser.add_argument("--steps", type=int,
                        help="steps per fit (default 110: 10 warm-up + 100 measured)")
    parser.add_argument("--batch-size", type=int, default=32,
                        help="per-step arms' batch (the SIGTERM arm uses the example's 128)")
    parser.add_argument("--skip", default="", help="sigterm and/or steps")


# -- the workload ----------------------------------------------------------------------------

def build(workload: str, steps: int, batch_size: int, seed: int = 0):
    """A compiled model and `steps` batches of random data: ResNet-20 or (quick) a tiny net."""
    import keras
    import numpy as np

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    if workload == "resnet20":
        sys.path.insert(0, EXAMPLE)
        try:
            import model as resnet
        finally:
            sys.path.remove(EXAMPLE)
        net = resnet.build_resnet(20)
        x = rng.standard_normal((steps * batch_size, 32, 32, 3), dtype=np.float32)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    else:
        net = keras.Sequential([keras.Input((32,)), keras.layers.Dense(64, activation="relu"),
                                keras.layers.Dense(10)])
        x = rng.standard_normal((steps * batch_size, 32), dtype=np.float32)
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    y = rng.integers(0, 10, size=(steps * batch_size,), dtype=np.int64)
    net.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss=loss)
    return net, x, y


# -- SIGTERM -> checkpoint -------------------------------------------------------------------

def sigterm_worker(spec: dict) -> int:
    """The process the bench interrupts: trains, says when it is past the warm-up."""
    import keras

    import mlrepro.keras

    net, x, y = build(spec["workload"], spec["steps"], spec["batch"])
    marker = spec["marker"]

    class Say(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == spec["warmup"]:
                with open(marker + ".tmp", "w") as fh:
                    json.dump({"pid": os.getpid(), "time": time.time(),
                               "step_s": (time.time() - self.t) / max(batch - 1, 1)}, fh)
                os.replace(marker + ".tmp", marker)
            if batch == 1:
                self.t = time.time()

    repro = mlrepro.keras.ReproCallback(
        project="bench-sigterm", store=spec["store"], checkpoint=spec["checkpoint"],
        checkpoint_every="epoch", log_every_n_steps=1, export=False, tensorboard=False)
    net.fit(x, y, batch_size=spec["batch"], epochs=1, verbose=0, callbacks=[repro, Say()])
    return 0


def _newest_mtime(folder: str) -> float | None:
    newest = None
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                m = os.stat(os.path.join(root, name)).st_mtime
            except OSError:
                continue
            newest = m if newest is None else max(newest, m)
    return newest


def _preemption_events(store: str) -> list[dict]:
    """The run's events that name a checkpoint written at the signal (15a's event), if any."""
    out = []
    for root, _dirs, files in os.walk(os.path.join(store, "runs")):
        if "events.jsonl" in files:
            with open(os.path.join(root, "events.jsonl"), encoding="utf-8") as fh:
                for line in fh:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue
                    if "preempt" in json.dumps(event).lower() and \
                            "checkpoint" in json.dumps(event).lower():
                        out.append(event)
    return out


def _status(store: str) -> str | None:
    for root, _dirs, files in os.walk(os.path.join(store, "runs")):
        if "run.json" in files:
            with open(os.path.join(root, "run.json"), encoding="utf-8") as fh:
                return json.load(fh).get("status")
    return None


def sigterm_once(workload: str, batch: int, steps: int, warmup: int, work: str,
                 rng: random.Random) -> dict:
    """One interrupted training process; seconds from the signal to the checkpoint and the exit."""
    folder = tempfile.mkdtemp(prefix="sigterm-", dir=work)
    spec = {"workload": workload, "batch": batch, "steps": steps, "warmup": warmup,
            "marker": os.path.join(folder, "ready.json"), "store": os.path.join(folder, "store"),
            "checkpoint": os.path.join(folder, "ckpt")}
    from mlrepro import env as mlrepro_env

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    env[mlrepro_env.SPOT.name] = "1"   # a spot job: SIGTERM is a preemption
    proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker",
                             json.dumps(spec)], env=env, cwd=folder,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + WORKER_TIMEOUT_S
    while not os.path.exists(spec["marker"]):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"worker ended before its warm-up: {proc.stderr.read()[-800:]}")
        time.sleep(0.01)
    with open(spec["marker"]) as fh:
        ready = json.load(fh)
    before = _newest_mtime(spec["checkpoint"]) or 0.0
    time.sleep(rng.uniform(0, ready["step_s"]))     # somewhere inside a step
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    exited = time.time()
    newest = _newest_mtime(spec["checkpoint"])
    written = newest - sent if newest and newest > max(before, sent) else None
    events = _preemption_events(spec["store"])
    status = _status(spec["store"])
    stderr = proc.stderr.read()
    shutil.rmtree(folder, ignore_errors=True)
    return {"signal_to_checkpoint_s": written, "signal_to_exit_s": exited - sent,
            "exit_status": rc, "step_s": ready["step_s"], "run_status": status,
            "events": events, "stderr_tail": stderr[-400:] if rc not in (-15, 143) else ""}


# -- per-step cost -----------------------------------------------------------------------------

def per_step(workload: str, batch: int, steps: int, warmup: int, every: list[int],
             repeats: int, work: str, log) -> dict:
    """Interleaved arms in this process: median per-step seconds and the stall at a save."""
    import keras

    import mlrepro.keras

    class Clock(keras.callbacks.Callback):
        """Placed last: from the warm-up step's begin to the end of `fit` (after every save)."""

        def on_train_batch_begin(self, batch, logs=None):
            if batch == warmup:
                self.t = time.perf_counter()

        def on_train_end(self, logs=None):
            self.seconds = (time.perf_counter() - self.t) / (steps - warmup)

    class Timed(mlrepro.keras.ReproCallback):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.begin_s: dict[int, float] = {}
            self.epoch_end_s: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):   # a due save happens here
            t = time.perf_counter()
            super().on_train_batch_begin(batch, logs)
            self.begin_s[batch] = time.perf_counter() - t

        def on_epoch_end(self, epoch, logs=None):
            t = time.perf_counter()
            super().on_epoch_end(epoch, logs)
            self.epoch_end_s.append(time.perf_counter() - t)

    arms = ["bare", "no checkpoints", "epoch"] + [f"{n} steps" for n in every]
    net, x, y = build(workload, steps, batch)
    net.fit(x[:batch * 3], y[:batch * 3], batch_size=batch, epochs=1, verbose=0)  # trace once
    seconds = {a: [] for a in arms}
    stall = {a: [] for a in arms}
    unsupported = {}
    for r in range(repeats):
        for arm in arms:
            if arm in unsupported:
                continue
            clock = Clock()
            callbacks = []
            cb = None
            if arm != "bare":
                kwargs = dict(project="bench-ckpt", store=os.path.join(work, "store"),
                              log_every_n_steps=1, export=False, tensorboard=False)
                if arm == "no checkpoints":
                    kwargs["checkpoint"] = False
                else:
                    kwargs.update(checkpoint=os.path.join(work, f"ckpt-{r}-{arm}"),
                                  checkpoint_every=arm)
                try:
                    cb = Timed(**kwargs)
                except Exception as exc:  # noqa: BLE001 - an mlrepro without step checkpoints
                    unsupported[arm] = f"{type(exc).__name__}: {exc}"
                    continue
                callbacks.append(cb)
            net.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=callbacks + [clock])
            seconds[arm].append(clock.seconds)
            if cb is not None and arm.endswith(" steps"):
                n = int(arm.split()[0])
                due = [s for b, s in cb.begin_s.items() if b and b % n == 0]  # b steps done
                if due:
                    stall[arm].append(statistics.median(due))
            elif cb is not None and arm == "epoch" and cb.epoch_end_s:
                stall[arm].append(statistics.median(cb.epoch_end_s))
            log(f"[per step] repeat {r} {arm}: {clock.seconds * 1e3:.1f} ms/step")
    return {"arms": arms, "seconds": seconds, "stall": stall, "unsupported": unsupported}


# -- the bench -------------------------------------------------------------------------------

def run(args, log=lambda m: print(m, file=sys.stderr, flush=True)):
    workload = "tiny" if args.quick else "resnet20"
    every = [int(v) for v in args.every.split(",") if v.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    work = tempfile.mkdtemp(prefix="mlrepro-ckpt-bench-")
    os.environ.setdefault("MLREPRO_SPOOL", os.path.join(work, "spool"))
    os.environ.setdefault("MLREPRO_CACHE", os.path.join(work, "cache"))
    rows: list[table.Row] = []
    raw: dict = {"workload": workload}
    text = []
    try:
        if "sigterm" not in skip:
            repeats = args.sigterm_repeats or (1 if args.quick else 3)
            rng = random.Random(0)
            batch = 16 if args.quick else 128
            samples = [sigterm_once(workload, batch, steps=400 if args.quick else 40,
                                    warmup=20 if args.quick else 4, work=work, rng=rng)
                       for _ in range(repeats)]
            raw["sigterm"] = samples
            written = [s["signal_to_checkpoint_s"] for s in samples
                       if s["signal_to_checkpoint_s"] is not None]
            exits = [s["signal_to_exit_s"] for s in samples]
            statuses = sorted({str(s["exit_status"]) for s in samples})
            name = f"{workload} b{batch}"
            rows.append(table.Row(
                f"SIGTERM -> checkpoint written ({name})",
                f"{statistics.median(written):.2f} s" if written else
                f"none written ({len(samples)} tries)",
                f"step {statistics.median(s['step_s'] for s in samples):.2f} s",
                f"<= {SIGTERM_TARGET_S:.0f} s", bool(written) and len(written) == len(samples)
                and max(written) <= SIGTERM_TARGET_S))
            rows.append(table.Row(f"SIGTERM -> process exit ({name})",
                                  f"{statistics.median(exits):.2f} s",
                                  f"exit {','.join(statuses)}", f"<= {SIGTERM_TARGET_S:.0f} s",
                                  max(exits) <= SIGTERM_TARGET_S
                                  and statuses in (["-15"], ["143"])))
            text.append(f"SIGTERM ({name}, {repeats} tries, signal at a random point of a "
                        "step after the warm-up):")
            for s in samples:
                w = s["signal_to_checkpoint_s"]
                text.append(f"  checkpoint {'-' if w is None else f'{w:.3f} s'}, exit "
                            f"{s['signal_to_exit_s']:.3f} s (status {s['exit_status']}, run "
                            f"{s['run_status']}), step {s['step_s']:.3f} s"
                            + (f"; stderr: {s['stderr_tail']!r}" if s["stderr_tail"] else ""))
        if "steps" not in skip:
            repeats = args.repeats or (1 if args.quick else 3)
            steps = args.steps or (60 if args.quick else 110)
            batch = 16 if args.quick else args.batch_size
            warmup = 10
            found = per_step(workload, batch, steps, warmup, every, repeats, work, log)
            raw["per_step"] = found
            bare = statistics.median(found["seconds"]["bare"])
            plain = statistics.median(found["seconds"]["no checkpoints"] or [0]) or None
            name = f"{workload} b{batch}"
            text.append(f"\nper step ({name}, {steps - warmup} measured steps after {warmup} "
                        f"warm-up, {repeats} interleaved repeats; ms per step each repeat):")
            for arm in found["arms"]:
                if arm in found["unsupported"]:
                    rows.append(table.Row(f"per step: {arm} ({name})",
                                          "not supported by this mlrepro"))
                    text.append(f"  {arm}: {found['unsupported'][arm]}")
                    continue
                values = found["seconds"][arm]
                med = statistics.median(values)
                stall = found["stall"][arm]
                ratio = "-" if arm == "bare" else f"{med / bare:.3f}x bare"
                if plain and arm not in ("bare", "no checkpoints"):
                    ratio += f", {med / plain:.3f}x no ckpt"
                rows.append(table.Row(f"per step: {arm} ({name})", f"{med * 1e3:.1f} ms", ratio))
                if stall:
                    rows.append(table.Row(f"  one save at a due step: {arm}",
                                          f"{statistics.median(stall) * 1e3:.0f} ms"))
                text.append(f"  {arm}: {', '.join(f'{v * 1e3:.1f}' for v in values)}"
                            + (f"; hook at a due save {statistics.median(stall) * 1e3:.0f} ms"
                               if stall else ""))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return rows, "\n".join(text), raw


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        return sigterm_worker(json.loads(argv[1]))
    return table.script_main(run, add_arguments, __doc__,
                             "a tiny model and a few steps: checks the harness", argv)


if __name__ == "__main__":
    sys.exit(main())
