"""The recorder: `Run` and what keeps its record true.

- `run`: `Run` and `start_run`; every write goes through the run's writer;
- `writer`: the background writer that wraps any store (bounded queue, retries, spool);
- `registry`: the runs of this process that have not finished (`active_run`);
- `lifecycle`: process hooks (signals, uncaught exceptions, exit) that set the last status;
- `observers`: what reacts to a run's start and end from outside `Run`;
- `job_export`: the observer that copies a SageMaker job's run into the job's output.
"""

from mlrepro.core.registry import active_run, active_runs
from mlrepro.core.run import Run, start_run

__all__ = ["Run", "start_run", "active_run", "active_runs"]
