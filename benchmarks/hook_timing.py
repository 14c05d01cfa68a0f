"""Time a tracker's own Keras hooks inside a real `fit`, and the steps around them.

End-to-end step times on a shared 2-core machine swing by tens of percent, so the
comparison also measures what each tracker itself spends in its callback hooks.
`install()` patches `keras.callbacks.CallbackList.on_train_begin` so that, once
`fit` has built its callback list, every non-default hook of every callback that is
not ours or Keras' own (History, ProgbarLogger) is wrapped with `perf_counter_ns`.
That also catches callbacks a tracker injects itself (MLflow autologging patches
`fit` and appends its own callbacks). Hooks are wrapped per instance and only when
overridden, so Keras' async-dispatch decision (made earlier, in the list's
constructor) is unchanged. Nested calls (a `on_train_batch_end` that calls
`on_batch_end`) are counted once.

Example:
    >>> clock = install(warmup=10)
    >>> model.fit(x, y, callbacks=[clock, tracker_callback])
    >>> clock.summary()["batch_hooks_ns"]
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

BATCH_HOOKS = ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end")
# Hook name -> what its time counts as: per step, start-up, the epoch's deferred work, finish.
KINDS = {**{name: "batch" for name in BATCH_HOOKS}, "on_train_begin": "begin",
         "on_epoch_begin": "begin", "on_epoch_end": "epoch_end", "on_train_end": "train_end"}

_state = threading.local()
_clock = None  # the StepClock of the fit in progress
_patched = False


def _depth() -> int:
    return getattr(_state, "depth", 0)


def _timed(kind: str, fn):
    def wrapper(*args, **kwargs):
        clock = _clock
        if _depth() or clock is None:
            return fn(*args, **kwargs)
        _state.depth = 1
        t0 = time.perf_counter_ns()
        try:
            return fn(*args, **kwargs)
        finally:
            elapsed = time.perf_counter_ns() - t0
            _state.depth = 0
            clock.add(kind, elapsed)
    wrapper.__wrapped__ = fn
    return wrapper


def _patch_callback_list() -> None:
    global _patched
    if _patched:
        return
    from keras.callbacks import CallbackList, History, ProgbarLogger

    original = CallbackList.on_train_begin

    def on_train_begin(self, logs=None):
        clock = _clock
        if clock is not None:
            clock.t_callbacks_ns = time.perf_counter_ns()
            for cb in self.callbacks:
                if cb is clock or isinstance(cb, (History, ProgbarLogger)):
                    continue
                clock.callback_names.append(f"{type(cb).__module__}.{type(cb).__qualname__}")
                for name, kind in KINDS.items():
                    fn = getattr(cb, name, None)
                    if fn is None or getattr(fn, "_is_default", False):  # keras' is_default()
                        continue
                    setattr(cb, name, _timed(kind, fn))
        return original(self, logs)

    CallbackList.on_train_begin = on_train_begin
    _patched = True


def install(warmup: int):
    """A fresh `StepClock` for the next `fit` (put it first in `callbacks`)."""
    global _clock
    _patch_callback_list()
    import keras

    class StepClock(keras.callbacks.Callback):
        """Timestamps each batch start; only batch-begin is overridden (keeps async dispatch)."""

        def __init__(self):
            super().__init__()
            self.warmup = warmup
            self.t_fit_ns = 0
            self.t_callbacks_ns = 0
            self.t_epoch_end_ns = 0
            self.begins: list[int] = []
            self.hook_ns = defaultdict(int)
            self.hook_calls = defaultdict(int)
            self.callback_names: list[str] = []
            self.measuring = False

        def add(self, kind: str, elapsed: int) -> None:
            if kind == "batch" and not self.measuring:
                kind = "batch_warmup"
            self.hook_ns[kind] += elapsed
            self.hook_calls[kind] += 1

        def on_train_batch_begin(self, batch, logs=None):
            self.begins.append(time.perf_counter_ns())
            if batch == self.warmup:
                self.measuring = True

        def on_epoch_end(self, epoch, logs=None):
            self.t_epoch_end_ns = time.perf_counter_ns()

        def summary(self) -> dict:
            """Step intervals after warm-up, first-step latency, and hook totals, in ns."""
            begins = self.begins
            intervals = [b - a for a, b in zip(begins[self.warmup:], begins[self.warmup + 1:])]
            intervals.sort()
            measured = len(intervals)
            return {
                "steps": len(begins), "measured_steps": measured,
                "step_mean_ns": sum(intervals) / measured if measured else None,
                "step_median_ns": intervals[measured // 2] if measured else None,
                "fit_to_callbacks_ns": self.t_callbacks_ns - self.t_fit_ns,
                "fit_to_first_step_ns": begins[0] - self.t_fit_ns if begins else None,
                "last_step_end_ns": self.t_epoch_end_ns,
                "hook_ns": dict(self.hook_ns), "hook_calls": dict(self.hook_calls),
                "callbacks": list(self.callback_names),
            }

        def start(self) -> None:
            """Call right before `fit`."""
            self.t_fit_ns = time.perf_counter_ns()

    _clock = StepClock()
    return _clock
