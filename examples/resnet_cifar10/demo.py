"""`make demo`: train ResNet-20 briefly on generated CIFAR-shaped data, then show the recorded run.

About a minute on 2 CPU cores: ResNet-20 (the paper's model and recipe), 2
epochs over 2,048 synthetic 32x32 images (learnable: one smooth pattern per
class plus noise), evaluated on 409 more, recorded in ./mlrepro-runs (or
$MLREPRO_STORE). Then prints `mlrepro runs` and `mlrepro show <run>`, and the next
three commands to try. TensorFlow's start-up log (CUDA probing, oneDNN notes) goes to
a file, not the screen: its C++ logging writes before TF_CPP_MIN_LOG_LEVEL applies.
Real data: see README.md in this folder.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
TF_LOG = os.path.join(tempfile.gettempdir(), "mlrepro-demo-tensorflow.log")

DEMO_FLAGS = ["--data", "synthetic", "--synthetic-examples", "2048", "--depth", "20",
              "--epochs", "2", "--batch-size", "64", "--lr-boundaries", "1.5",
              "--log-every-n-steps", "8", "--project", "cifar10-resnet-demo"]


@contextlib.contextmanager
def _stderr_to(path: str):
    """Send file descriptor 2 (C++ logging included) to `path`; on an error, show what it got."""
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "w") as log:
        os.dup2(log.fileno(), 2)
    try:
        yield
    except BaseException:
        os.dup2(saved, 2)
        with open(path) as log:
            sys.stderr.write(log.read())
        raise
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow() -> str:
    """Import TensorFlow and probe its devices with the start-up noise sent to `TF_LOG`."""
    with _stderr_to(TF_LOG):
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    where = f"{len(gpus)} GPU(s)" if gpus else "the CPU (no GPU found)"
    return f"TensorFlow {tf.__version__} on {where}; its start-up log is in {TF_LOG}"


def mlrepro_command() -> tuple[str, str]:
    """How to run `mlrepro` from here, and what to say first if it is not on PATH yet."""
    script = os.path.join(os.path.dirname(sys.executable), "mlrepro")
    if not os.path.exists(script):  # not installed: the module still runs
        return f"{sys.executable} -m mlrepro", ""
    on_path = shutil.which("mlrepro")
    if on_path and os.path.samefile(on_path, script):
        return "mlrepro", ""
    here = os.path.relpath(script)
    script = script if here.startswith("..") else here
    activate = os.path.join(os.path.dirname(script), "activate")
    return "mlrepro", f" (after `source {activate}`, or type {script})"


def next_steps(run_id: str) -> list[str]:
    """The demo's last lines: three commands to try on the run just recorded."""
    cmd, first = mlrepro_command()
    return ["", f"Next, try{first}:",
            f"  {cmd} runs --sort val_accuracy --desc    # the runs, best first",
            f"  {cmd} report {run_id} -o report.html    # its curves on one page",
            f"  {cmd} reproduce {run_id}    # re-run it: do the numbers match?"]


def main(argv=None) -> int:
    print(quiet_tensorflow(), flush=True)
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
    code = mlrepro_cli(["show", run.id])
    print("\n".join(next_steps(run.id)), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
