"""A managed spot interruption through the real `sagemaker-training` toolkit, and the restart.

SageMaker stops a job by sending SIGTERM to the container's main process: with the
TensorFlow Deep Learning Containers that is the toolkit's `train`, which starts the
entry point as a child and neither handles nor forwards the signal (its source has no
signal handler; aws/sagemaker-training-toolkit#125, #173): the toolkit dies at once and
its child would train on. On SageMaker a run watches its launcher and sends itself
SIGTERM once that process is gone (`mlrepro.runtime.parent_exit`), so the training process
hears it, writes a checkpoint at the next step and ends as `preempted`. The test sends the signal the way SageMaker does,
to the toolkit, then runs the toolkit again on the same tree with its
`checkpointconfig.json` (as a spot restart does after restoring the checkpoint
directory): the same run continues from the checkpointed step and ends with the same
weights as a toolkit job that was never interrupted.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import child_env
from test_runtime import make_sagemaker_tree

from mlrepro.store.local import LocalStore

JOB_TIMEOUT = 300
STEPS_PER_EPOCH = 12          # 96 examples, batch 8
EPOCHS = 2
HEAR_S = 20                   # the gate's fallback release, long after the orphan should hear
STOP_AT_STEP = 17             # the gate holds the first attempt after this step (epoch 1)

ENTRY = textwrap.dedent('''
    """Spot entry point: a tiny model, step checkpoints, and a gate the test interrupts at."""
    import hashlib
    import json
    import os
    import time

    import numpy as np

    import mlrepro.runtime

    rt = mlrepro.runtime.detect()
    hp = rt.hyperparameters
    data = np.load(os.path.join(rt.channels["training"], "train.npz"))

    import keras

    from mlrepro.core import lifecycle
    from mlrepro.keras import ReproCallback


    class Gate(keras.callbacks.Callback):
        """Before the step after GATE_AT steps: say so, hold the loop until the test releases it.

        A batch-begin hook runs on the training loop's own thread (Keras 3 may run
        batch-end hooks on a callback thread), between two steps.
        """

        def __init__(self, at, folder):
            super().__init__()
            self.at, self.folder, self.steps = at, folder, 0

        def on_train_batch_begin(self, batch, logs=None):
            self.steps += 1
            if self.steps != self.at + 1:
                return
            with open(os.path.join(self.folder, "reached.json"), "w") as fh:
                json.dump({"pid": os.getpid(), "steps_done": self.at}, fh)
            deadline = time.monotonic() + 60   # until the SIGTERM is in mlrepro's hands
            while time.monotonic() < deadline and lifecycle.deferred() is None and \
                    not os.path.exists(os.path.join(self.folder, "release")):
                time.sleep(0.02)


    repro = ReproCallback(project="spot-toolkit", seed=0, deterministic=True,
                          checkpoint_every=f"{hp['checkpoint-steps']} steps",
                          log_every_n_steps=1, export=False, tensorboard=False)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(8, activation="relu"),
                              keras.layers.Dropout(0.25), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(hp["lr"]), loss="mse")
    callbacks = [repro]
    if os.environ.get("GATE_AT"):   # first: ReproCallback then meets the same step boundary
        callbacks.insert(0, Gate(int(os.environ["GATE_AT"]), os.environ["GATE_DIR"]))
    model.fit(data["x"], data["y"], epochs=hp["epochs"], batch_size=8, shuffle=True,
              verbose=0, callbacks=callbacks)
    digest = hashlib.sha256(b"".join(w.tobytes() for w in model.get_weights())).hexdigest()
    with open(os.path.join(rt.output_dir, "weights.json"), "w") as fh:
        json.dump({"run_id": repro.run.id, "weights_sha256": digest}, fh)
''')


def _toolkit_train() -> str:
    exe = os.path.join(os.path.dirname(sys.executable), "train")
    if not os.path.exists(exe):
        pytest.skip("the sagemaker-training toolkit's `train` command is not installed")
    return exe


def _tree(tmp_path, name: str) -> str:
    """A job's /opt/ml tree: one host (this machine), checkpoints and a spot job config."""
    import numpy as np

    source = tmp_path / "code"
    if not source.exists():
        source.mkdir()
        (source / "entry.py").write_text(ENTRY)
    host = socket.gethostname()   # the toolkit waits until every host name resolves
    hps = {"epochs": str(EPOCHS), "lr": "0.01", "checkpoint-steps": "4",
           "sagemaker_program": "\"entry.py\"",
           "sagemaker_submit_directory": json.dumps(str(source)),
           "sagemaker_container_log_level": "20"}
    base = make_sagemaker_tree(
        tmp_path / name, hosts=(host,), current_host=host, instance_type="ml.m5.large",
        hyperparameters=hps, checkpoint_local_path="/opt/ml/checkpoints",
        job_config={"TrainingJobName": f"spot-{name}", "EnableManagedSpotTraining": True})
    rng = np.random.RandomState(0)
    x = rng.rand(STEPS_PER_EPOCH * 8, 3).astype("float32")
    np.savez(os.path.join(base, "input", "data", "training", "train.npz"), x=x,
             y=x.sum(axis=1, keepdims=True))
    return base


