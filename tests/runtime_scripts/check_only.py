"""A worker of a two-host job that checks workers without TensorFlow, for the timeout tests.

$CHECK_MODE: "call" calls check_workers; "skip" never calls it (a worker that
crashed, runs other code, or has mlrepro off) and stays alive a while. Then it
"trains" (prints a line) and writes what it saw to $MW_OUT.
"""

import json
import os
import time

import mlrepro

rt = mlrepro.runtime.detect()
run = mlrepro.start_run(project="timeouts", params={"a": 1})
started = time.monotonic()
result = None
if os.environ["CHECK_MODE"] == "call":
    result = mlrepro.distribute.check_workers(run)
else:
    time.sleep(float(os.environ.get("SKIP_SLEEP", "0")))
seconds = time.monotonic() - started
print("training goes on", flush=True)
run.finish()
with open(os.environ["MW_OUT"], "w") as fh:
    json.dump({"rank": rt.rank, "run_id": run.id, "writes": run.writes, "seconds": seconds,
               "workers": result}, fh)
