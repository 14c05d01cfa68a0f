"""What differs between two run manifests, section by section: params, code, data, environment.

Each function takes the two sides (`a`, the reference, and `b`) and returns plain
JSON-able dicts, empty or `same: True` where nothing differs, so that
`mlrepro diff --json` can print them as they are.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from mlrepro.capture.fingerprint import code_fingerprint
from mlrepro.record import canonical_json

# Environment fields compared one by one (nested fields are written "cpu.model").
PLATFORM_FIELDS = ("python", "python_implementation", "platform", "os", "machine",
                   "cpu.model", "cpu.cores", "accelerators")
# Variables that only say where mlrepro writes, never what a run computes.
OPERATIONAL_VARIABLES = re.compile(r"^MLREPRO_")


def same_value(x: Any, y: Any) -> bool:
    """Equal as recorded values: NaN equals NaN, 1 equals 1.0, True does not equal 1."""
    if isinstance(x, bool) or isinstance(y, bool):
        return type(x) is type(y) and x == y
    if isinstance(x, (int, float)) and isinstance(y, (int, float)):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y):
            return True
        return x == y
    return canonical_json(x) == canonical_json(y)


def diff_mapping(a: Mapping | None, b: Mapping | None) -> dict:
    """Keys only in `b` (added), only in `a` (removed), and in both with other values (changed).

    Example:
        >>> diff_mapping({"lr": 0.1, "bs": 32}, {"lr": 0.05, "bs": 32, "wd": 0})
        {'added': {'wd': 0}, 'removed': {}, 'changed': {'lr': {'a': 0.1, 'b': 0.05}}}
    """
    a, b = dict(a or {}), dict(b or {})
    return {
        "added": {k: b[k] for k in sorted(b) if k not in a},
        "removed": {k: a[k] for k in sorted(a) if k not in b},
        "changed": {k: {"a": a[k], "b": b[k]} for k in sorted(a)
                    if k in b and not same_value(a[k], b[k])},
    }


def is_empty(diff: Mapping) -> bool:
    """True for a `diff_mapping` result (or a dict of them) with nothing in it."""
    return not any(diff.get(k) for k in ("added", "removed", "changed", "upgraded",
                                         "downgraded"))


def flatten(value: Mapping | None, prefix: str = "") -> dict:
    """Nested dicts as dotted keys, so a diff names `optimizer.learning_rate`, not `optimizer`.

    Example:
        >>> flatten({"optimizer": {"name": "SGD", "momentum": 0.9}, "epochs": 2})
        {'optimizer.name': 'SGD', 'optimizer.momentum': 0.9, 'epochs': 2}
    """
    out: dict = {}
    for key, item in (value or {}).items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and item:
            out.update(flatten(item, name + "."))
        else:
            out[name] = item
    return out


def diff_params(a: Mapping, b: Mapping) -> dict:
    """User params and auto-captured params (nested ones by dotted name), diffed separately.

    `unchanged` holds the keys with the same value in both runs (`diff --all` prints them).
    """
    user_a, user_b = flatten(a.get("params")), flatten(b.get("params"))
    auto_a, auto_b = flatten(a.get("auto_params")), flatten(b.get("auto_params"))
    params, auto = diff_mapping(user_a, user_b), diff_mapping(auto_a, auto_b)
    unchanged = {"params": _unchanged(user_a, user_b), "auto_params": _unchanged(auto_a, auto_b)}
    return {"same": is_empty(params) and is_empty(auto), "params": params, "auto_params": auto,
            "unchanged": unchanged}


def _unchanged(a: dict, b: dict) -> dict:
    return {k: a[k] for k in sorted(a) if k in b and same_value(a[k], b[k])}


def _pair(a, b) -> dict:
    return {"a": a, "b": b, "same": same_value(a, b)}


def diff_code(a: Mapping, b: Mapping) -> dict:
    """Commit, branch, patch and entry point of two `code` sections.

    The commit range and the unified source diff need a repository and the stored
    patches; `mlrepro.analysis.diff` adds them as `commits` and `unified_diff`.
    """
    a, b = dict(a or {}), dict(b or {})
    out = {
        "same": code_fingerprint(a) == code_fingerprint(b),
        "commit": _pair(a.get("commit"), b.get("commit")),
        "branch": _pair(a.get("branch"), b.get("branch")),
        "dirty": _pair(a.get("dirty"), b.get("dirty")),
        "patch": _pair(a.get("patch"), b.get("patch")),
        "patch_size": _pair(a.get("patch_size"), b.get("patch_size")),
        "entry_point": _pair(a.get("entry_point"), b.get("entry_point")),
        "entry_point_object": _pair(a.get("entry_point_object"), b.get("entry_point_object")),
        "remote": _pair(a.get("remote"), b.get("remote")),
    }
    mods_a, mods_b = dict(a.get("modules") or {}), dict(b.get("modules") or {})
    files = diff_mapping(mods_a, mods_b)
    out["modules"] = {"same": is_empty(files), "changed": sorted(files["changed"]),
                      "added": sorted(files["added"]), "removed": sorted(files["removed"])}
    args_a, args_b = list(a.get("argv") or [])[1:], list(b.get("argv") or [])[1:]
    out["arguments"] = dict(_pair(args_a, args_b), changes=argument_changes(args_a, args_b))
    return out


def argument_changes(a: list[str], b: list[str]) -> list[str] | None:
    """The arguments that differ, each named by the option before it (None: not aligned).

    Example:
        >>> argument_changes(["--lr", "0.1", "--bs", "32"], ["--lr", "0.2", "--bs", "32"])
        ['--lr 0.1 -> 0.2']
    """
    if len(a) != len(b):
        return None
    out = []
    for i, (x, y) in enumerate(zip(a, b)):
        if x == y:
            continue
        option = a[i - 1] if i > 0 and a[i - 1].startswith("-") and a[i - 1] == b[i - 1] else ""
        out.append(f"{option} {x} -> {y}".strip())
    return out


def _file_listing(fp: Mapping) -> dict[str, str]:
    return {f.get("path"): f.get("sha256") for f in fp.get("file_list") or [] if f.get("path")}


def diff_data(a: Mapping, b: Mapping) -> dict:
    """Per input name: same, changed (with the files that changed when listed), added, removed."""
    a, b = dict(a or {}), dict(b or {})
    inputs = {}
    for name in sorted(set(a) | set(b)):
        fa, fb = a.get(name), b.get(name)
        if fa is None or fb is None:
            status = "added" if fa is None else "removed"
            inputs[name] = {"status": status, "a": _data_brief(fa), "b": _data_brief(fb)}
            continue
        same = fa.get("digest") is not None and fa.get("digest") == fb.get("digest")
        entry = {"status": "same" if same else "changed", "a": _data_brief(fa),
                 "b": _data_brief(fb)}
        if not same:
            files = diff_mapping(_file_listing(fa), _file_listing(fb))
            if not is_empty(files):
                entry["files"] = {"added": sorted(files["added"]),
                                  "removed": sorted(files["removed"]),
                                  "changed": sorted(files["changed"])}
        inputs[name] = entry
    return {"same": all(v["status"] == "same" for v in inputs.values()), "inputs": inputs}


def _data_brief(fp: Mapping | None) -> dict | None:
    if fp is None:
        return None
    return {k: fp.get(k) for k in ("kind", "source", "digest", "size", "files", "shape", "dtype")
            if fp.get(k) is not None}


def version_key(version: str):
    """A sort key for package versions: PEP 440 when `packaging` is there, else numeric parts."""
    text = str(version).split(" @ ", 1)[0]
    try:
        from packaging.version import InvalidVersion, Version

        try:
            return (0, Version(text))
        except InvalidVersion:
            pass
    except ImportError:
        pass
    parts = re.findall(r"\d+|[a-zA-Z]+", text)
    return (1, tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts))


def diff_packages(a: Mapping | None, b: Mapping | None) -> dict:
    """Packages added, removed, upgraded and downgraded from `a` to `b`."""
    base = diff_mapping(a, b)
    upgraded, downgraded, changed = {}, {}, {}
    for name, pair in base["changed"].items():
        try:
            newer = version_key(pair["b"]) > version_key(pair["a"])
            older = version_key(pair["b"]) < version_key(pair["a"])
        except TypeError:
            newer = older = False
        (upgraded if newer else downgraded if older else changed)[name] = pair
    return {"added": base["added"], "removed": base["removed"], "upgraded": upgraded,
            "downgraded": downgraded, "changed": changed}


def _get(env: Mapping, dotted: str):
    node: Any = env
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _gpus(env: Mapping) -> list:
    return [{"name": g.get("name"), "driver": g.get("driver"), "memory_mib": g.get("memory_mib")}
            for g in env.get("gpus") or []]


def _variables(env: Mapping) -> dict:
    return {k: v for k, v in (env.get("variables") or {}).items()
            if not OPERATIONAL_VARIABLES.match(k)}


def diff_environment(a: Mapping, b: Mapping, *, variables: bool = True) -> dict:
    """Platform, hardware, framework, package and variable differences of two environments.

    Frameworks are compared only where both sides recorded a version: a framework
    missing on one side was usually just not imported yet when the run started.
    `variables=False` leaves environment variables out (a process that has not
    started the script yet cannot know the variables the script sets itself).
    """
    a, b = dict(a or {}), dict(b or {})
    platform = {f: {"a": _get(a, f), "b": _get(b, f)} for f in PLATFORM_FIELDS
                if not same_value(_get(a, f), _get(b, f))}
    gpus = None if same_value(_gpus(a), _gpus(b)) else {"a": _gpus(a), "b": _gpus(b)}
    fa, fb = a.get("frameworks") or {}, b.get("frameworks") or {}
    both = set(fa) & set(fb)
    frameworks = diff_mapping({k: fa[k] for k in both if fa[k] is not None},
                              {k: fb[k] for k in both if fb[k] is not None})["changed"]
    packages = diff_packages(a.get("packages"), b.get("packages"))
    variables = diff_mapping(_variables(a), _variables(b)) if variables else \
        diff_mapping({}, {})
    same = not platform and gpus is None and not frameworks and is_empty(packages) and \
        is_empty(variables)
    return {"same": same, "platform": platform, "gpus": gpus, "frameworks": frameworks,
            "packages": packages, "variables": variables}


def environment_drift(diff: Mapping) -> list[str]:
    """One line per difference of a `diff_environment` result, in the words a person uses."""
    lines = []
    for field, pair in (diff.get("platform") or {}).items():
        lines.append(f"{field}: {_show(pair['a'])} -> {_show(pair['b'])}")
    if diff.get("gpus"):
        lines.append(f"gpus: {_gpu_text(diff['gpus']['a'])} -> {_gpu_text(diff['gpus']['b'])}")
    for name, pair in (diff.get("frameworks") or {}).items():
        lines.append(f"{name}: {pair['a']} -> {pair['b']}")
    pk = diff.get("packages") or {}
    for kind in ("upgraded", "downgraded", "changed"):
        for name, pair in (pk.get(kind) or {}).items():
            lines.append(f"package {name} {kind}: {pair['a']} -> {pair['b']}")
    for name, version in (pk.get("added") or {}).items():
        lines.append(f"package {name} added: {version}")
    for name, version in (pk.get("removed") or {}).items():
        lines.append(f"package {name} removed (was {version})")
    var = diff.get("variables") or {}
    for name, value in (var.get("added") or {}).items():
        lines.append(f"variable {name} set: {_show(value)}")
    for name, value in (var.get("removed") or {}).items():
        lines.append(f"variable {name} unset (was {_show(value)})")
    for name, pair in (var.get("changed") or {}).items():
        lines.append(f"variable {name}: {_show(pair['a'])} -> {_show(pair['b'])}")
    return lines


def _gpu_text(gpus: list) -> str:
    return ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in gpus) or "none"


def _show(value) -> str:
    if isinstance(value, str):
        return value
    return canonical_json(value)


def diff_determinism(a: Mapping, b: Mapping) -> dict:
    """Seed and determinism settings of two manifests."""
    da, db = a.get("determinism") or {}, b.get("determinism") or {}
    fields = {
        "seed": (a.get("seed"), b.get("seed")),
        "deterministic": (bool(da.get("deterministic")), bool(db.get("deterministic"))),
        "seed_generated": (bool(da.get("seed_generated")), bool(db.get("seed_generated"))),
        "python_hash_seed": (da.get("python_hash_seed"), db.get("python_hash_seed")),
        "applied": (sorted(da.get("applied") or []), sorted(db.get("applied") or [])),
    }
    changed = {k: {"a": x, "b": y} for k, (x, y) in fields.items() if not same_value(x, y)}
    return {"same": not changed, "changed": changed,
            "a": {k: v[0] for k, v in fields.items()}, "b": {k: v[1] for k, v in fields.items()}}


def compare_manifests(a: Mapping, b: Mapping) -> dict:
    """Every section of two manifests compared (metrics are compared from their points)."""
    return {
        "a": _run_brief(a),
        "b": _run_brief(b),
        "same_fingerprint": bool(a.get("fingerprint")) and a.get("fingerprint") ==
        b.get("fingerprint"),
        "params": diff_params(a, b),
        "code": diff_code(a.get("code") or {}, b.get("code") or {}),
        "data": diff_data(a.get("data") or {}, b.get("data") or {}),
        "environment": diff_environment(a.get("environment") or {}, b.get("environment") or {}),
        "determinism": diff_determinism(a, b),
    }


def _run_brief(m: Mapping) -> dict:
    return {k: m.get(k) for k in ("id", "project", "name", "status", "start_time", "end_time",
                                  "fingerprint", "parent")}