def _env(base: str, **extra) -> dict:
    env = child_env(SAGEMAKER_BASE_DIR=base, TF_CPP_MIN_LOG_LEVEL="2", AWS_REGION="us-east-1",
                    **extra)
    for name in ("MLREPRO_STORE", "MLREPRO_SAGEMAKER_BASE_DIR", "TF_CONFIG", "MLREPRO_SPOT",
                 "TRAINING_JOB_NAME"):
        env.pop(name, None)   # the job's own files say what it is (spot included)
    return env


def _toolkit(base: str, log_name: str, **extra) -> subprocess.Popen:
    log = open(os.path.join(os.path.dirname(base), log_name), "w")
    return subprocess.Popen([_toolkit_train()], env=_env(base, **extra), cwd=base, stdout=log,
                            stderr=subprocess.STDOUT)


def _log(base: str, log_name: str) -> str:
    with open(os.path.join(os.path.dirname(base), log_name)) as fh:
        return fh.read()


def _finish(proc: subprocess.Popen, base: str, log_name: str) -> str:
    try:
        proc.wait(timeout=JOB_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return _log(base, log_name)


def _wait_for(path: str, proc: subprocess.Popen, base: str, log_name: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT
    while time.monotonic() < deadline:
        if os.path.exists(path):
            time.sleep(0.05)   # written whole by now (a few bytes)
            with open(path) as fh:
                return json.load(fh)
        if proc.poll() is not None:
            pytest.fail(f"the toolkit ended before the gate:\n{_log(base, log_name)[-4000:]}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the gate was not reached in {JOB_TIMEOUT} s")


def _gone(pid: int, timeout: float) -> bool:
    """True once `pid` has exited (reaped, or a zombie of whoever adopted it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except (FileNotFoundError, ProcessLookupError):
            return True
        time.sleep(0.05)
    return False


def _attempt_steps(root: str, run_id: str, name: str) -> tuple[list[int], list[int]]:
    """The steps of `name` each attempt logged, as written (before any supersession)."""
    from mlrepro import record

    folder = os.path.join(root, "runs", run_id)
    with open(os.path.join(folder, "metrics.names"), "rb") as fh:
        names = record.decode_names(fh.read())
    with open(os.path.join(folder, "metrics.bin"), "rb") as fh:
        raw = record.raw_points(fh.read(), names)
    by_attempt: dict[int, list[int]] = {}
    for step, _value, _wall, _epoch, point_name, attempt in raw:
        if point_name == name:
            by_attempt.setdefault(attempt, []).append(step)
    assert sorted(by_attempt) == [0, 1], by_attempt
    return sorted(by_attempt[0]), sorted(by_attempt[1])


def _weights(base: str) -> dict:
    with open(os.path.join(base, "output", "data", "weights.json")) as fh:
        return json.load(fh)


@pytest.mark.slow
def test_sigterm_to_the_toolkit_checkpoints_and_a_rerun_continues_to_the_same_weights(
        tmp_path):
    _toolkit_train()
    # An uninterrupted job, the reference (started first: the two share the 2 cores).
    straight_base = _tree(tmp_path, "straight")
    straight = _toolkit(straight_base, "straight.log")
    # The job that SageMaker interrupts: the gate holds it at STOP_AT_STEP.
    base = _tree(tmp_path, "spot")
    gate = tmp_path / "gate"
    gate.mkdir()
    first = _toolkit(base, "first.log", GATE_AT=str(STOP_AT_STEP), GATE_DIR=str(gate))
    reached = _wait_for(str(gate / "reached.json"), first, base, "first.log")
    signalled = time.monotonic()
    first.send_signal(signal.SIGTERM)            # SageMaker's stop: to the main process
    first.wait(timeout=30)
    # The toolkit forwards nothing and dies of the signal at once...
    assert first.returncode == -signal.SIGTERM, _log(base, "first.log")[-3000:]
    # ...and the training process hears it anyway (the gate lets go once mlrepro holds the
    # signal), checkpoints at that step boundary and ends, well within the bound.
    if not _gone(reached["pid"], timeout=HEAR_S):
        (gate / "release").write_text("")     # never heard: the assertions below say so
    assert _gone(reached["pid"], timeout=60), "the training process outlived its toolkit"
    ended = time.monotonic() - signalled
    log = _finish(straight, straight_base, "straight.log")
    assert straight.returncode == 0, log[-4000:]

    store = LocalStore(os.path.join(base, "checkpoints", "mlrepro-runs"))
    (run_id,) = store.run_ids()
    interrupted = store.read_manifest(run_id)
    assert interrupted["status"] == "preempted", interrupted.get("error")
    assert interrupted["runtime"]["spot"] is True
    assert not os.path.exists(os.path.join(base, "output", "data", "weights.json"))

    # The spot restart: the same tree (checkpoint dir restored), the toolkit again.
    second = _toolkit(base, "second.log")
    log = _finish(second, base, "second.log")
    assert second.returncode == 0, log[-4000:]
    assert "Reporting training SUCCESS" in log

    m = store.read_manifest(run_id)
    assert store.run_ids() == [run_id]
    assert m["status"] == "finished"
    assert [a.get("status") for a in m["attempts"]] == ["preempted", "finished"]
    resume = m.get("resume") or {}
    assert (resume.get("granularity"), resume.get("lost_steps")) == ("step", 0), resume
    # The checkpoint was written at the step the signal found, soon after it.
    preemption = m["attempts"][0].get("preemption") or {}
    assert preemption.get("checkpoint") and preemption.get("step") == STOP_AT_STEP, preemption
    assert preemption["seconds"] < 30                  # the default preemption_timeout
    # Continued from that step: no batch trained twice, none left out.
    first_steps, second_steps = _attempt_steps(store.root, run_id, "batch/loss")
    assert first_steps[-1] == STOP_AT_STEP and second_steps[0] == STOP_AT_STEP + 1, \
        (first_steps, second_steps)
    assert first_steps + second_steps == list(range(1, STEPS_PER_EPOCH * EPOCHS + 1))
    assert _weights(base)["run_id"] == run_id
    assert _weights(base)["weights_sha256"] == _weights(straight_base)["weights_sha256"]
    print(f"SIGTERM to the toolkit -> checkpoint {preemption['seconds']:.3f} s, training "
          f"process gone {ended:.2f} s; attempt 2 began at step {second_steps[0]}")


CHILD = textwrap.dedent('''
    import os, signal, sys, time
    from mlrepro.runtime.parent_exit import signal_on_parent_exit
    heard = sys.argv[1]
    signal.signal(signal.SIGUSR1, lambda *_: (open(heard, "w").write("heard"), os._exit(0)))
    print(signal_on_parent_exit(signal.SIGUSR1), flush=True)
    time.sleep(30)
''')
PARENT = textwrap.dedent('''
    import subprocess, sys
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    print(child.pid, child.stdout.readline().strip(), flush=True)
    # exits here, leaving the child running: what the toolkit does on SIGTERM
''')


def test_a_process_hears_when_its_launcher_dies(tmp_path):
    heard = tmp_path / "heard"
    out = subprocess.run([sys.executable, "-c", PARENT, CHILD, str(heard)], env=child_env(),
                         capture_output=True, text=True, timeout=60)
    pid, armed = out.stdout.split()
    assert armed == "True", out.stderr
    assert _gone(int(pid), timeout=20)
    assert heard.read_text() == "heard"


def test_without_the_request_an_orphan_trains_on(tmp_path):
    heard = tmp_path / "heard"
    child = CHILD.replace("signal_on_parent_exit(signal.SIGUSR1)", "'not asked'")
    out = subprocess.run([sys.executable, "-c", PARENT, child, str(heard)], env=child_env(),
                         capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.split()[0])
    try:
        assert not _gone(pid, timeout=1.5) and not heard.exists()
    finally:
        os.kill(pid, signal.SIGKILL)


WATCH = textwrap.dedent('''
    import sys, threading
    import mlrepro
    from mlrepro.runtime import detect
    rt = detect(environ={"TRAINING_JOB_NAME": "j"} if sys.argv[1] == "sagemaker" else {},
                base_dir=sys.argv[2], argv=["train.py"])
    run = mlrepro.start_run(project="watch", store=sys.argv[3], capture=False, runtime=rt)
    print(rt.kind, any(t.name == "mlrepro-parent-exit" for t in threading.enumerate()))
    run.finish()
''')


@pytest.mark.parametrize("kind", ["sagemaker", "local"])
def test_only_a_run_on_sagemaker_watches_its_launcher(tmp_path, kind):
    out = subprocess.run([sys.executable, "-c", WATCH, kind, str(tmp_path / "none"),
                          str(tmp_path / "store")], env=child_env(), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [kind, str(kind == "sagemaker")]
