"""TensorBoard event files under the run directory: scalars and hparams.

Written with TensorBoard's own pure-Python event writer (no TensorFlow ops, so it
works on any Keras backend and costs microseconds per value). Batch points are
buffered and handed to the run's writer thread at each epoch end, so TensorBoard
costs the training loop nothing but a list append.
TensorBoard's loader (`EventAccumulator`) reads them;
`tensorboard --logdir <store>/runs/<id>/tensorboard` shows them.
"""

from __future__ import annotations

import importlib.util
import os
import time
from typing import Any

from mlrepro.core.observers import RunObserver

TENSORBOARD_DIR = "tensorboard"


def available() -> bool:
    """The tensorboard package is installed."""
    return importlib.util.find_spec("tensorboard") is not None


class EventWriter(RunObserver):
    """One run's TensorBoard event file (a new file per attempt, like TensorBoard's own).

    A run observer: when the run ends before `fit` does (a signal, an exception), the
    event file is closed with it.
    """

    def __init__(self, logdir: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        self._event = event_pb2.Event
        self._summary = summary_pb2.Summary
        self._writer = EventFileWriter(logdir, max_queue_size=1000, flush_secs=5)

    def hparams(self, values: dict, trial_id: str) -> None:
        from tensorboard.plugins.hparams import summary_v2

        summary = summary_v2.hparams_pb(values, trial_id=trial_id)
        self._writer.add_event(self._event(wall_time=time.time(), summary=summary))
        self._writer.flush()

    def scalars(self, points: list[tuple[int, dict]]) -> None:
        """Write (step, {name: value}) points as TensorBoard scalars."""
        if not points:
            return
        now = time.time()
        Value = self._summary.Value
        for step, values in points:
            items = []
            for name, value in values.items():
                try:
                    items.append(Value(tag=name, simple_value=float(value)))
                except (TypeError, ValueError):
                    continue
            if items:
                self._writer.add_event(self._event(wall_time=now, step=int(step),
                                                   summary=self._summary(value=items)))
        self._writer.flush()

    def close(self) -> None:
        try:
            self._writer.close()
        except Exception:  # noqa: BLE001
            pass

    def finished(self, run: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"the TensorBoard event file in {self.logdir}"


def logdir_for(run: Any) -> str | None:
    """`<run dir>/tensorboard` for a local store; None for stores without a directory."""
    path = getattr(run, "path", None)
    return os.path.join(path, TENSORBOARD_DIR) if path else None
