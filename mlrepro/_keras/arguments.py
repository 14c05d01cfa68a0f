"""Validation of `ReproCallback`'s arguments: each error names the argument and what it takes."""

from __future__ import annotations

import os

from mlrepro._keras.export import FORMATS
from mlrepro.errors import MlreproError

CHECKPOINT_EVERY_EPOCH = "epoch"


def validate(project, seed, every, checkpoint, checkpoint_every, keep) -> None:
    """Raise MlreproError for the first argument that is out of range."""
    if not isinstance(project, str) or not project.strip() or "/" in project:
        raise MlreproError(f"project {project!r} must be a non-empty name without '/': "
                           "e.g. ReproCallback(project=\"cifar10\")")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise MlreproError(f"seed {seed!r} must be an int or None: e.g. seed=42")
    if not isinstance(every, int) or isinstance(every, bool) or every < 0:
        raise MlreproError(f"log_every_n_steps {every!r} must be an int >= 0 "
                           "(0 logs epoch metrics only): e.g. log_every_n_steps=50")
    if checkpoint not in (None, False, True) and not isinstance(checkpoint, (str, os.PathLike)):
        raise MlreproError(f"checkpoint {checkpoint!r} must be a directory path, None "
                           "(the default directory) or False (no checkpoints)")
    if checkpoint_every != CHECKPOINT_EVERY_EPOCH and (
            not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool)
            or checkpoint_every < 1):
        raise MlreproError(f"checkpoint_every {checkpoint_every!r} must be \"epoch\" or a "
                           "number of epochs >= 1: e.g. checkpoint_every=5")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise MlreproError(f"keep_checkpoints {keep!r} must be an int >= 1: "
                           "e.g. keep_checkpoints=2")


def export_formats(export) -> tuple:
    """The export formats asked for, as a tuple from FORMATS."""
    if export in (None, False):
        return ()
    if export is True:
        return FORMATS
    formats = (export,) if isinstance(export, str) else tuple(export)
    bad = [f for f in formats if f not in FORMATS]
    if bad:
        raise MlreproError(f"export {bad[0]!r} is not a format: use a subset of "
                           f"{FORMATS} or False")
    return formats
