"""The run's copy in a SageMaker job's output, made when the run ends.

SageMaker uploads `<output_dir>` as output.tar.gz at the end of a job; without a
remote, that copy is how the run leaves the machine (`mlrepro pull-job` imports
it). `mlrepro.runtime.export_dir` says where it goes; this observer copies.
"""

from __future__ import annotations

import os
from typing import Any

from mlrepro.core.observers import RunObserver
from mlrepro.runtime import export_dir
from mlrepro.store.local import LocalStore
from mlrepro.store.transfer import copy_run


class JobOutputExport(RunObserver):
    """Copies the finished run from the store it was written to into `destination`."""

    def __init__(self, destination: str):
        self.destination = destination

    def finished(self, run: Any) -> None:
        source = run.current_store
        if source.root is not None and \
                os.path.abspath(source.root) == os.path.abspath(self.destination):
            return
        target = LocalStore(self.destination)
        try:
            copy_run(source, target, run.id)
        finally:
            target.close()

    def __repr__(self) -> str:
        return f"copy to the job output {self.destination}"


def observer_for(run: Any) -> JobOutputExport | None:
    """An export for the chief's run of a SageMaker job; None elsewhere."""
    destination = export_dir(run.runtime)
    return JobOutputExport(destination) if destination and run.writes else None
