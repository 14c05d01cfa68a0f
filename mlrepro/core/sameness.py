"""Whether this process is the same experiment as an unfinished run it could continue.

A restarted job (a spot interruption, a crash) should continue its run; a different
experiment started in the same checkpoint directory or model_dir must not. The test
compares what the old run's manifest recorded with what this process is about to
record: the command line, the code (commit, uncommitted changes, entry-point
script), the user's params and the auto-captured configuration (optimizer, model,
fit arguments, RunConfig...). Pure functions over plain values; the bindings gather
the values and decide.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from typing import Any, Iterable, Mapping

from mlrepro.capture.redact import redact
from mlrepro.errors import MlreproError
from mlrepro.record import jsonable

AUTO, NEVER, MUST, FORCE = "auto", "never", "must", "force"
RESUME_MODES = (AUTO, NEVER, MUST, FORCE)
MAX_LISTED = 12          # differences named in one message; the record keeps them all
MAX_VALUE_CHARS = 60
COMMAND_LINE = "command line"
# Descriptive labels that differ between identical processes (auto-numbered layer and
# optimizer names when a process builds a model twice) or that repeat another field.
DESCRIPTIVE_MODEL_FIELDS = ("name", "summary", "summary_error", "config_digest")
DESCRIPTIVE_FIT_FIELDS = ("verbose", "note")  # how fit reports, not what it trains


class ResumeRefused(MlreproError):
    """`resume="must"` found nothing compatible to continue."""


def check_mode(resume: Any) -> str:
    if resume not in RESUME_MODES:
        raise MlreproError(f"resume {resume!r} must be one of "
                           f"{', '.join(repr(m) for m in RESUME_MODES)}: \"auto\" continues an "
                           "unfinished run only when this is the same experiment")
    return resume


def code_identity(commit: Any, patch: bytes | None, entry_source: bytes | None) -> dict:
    """The code fields a manifest records (`code.commit`, `.patch`, `.entry_point_object`)."""
    out = {"commit": commit}
    if patch:
        out["patch"] = hashlib.sha256(patch).hexdigest()
    if entry_source is not None:
        out["entry_point_object"] = hashlib.sha256(entry_source).hexdigest()
    return out


def identity(*, argv: Iterable[str] | None, code: Mapping | None, params: Mapping | None,
             auto: Mapping | None) -> dict:
    """What a process is (about to be) recorded as, in the manifest's own (redacted) form."""
    return {"argv": None if argv is None else [str(a) for a in argv],
            "code": None if code is None else {k: code.get(k) for k in
                                               ("commit", "patch", "entry_point_object")},
            "params": redact(jsonable(dict(params or {}))),
            "auto": _normalised(redact(jsonable(dict(auto or {}))))}


def this_process(params: Mapping | None, auto: Mapping | None) -> dict:
    """This process's identity: its command line and code as `Run` will capture them."""
    from mlrepro.capture.code import capture_code

    snap = capture_code()
    info = snap.info
    return identity(argv=info.get("argv"),
                    code=code_identity(info.get("commit"), snap.patch, snap.entry_source),
                    params=params, auto=auto)


def from_manifest(manifest: Mapping, auto_keys: Iterable[str]) -> dict:
    """The same identity, as an old run's manifest recorded it."""
    code = manifest.get("code")
    recorded_auto = manifest.get("auto_params") or {}
    return identity(argv=(code or {}).get("argv"), code=code,
                    params=manifest.get("params") or {},
                    auto={k: recorded_auto.get(k) for k in auto_keys if k in recorded_auto})


def differences(old: Mapping, new: Mapping) -> list[str]:
    """Every difference, in words (`learning-rate 0.1 -> 0.05`); [] for the same experiment.

    A part the old run did not record (code capture off, an older record) is not
    compared: absence of evidence is not a difference.
    """
    out: list[str] = []
    out += _leaf_differences(old.get("params") or {}, new.get("params") or {}, "")
    if old.get("argv") is not None and new.get("argv") is not None and \
            old["argv"] != new["argv"]:
        out.append(f"{COMMAND_LINE} {_command(old['argv'])!r} -> {_command(new['argv'])!r}")
    old_code, new_code = old.get("code"), new.get("code")
    if old_code is not None and new_code is not None:
        if old_code.get("commit") != new_code.get("commit"):
            out.append(f"code commit {_short(old_code.get('commit'))} -> "
                       f"{_short(new_code.get('commit'))}")
        if old_code.get("patch") != new_code.get("patch"):
            out.append("code uncommitted changes differ")
        if old_code.get("entry_point_object") != new_code.get("entry_point_object"):
            out.append("code entry-point script changed")
    old_auto, new_auto = old.get("auto") or {}, new.get("auto") or {}
    shared = {k: old_auto[k] for k in old_auto if k in new_auto}
    out += _leaf_differences(shared, {k: new_auto[k] for k in shared}, "")
    return out


def summary(diffs: list[str]) -> str:
    """The differences for one message: all of them, or the first MAX_LISTED and a count."""
    shown = "; ".join(diffs[:MAX_LISTED])
    if len(diffs) > MAX_LISTED:
        shown += f"; and {len(diffs) - MAX_LISTED} more"
    return shown


def _normalised(auto: dict) -> dict:
    model = auto.get("model")
    if isinstance(model, dict):
        model = {k: v for k, v in model.items() if k not in DESCRIPTIVE_MODEL_FIELDS}
        if "config" in model:
            model["config"] = _without_names(model["config"])
        auto = {**auto, "model": model}
    fit = auto.get("fit")
    if isinstance(fit, dict):
        auto = {**auto, "fit": {k: v for k, v in fit.items() if k not in DESCRIPTIVE_FIT_FIELDS}}
    optimizer = auto.get("optimizer")
    if isinstance(optimizer, dict) and isinstance(optimizer.get("config"), dict):
        config = {k: v for k, v in optimizer["config"].items() if k != "name"}  # adam_3
        auto = {**auto, "optimizer": {**optimizer, "config": config}}
    return auto


def _without_names(value: Any) -> Any:
    """A model config without layer names: Keras numbers them per process (`dense_1`)."""
    if isinstance(value, dict):
        return {k: _without_names(v) for k, v in value.items() if k != "name"}
    if isinstance(value, list):
        return [_without_names(v) for v in value]
    return value


def _leaf_differences(old: Any, new: Any, prefix: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in new:
                out.append(f"{name} {_value(old[key])} -> (not set)")
            elif key not in old:
                out.append(f"{name} (not set) -> {_value(new[key])}")
            else:
                out += _leaf_differences(old[key], new[key], name)
        return out
    if old == new:
        return []
    return [f"{prefix or 'value'} {_value(old)} -> {_value(new)}"]


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.7g}"  # float32 configs: 0.1, not 0.10000000149011612
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS - 3] + "..."


def _command(argv: list) -> str:
    text = shlex.join(str(a) for a in argv)
    return text if len(text) <= 2 * MAX_VALUE_CHARS else "..." + text[-2 * MAX_VALUE_CHARS:]


def _short(commit: Any) -> str:
    return str(commit)[:10] if commit else "(none)"
