"""Log a metric every 0.05 s for SECONDS, then finish; prints the run id first.

Usage: log_for.py SECONDS [--data URL]
"""

import sys
import time

import mlrepro

seconds = float(sys.argv[1])
params = {"seconds": seconds}
if "--data" in sys.argv:
    params["data"] = sys.argv[sys.argv.index("--data") + 1]
with mlrepro.start_run(project="live", params=params, capture=True) as run:
    print(run.id, flush=True)
    step = 0
    end = time.time() + seconds
    while time.time() < end:
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        step += 1
        time.sleep(0.05)
