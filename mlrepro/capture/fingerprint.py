"""Fingerprints: one digest per part of an experiment, and one for the whole.

Two runs with the same `fingerprint` ran the same code on the same data with the
same params in an equivalent environment: the same experiment. Pure functions.
"""

from __future__ import annotations

import hashlib

from mlrepro.record import canonical_json

ENVIRONMENT_FIELDS = ("python", "packages", "frameworks", "accelerators", "machine")


def _digest(value) -> str:
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def code_fingerprint(code: dict) -> str:
    """Commit plus the patch's and entry point's digests (paths and argv excluded)."""
    return _digest({k: code.get(k) for k in ("commit", "patch", "entry_point_object")})


def environment_fingerprint(environment: dict) -> str:
    return _digest({k: environment.get(k) for k in ENVIRONMENT_FIELDS})


def data_fingerprint(data: dict) -> str:
    return _digest({name: (d or {}).get("digest") for name, d in sorted(data.items())})


def params_fingerprint(params: dict, seed=None, determinism=None) -> str:
    return _digest({"params": params, "seed": seed,
                    "deterministic": (determinism or {}).get("deterministic")})


def fingerprints(manifest: dict) -> dict:
    """All part fingerprints of a manifest and the overall one."""
    parts = {
        "code": code_fingerprint(manifest.get("code") or {}),
        "data": data_fingerprint(manifest.get("data") or {}),
        "params": params_fingerprint(manifest.get("params") or {}, manifest.get("seed"),
                                     manifest.get("determinism")),
        "environment": environment_fingerprint(manifest.get("environment") or {}),
    }
    parts["run"] = _digest(parts)
    return parts
