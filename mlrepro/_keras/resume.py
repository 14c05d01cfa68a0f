"""Which run a restarted `fit` continues: `ReproCallback(resume=...)`.

An unfinished run beside the checkpoints is continued only when this process is
the same experiment (`mlrepro.core.sameness`): same command line, code, params and
auto-captured configuration (optimizer, loss, model, fit arguments...). Otherwise
`"auto"` starts a new run and says why, `"must"` refuses, `"force"` continues
anyway and records what changed in the attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from mlrepro._keras import params as _params
from mlrepro._keras import runfile as _runfile
from mlrepro.core import sameness
from mlrepro.core.sameness import AUTO, FORCE, MUST, NEVER, ResumeRefused
from mlrepro.errors import MlreproError, warn

__all__ = ["Decision", "decide", "check", "ResumeRefused", "AUTO"]

# The auto-captured params that define the experiment (not the Keras version: environment).
AUTO_KEYS = ("optimizer", "loss", "metrics", "compile", "fit", "model", "distribution",
             "mixed_precision")


@dataclass
class Decision:
    resume: bool
    old_run: str | None = None
    differences: list = field(default_factory=list)
    forced: bool = False


def check(resume: Any, checkpoint: Any) -> str:
    """Validate `resume=` in `__init__`."""
    mode = sameness.check_mode(resume)
    if checkpoint is False and mode in (MUST, FORCE):
        raise MlreproError(f"resume={mode!r} needs checkpoints, but checkpoint=False: pass a "
                           "checkpoint directory, or leave resume at its default \"auto\"")
    return mode


def decide(mode: str, info: dict | None, resumable: bool, *, project: str, ckpt_dir: Any,
           store: Any, runtime: Any, model: Any, fit: Any, keras_params: Mapping | None,
           user_params: Mapping | None) -> Decision:
    """Continue the run file's run or not; raises ResumeRefused for `"must"`."""
    if not resumable:
        if mode == MUST:
            raise ResumeRefused(f"resume=\"must\" but {_why_not(info, project, ckpt_dir)}: "
                                "nothing to continue; leave resume at \"auto\" to start a new "
                                "run")
        return Decision(False)
    old = info["run_id"]
    if mode == NEVER:
        return Decision(False, old)
    manifest = _recorded(store if store is not None else info.get("store"), runtime, old)
    if manifest is None:  # nothing to compare against: continue, as a restart always did
        return Decision(True, old)
    try:
        auto, _texts = _params.collect(model, fit.arguments, keras_params)
        diffs = sameness.differences(
            sameness.from_manifest(manifest, AUTO_KEYS),
            sameness.this_process(user_params, {k: auto.get(k) for k in AUTO_KEYS}))
    except Exception as exc:  # noqa: BLE001 - tracking never fails fit
        warn(f"mlrepro could not compare this process with run {old} ({exc!r}); "
             "continuing that run")
        return Decision(True, old)
    if not diffs:
        return Decision(True, old)
    if mode == FORCE:
        return Decision(True, old, diffs, forced=True)
    if mode == MUST:
        raise ResumeRefused(f"resume=\"must\" but unfinished run {old} in {ckpt_dir} is another "
                            f"experiment ({sameness.summary(diffs)}): rerun its own command, or "
                            "pass resume=\"force\" to continue it with these changes")
    return Decision(False, old, diffs)


def declined_message(decision: Decision, new_run: str, ckpt_dir: Any) -> str:
    return (f"{ckpt_dir} holds unfinished run {decision.old_run} of another experiment "
            f"({sameness.summary(decision.differences)}), so this is a new run {new_run} and "
            f"run {decision.old_run} stays as it was; to continue it anyway pass "
            "ReproCallback(resume=\"force\")")


def _why_not(info: dict | None, project: str, ckpt_dir: Any) -> str:
    if not info:
        return f"{ckpt_dir} holds no unfinished mlrepro run"
    if info.get("status") == _runfile.FINISHED:
        return f"run {info.get('run_id')} in {ckpt_dir} finished"
    return f"run {info.get('run_id')} in {ckpt_dir} belongs to project {info.get('project')!r}, " \
           f"not {project!r}"


def _recorded(store: Any, runtime: Any, run_id: str) -> dict | None:
    """The old run's manifest, or None when it cannot be read (Run then starts it afresh)."""
    from mlrepro.runtime import default_store
    from mlrepro.store import open_store

    try:
        opened = open_store(store if store is not None else default_store(runtime))
        if run_id not in opened.run_ids():
            return None
        return opened.read_manifest(run_id)
    except Exception:  # noqa: BLE001 - Run warns about an unreadable store itself
        return None
