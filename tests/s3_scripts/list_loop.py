"""List an S3 store's runs again and again until STOPFILE exists; print each count."""

import os
import sys
import time

from mlrepro.store.s3 import S3Store

uri, stopfile = sys.argv[1], sys.argv[2]
while not os.path.exists(stopfile):
    rows = S3Store(uri).list_runs()           # a fresh store each time: a cold reader
    print(len(rows), flush=True)
    time.sleep(0.05)
print("done", flush=True)
