"""A run started with secrets planted everywhere a careless recorder would pick them up.

The secret values come from the environment (as real ones do), not from this source.
"""

import os
import sys

import mlrepro

store = sys.argv[1]
secret = os.environ["PLANTED_PARAM"]
with mlrepro.start_run(project="secrets", store=store,
                       params={"lr": 0.1, "api_key": secret,
                               "db": f"postgres://admin:{os.environ['PLANTED_URLPASS']}@db/x",
                               "nested": {"hf_token": os.environ["PLANTED_HF"]},
                               "note": "uses " + os.environ["AWS_ACCESS_KEY_ID"]},
                       tags={"who": os.environ["GITHUB_TOKEN"]}) as run:
    run.log_metrics({"loss": 0.5}, step=0)
    run.warn(f"cannot reach https://ci:{os.environ['PLANTED_URLPASS']}@mirror.example.com/x "
             f"with {os.environ['AWS_ACCESS_KEY_ID']}")
    run.event("fetched", url=f"https://ci:{os.environ['PLANTED_URLPASS']}@mirror.example.com",
              hf_token=os.environ["PLANTED_HF"], note="key " + os.environ["GITHUB_TOKEN"])
print(run.id)
