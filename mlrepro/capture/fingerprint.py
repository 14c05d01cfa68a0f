"""Fingerprints: one digest per part of an experiment, and one for the whole.

Two runs with the same `fingerprint` ran the same code (every user module) with the
same command line, params and auto-captured configuration, on the same data, in an
equivalent environment: the same experiment. Each part is also kept on its own
(`fingerprints`), so a comparison can say which part differs. Pure functions.
"""

from __future__ import annotations

import hashlib
import os

from mlrepro.record import canonical_json

ENVIRONMENT_FIELDS = ("python", "packages", "frameworks", "accelerators", "machine")


def _digest(value) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def code_fingerprint(code: dict) -> str:
    """Commit plus the digests of the patch, the entry point and every user module.

    Paths and the command line are left out (the command is its own part). A record
    written before modules were captured has none, and is fingerprinted as it was.
    """
    parts = {k: code.get(k) for k in ("commit", "patch", "entry_point_object")}
    if code.get("modules"):
        parts["modules"] = code["modules"]
    return _digest(parts)


def _input_paths(data: dict) -> dict[str, str]:
    """Normalised path -> input name, for every path or root a data input was read from."""
    out: dict[str, str] = {}
    for name, fp in sorted((data or {}).items()):
        for part in [fp, *((fp or {}).get("parts") or {}).values()]:
            part = part if isinstance(part, dict) else {}
            for path in list(part.get("paths") or []) + [part.get("root")]:
                if isinstance(path, str) and os.path.isabs(path):
                    out.setdefault(os.path.normpath(path), name)
    return out


def command_arguments(code: dict, data: dict | None = None) -> list[str]:
    """The arguments the entry point was run with, as fingerprinted.

    The script's own path is left out, and an argument that names a recorded data
    input (relative to the recorded working directory, or absolute) stands for that
    input: the data part fingerprints what it holds, so `--data ../train.npz` and
    `--data /abs/train.npz` (as `mlrepro reproduce` passes it) are the same command.
    """
    args = [str(a) for a in list(code.get("argv") or [])[1:]]
    inputs = _input_paths(data or {})
    cwd = code.get("cwd")
    if not inputs:
        return args
    out = []
    for arg in args:
        prefix, sep, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        full = value if os.path.isabs(value) else (os.path.join(cwd, value)
                                                   if value and isinstance(cwd, str) else None)
        name = inputs.get(os.path.normpath(full)) if full else None
        out.append(prefix + sep + f"<data {name}>" if name else arg)
    return out


def command_fingerprint(code: dict, data: dict | None = None) -> str:
    """The command line's arguments (see `command_arguments`)."""
    return _digest(command_arguments(code, data))


def config_fingerprint(auto_params: dict) -> str:
    """What the integrations read off the model and framework (optimizer, loss, RunConfig)."""
    return _digest(auto_params or {})


def environment_fingerprint(environment: dict) -> str:
    return _digest({k: environment.get(k) for k in ENVIRONMENT_FIELDS})


def data_fingerprint(data: dict) -> str:
    return _digest({name: (d or {}).get("digest") for name, d in sorted(data.items())})


def params_fingerprint(params: dict, seed=None, determinism=None) -> str:
    return _digest({"params": params, "seed": seed,
                    "deterministic": (determinism or {}).get("deterministic")})


def fingerprints(manifest: dict) -> dict:
    """All part fingerprints of a manifest and the overall one."""
    code = manifest.get("code") or {}
    parts = {
        "code": code_fingerprint(code),
        "command": command_fingerprint(code, manifest.get("data") or {}),
        "data": data_fingerprint(manifest.get("data") or {}),
        "params": params_fingerprint(manifest.get("params") or {}, manifest.get("seed"),
                                     manifest.get("determinism")),
        "config": config_fingerprint(manifest.get("auto_params") or {}),
        "environment": environment_fingerprint(manifest.get("environment") or {}),
    }
    parts["run"] = _digest(parts)
    return parts
