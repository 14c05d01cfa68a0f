"""Observers: what reacts to a run's start and end from outside `Run` (Sacred's pattern).

A `RunObserver` overrides the hooks it needs. `Run` calls `started` once its
first records are queued and `finished` after its final record is written. An
observer that fails while starting is reported at once (a warning and an event)
and dropped; one that fails at the end is reported without changing the run's
status. Either way training goes on.

Observers that every run should get (a copy into the SageMaker job's output, a
live push to a remote) are offered by factories registered with
`register_default`; the built-in ones are registered by `mlrepro/__init__.py`,
so that this layer never imports the layers that implement them.

Example:
    >>> class Announce(RunObserver):
    ...     def finished(self, run):
    ...         print(f"run {run.id} ended {run.status}")
    >>> run.add_observer(Announce())  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, Callable


class RunObserver:
    """Hooks a run calls; each does nothing unless overridden."""

    def started(self, run: Any) -> None:
        """The run has started (or resumed) and its writer is running."""

    def finished(self, run: Any) -> None:
        """The run has ended and its final record is written (or the write timed out)."""


class FinishHook(RunObserver):
    """`hook(run)` once the run's final record is written (`Run.add_finish_hook`)."""

    def __init__(self, hook: Callable[[Any], None]):
        self.hook = hook

    def finished(self, run: Any) -> None:
        self.hook(run)

    def __repr__(self) -> str:
        return getattr(self.hook, "__name__", repr(self.hook))


ObserverFactory = Callable[[Any], "RunObserver | None"]
_defaults: list[ObserverFactory] = []


def register_default(factory: ObserverFactory) -> None:
    """Offer `factory(run)`'s observer (or None) to every run this process starts that writes."""
    if factory not in _defaults:
        _defaults.append(factory)


def default_factories() -> list[ObserverFactory]:
    return list(_defaults)
