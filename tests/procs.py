"""Child-process helpers both test lanes import (`from procs import sigkilled`): the
estimator lane has its own conftest, so a helper it shares cannot live in a conftest."""

from __future__ import annotations

import contextlib
import os
import signal


@contextlib.contextmanager
def sigkilled(proc):
    """The body waits for `proc`'s kill point; then SIGKILL it. It is reaped whatever happens."""
    try:
        yield
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
