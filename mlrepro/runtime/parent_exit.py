"""A training process that hears the stop signal its launcher swallowed.

SageMaker stops a job (a spot interruption, `StopTrainingJob`, `MaxRuntimeInSeconds`) by
sending SIGTERM to the container's main process. With the `sagemaker-training` toolkit
(the TensorFlow Deep Learning Containers' `train`) that process starts the entry point
as a child and neither handles nor forwards the signal
(aws/sagemaker-training-toolkit#125, #173): the toolkit dies at once and the training
process trains on, unaware, until the container is killed and everything since the
last checkpoint is lost. Asking Linux to send this process SIGTERM when its parent
exits (`prctl(PR_SET_PDEATHSIG)`) turns the launcher's death into the signal the
training process needed: it then writes its preemption checkpoint and ends as
`preempted`.

It cannot help where the signal reaches nobody: a main process that is PID 1 of the
container and has no handler (the kernel drops the signal) never dies of it. There only
the periodic checkpoints (`checkpoint_every`) bound what an interruption costs.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1   # <linux/prctl.h>

__all__ = ["signal_on_parent_exit"]


def signal_on_parent_exit(signum: int = signal.SIGTERM) -> bool:
    """Have the kernel send `signum` to this process when its parent exits (Linux only).

    Returns True when the request is in place. If the parent is already gone by the
    time it is, the signal is sent at once (the kernel would not send it any more).

    Example:
        >>> signal_on_parent_exit() in (True, False)
        True
    """
    if not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # it exited between the two calls
        os.kill(os.getpid(), signum)
    return True
