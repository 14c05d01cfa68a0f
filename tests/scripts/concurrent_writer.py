"""One of several processes writing runs into the same store at once."""

import sys

import mlrepro

store, worker, runs, points = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
for r in range(runs):
    with mlrepro.start_run(project="concurrent", store=store,
                           params={"worker": worker, "run": r}) as run:
        for step in range(points):
            run.log_metrics({"loss": worker + step / points}, step=step)
        with open(f"{store}/../blob-{worker}-{r}.bin", "wb") as fh:
            fh.write(b"shared checkpoint bytes" * 100)  # same bytes in every run
        run.log_artifact(f"{store}/../blob-{worker}-{r}.bin", "ckpt.bin")
    print(run.id, flush=True)
