"""A training process that hears the stop signal its launcher swallowed.

SageMaker stops a job (a spot interruption, `StopTrainingJob`, `MaxRuntimeInSeconds`) by
sending SIGTERM to the container's main process. With the `sagemaker-training` toolkit
(the TensorFlow Deep Learning Containers' `train`) that process starts the entry point
as a child and neither handles nor forwards the signal
(aws/sagemaker-training-toolkit#125, #173): the toolkit dies at once and the training
process trains on, unaware, until the container is killed and everything since the
last checkpoint is lost. A small daemon thread here notices that the parent is gone
(this process was handed to another one) and sends this process SIGTERM, once: the
training process then writes its preemption checkpoint and ends as `preempted`.

Not `prctl(PR_SET_PDEATHSIG)`: Linux sends that signal each time the child is handed
to another *thread* of the dying parent, so a launcher with a few threads delivers
several SIGTERMs, and a second SIGTERM means "stop now, do not save".

It cannot help where the signal reaches nobody: a main process that is PID 1 of the
container and has no handler (the kernel drops the signal) never dies of it. There only
the periodic checkpoints (`checkpoint_every`) bound what an interruption costs.
"""

from __future__ import annotations

import os
import signal
import threading
import time

POLL_SECONDS = 0.2
_watching: list[threading.Thread] = []

__all__ = ["signal_on_parent_exit"]


def signal_on_parent_exit(signum: int = signal.SIGTERM, *,
                          poll_seconds: float = POLL_SECONDS) -> bool:
    """Send `signum` to this process, once, when its parent process exits.

    Returns True when a watch is in place (one per process; later calls keep the first),
    False when there is no parent to watch (this process is PID 1, or its parent is).

    Example:
        >>> signal_on_parent_exit() in (True, False)
        True
    """
    if _watching:
        return True
    parent = os.getppid()
    if parent <= 1 or os.getpid() == 1:
        return False
    me = os.getpid()

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os.kill(me, signum)
                return
            time.sleep(poll_seconds)

    thread = threading.Thread(target=watch, name="mlrepro-parent-exit", daemon=True)
    thread.start()
    _watching.append(thread)
    return True
