"""How often `ReproCallback` checkpoints, and how long a SIGTERM may wait for a step boundary.

`checkpoint_every` takes three kinds of value, parsed here once (pure, no Keras):

- `"epoch"` or an int N: at the end of every N-th epoch;
- `"N steps"` (also `"Nsteps"`, `"1 step"`): after every N optimizer steps;
- a duration, `"30s"`, `"10min"`, `"1h"`, `"90 s"`, `"1.5h"`: at the first step
  boundary after that much wall time since the last checkpoint.

Example:
    >>> parse_every("250 steps")
    Cadence(epochs=None, steps=250, seconds=None)
    >>> parse_every("1.5h").seconds
    5400.0
    >>> parse_duration("90 s", "preemption_timeout")
    90.0
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from mlrepro.errors import MlreproError

EPOCH = "epoch"
DEFAULT_PREEMPTION_TIMEOUT = 30.0   # seconds; SageMaker gives a spot/stop job 120 s
UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
         "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
         "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0}
_STEPS = re.compile(r"^\s*(\d+)\s*steps?\s*$", re.IGNORECASE)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]+)\s*$", re.IGNORECASE)
FORMS = ('"epoch", a number of epochs (5), a number of steps ("500 steps") or a duration '
         '("30s", "10min", "1h")')


@dataclass(frozen=True)
class Cadence:
    """Exactly one of the three is set."""

    epochs: int | None = None
    steps: int | None = None
    seconds: float | None = None

    @property
    def within_epochs(self) -> bool:
        """Whether checkpoints come at step boundaries inside epochs."""
        return self.epochs is None

    def describe(self):
        """The value as the record shows it: 1 / 5 (epochs), "500 steps", "600s"."""
        if self.epochs is not None:
            return self.epochs
        if self.steps is not None:
            return f"{self.steps} steps"
        return f"{self.seconds:g}s"


def _bad(value) -> MlreproError:
    return MlreproError(f"checkpoint_every {value!r} is not a checkpoint interval: use {FORMS}")


def parse_every(value) -> Cadence:
    """The cadence `checkpoint_every` asks for; MlreproError naming the accepted forms."""
    if value == EPOCH:
        return Cadence(epochs=1)
    if isinstance(value, bool):
        raise _bad(value)
    if isinstance(value, int):
        if value < 1:
            raise _bad(value)
        return Cadence(epochs=value)
    if not isinstance(value, str):
        raise _bad(value)
    m = _STEPS.match(value)
    if m:
        steps = int(m.group(1))
        if steps < 1:
            raise _bad(value)
        return Cadence(steps=steps)
    seconds = _seconds(value)
    if seconds is None or seconds <= 0:
        raise _bad(value)
    return Cadence(seconds=seconds)


def _seconds(text: str) -> float | None:
    m = _DURATION.match(text)
    if not m or m.group(2).lower() not in UNITS:
        return None
    value = float(m.group(1)) * UNITS[m.group(2).lower()]
    return value if math.isfinite(value) else None


def from_text(text: str):
    """A cadence written as text (an environment variable, a command-line flag) as
    `checkpoint_every` takes it: a bare number is a count of epochs ("5" -> 5)."""
    text = str(text).strip()
    return int(text) if text.isdigit() else text


def parse_duration(value, what: str) -> float:
    """Seconds from a number or a duration string ("30s", "2min"); MlreproError naming `what`."""
    seconds = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _seconds(value)
        if seconds is None:
            try:
                seconds = float(value)
            except ValueError:
                seconds = None
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        raise MlreproError(f"{what} {value!r} is not a duration: use seconds > 0 (30) or a "
                           'duration string ("30s", "2min")')
    return seconds
