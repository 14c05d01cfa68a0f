"""A child process that logs metric points until it is killed.

argv: store [mode]. It prints `flushed N` after each explicit flush, so the parent
knows which points must survive a SIGKILL.
"""

import sys
import time

import mlrepro

store = sys.argv[1]
run = mlrepro.start_run(project="kill", store=store, params={"lr": 0.1})
print(f"run {run.id}", flush=True)
step = 0
while True:
    for _ in range(100):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 1e6}, step=step)
        step += 1
    if step % 500 == 0:
        run.flush(5)
        print(f"flushed {step}", flush=True)
    time.sleep(0.01)
