"""Checkpoints the Estimator writes, recorded as artifacts `checkpoints/model.ckpt-<step>`.

Each recorded checkpoint is a directory artifact holding the checkpoint's files
(`.index`, `.data-*`, `.meta`) and a `checkpoint` state file naming it, so a copy
fetched from the store restores with `tf.train.latest_checkpoint(dir)`. Files are
hard-linked into a staging directory on the training thread (no copy, so the
Saver may delete the originals) and hashed on the run's writer thread.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import tempfile

from mlrepro._estimator import binding

STATE_FILE = "checkpoint"          # TensorFlow's checkpoint state file in a model_dir
ARTIFACT_PREFIX = "checkpoints/"   # artifact names: checkpoints/model.ckpt-<step>
MODES = ("all", "final", "none")
_STEP = re.compile(r"-(\d+)$")


def checkpoint_step(prefix: str) -> int | None:
    """The global step in a checkpoint prefix such as `.../model.ckpt-200`."""
    match = _STEP.search(prefix)
    return int(match.group(1)) if match else None


def artifact_name(prefix: str) -> str:
    return ARTIFACT_PREFIX + os.path.basename(prefix)


def retained(model_dir: str) -> list[str]:
    """Checkpoint prefixes the state file lists (oldest first), as absolute paths."""
    import tensorflow as tf

    state = tf.train.get_checkpoint_state(model_dir)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    # TensorFlow has already joined a relative entry to `model_dir` (a relative model_dir
    # gives paths relative to the working directory): joining again named nothing.
    return [os.path.abspath(p) for p in paths if p]


class CheckpointRecorder:
    """Records each new checkpoint of one model_dir into a run, at most once."""

    def __init__(self, run, model_dir: str, mode: str = "all"):
        self.run = run
        self.model_dir = model_dir
        self.mode = mode
        self.local = "://" not in model_dir
        self._state_path = os.path.join(model_dir, STATE_FILE)
        self._state_seen = None
        self._warned = False
        self.logged = {n for n in run.section("artifacts") or {}
                       if n.startswith(ARTIFACT_PREFIX)}

    def state_changed(self) -> bool:
        """A stat of the state file: has a checkpoint been written since the last look?"""
        try:
            st = os.stat(self._state_path)
        except OSError:
            return False
        seen = (st.st_mtime_ns, st.st_size, st.st_ino)
        if seen == self._state_seen:
            return False
        self._state_seen = seen
        return True

    def record_new(self, final: bool = False) -> None:
        """Record checkpoints not yet in the run (the newest only, in mode "final")."""
        if self.mode == "none" or (self.mode == "final" and not final):
            return
        if not self.run.writes:
            return
        if not self.local:
            if not self._warned:
                self._warned = True
                self.run.warn(f"checkpoints in {self.model_dir} are not recorded: mlrepro "
                               "records checkpoints of a local model_dir only")
            return
        try:
            prefixes = retained(self.model_dir)
            if self.mode == "final":
                prefixes = prefixes[-1:]
            for prefix in prefixes:
                name = artifact_name(prefix)
                if name not in self.logged:
                    self._record(prefix, name)
            if prefixes:
                binding.update_section(self.run, latest_checkpoint=artifact_name(prefixes[-1]),
                                       global_step=checkpoint_step(prefixes[-1]))
        except Exception as exc:  # noqa: BLE001 - tracking never stops training
            self.run.warn(f"checkpoint in {self.model_dir} not recorded: {exc!r}")

    def _record(self, prefix: str, name: str) -> None:
        files = sorted(glob.glob(glob.escape(prefix) + ".*"))
        if not any(f.endswith(".index") for f in files):
            return  # deleted by the Saver before we looked; nothing restorable is left
        staging = tempfile.mkdtemp(prefix="mlrepro-ckpt-")
        try:
            for path in files:
                target = os.path.join(staging, os.path.basename(path))
                try:
                    os.link(path, target)
                except OSError:
                    shutil.copy2(path, target)
            base = os.path.basename(prefix)
            with open(os.path.join(staging, STATE_FILE), "w", encoding="utf-8") as fh:
                fh.write(f'model_checkpoint_path: "{base}"\n'
                         f'all_model_checkpoint_paths: "{base}"\n')
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        self.logged.add(name)
        self.run.log_artifact(staging, name=name, meta={
            "step": checkpoint_step(prefix), "format": "tf-checkpoint", "prefix": base})
        self.run.event("checkpoint", name=name, step=checkpoint_step(prefix))
        self.run.after_writes(lambda: shutil.rmtree(staging, ignore_errors=True))
