"""Validation of `ReproCallback`'s arguments: each error names the argument and what it takes."""

from __future__ import annotations

import os

from mlrepro import env
from mlrepro._keras import cadence
from mlrepro._keras.export import FORMATS
from mlrepro.errors import MlreproError

CHECKPOINT_EVERY_EPOCH = cadence.EPOCH


def default_cadence(checkpoint_every):
    """`checkpoint_every` as given, or (None) `$MLREPRO_CHECKPOINT_EVERY`, else "epoch"."""
    if checkpoint_every is not None:
        return checkpoint_every
    value = env.CHECKPOINT_EVERY.get()
    if value is None or not value.strip():
        return CHECKPOINT_EVERY_EPOCH
    value = cadence.from_text(value)
    try:
        cadence.parse_every(value)
    except MlreproError as exc:
        raise MlreproError(f"${env.CHECKPOINT_EVERY.name}: {exc}") from None
    return value


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
    cadence.parse_every(checkpoint_every)   # raises naming the value and the forms
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
