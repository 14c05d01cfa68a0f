"""A child whose run ends in the way argv[2] names: normal, raise, sigterm, sigint, exit0,
sigterm_in_finish (the signal comes while finish writes the last records)."""

import os
import signal
import sys
import time

import mlrepro

store, how = sys.argv[1], sys.argv[2]
run = mlrepro.start_run(project="exits", store=store)
print(run.id, flush=True)
for step in range(50):
    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
if how == "raise":
    raise RuntimeError("diverged at step 50")
if how == "sigterm":
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)
if how == "sigterm_in_finish":
    def signal_soon():      # on the writer thread, while the main thread waits in finish
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)

    run.after_writes(signal_soon)
    run.finish()
    time.sleep(30)
if how == "sigint":
    raise KeyboardInterrupt
if how == "wait":
    print("ready", flush=True)
    time.sleep(60)
