"""What the callback does differently in a re-run made by `mlrepro reproduce`.

A re-run is a new run (`$MLREPRO_PARENT` says `reproduction-of` the original).
It never trains into the original's checkpoint directory: one whose run file
names the original would be continued (or wiped), so the re-run checkpoints into
a fresh temporary directory instead (`mlrepro reproduce` points `$TMPDIR` into
its scratch tree).
"""

from __future__ import annotations

import tempfile

from mlrepro.core.run import reproduced_run


def holds_original(info: dict | None) -> bool:
    """The checkpoint dir's run file names the run being reproduced."""
    original = reproduced_run()
    return bool(info) and original is not None and info.get("run_id") == original


def fresh_checkpoint_dir(project: str) -> str:
    return tempfile.mkdtemp(prefix=f"mlrepro-{project}-reproduction-")
