"""`mlrepro diff A B`: what differs between two runs, section by section.

Params, code (commit range and the source changes as a unified diff), data
fingerprints, environment, determinism settings and metrics. The comparisons
themselves are pure (`mlrepro.compare`); this module reads the records and the
code, and prints.
"""

from __future__ import annotations

import difflib
import os
import tempfile

from mlrepro.compare import compare_manifests, diff_metrics, environment_drift
from mlrepro.errors import MlreproError
from mlrepro.analysis.rebuild import find_repo, git, has_commit, scratch_clone, tree_of
from mlrepro.compare.listing import is_timing_metric
from mlrepro.compare.naming import run_labels, short_id
from mlrepro.compare.text import exact, number, short

KEY_WIDTH = 60

MAX_DIFF_LINES = 2000


def run_diff(store, ref_a: str, ref_b: str, *, repo: str | None = None) -> dict:
    """The full comparison of two runs of `store`, as plain JSON-able data."""
    id_a, id_b = store.resolve(ref_a), store.resolve(ref_b)
    ma, mb = store.read_manifest(id_a), store.read_manifest(id_b)
    ma, mb = _with_file_lists(ma, store), _with_file_lists(mb, store)
    out = compare_manifests(ma, mb)
    out["code"]["source"] = code_changes(ma, mb, store, repo=repo)
    pa, pb = store.read_points(id_a), store.read_points(id_b)
    out["metrics"] = diff_metrics(pa.series, pb.series)
    out["labels"] = run_labels([ma, mb])  # each run named by the params that differ
    return out


def _with_file_lists(manifest: dict, store) -> dict:
    """The manifest with each data input's full file list read back from its object."""
    import copy
    import json

    out = copy.deepcopy(manifest)
    for fp in (out.get("data") or {}).values():
        for part in [fp, *((fp or {}).get("parts") or {}).values()]:
            digest = (part or {}).get("file_list_object")
            if not digest:
                continue
            try:
                part["file_list"] = json.loads(store.read_object(digest).decode("utf-8"))
            except Exception:  # noqa: BLE001 - the inline head of the list is still there
                part["file_list_note"] = f"the full file list (object {digest[:12]}) is missing"
    return out


def code_changes(ma: dict, mb: dict, store, *, repo: str | None = None) -> dict:
    """The commits between two runs and their source difference as a unified diff.

    With a repository that holds both commits, both trees (commit + patch) are
    rebuilt in a scratch clone and diffed by git; otherwise the two stored
    entry-point sources are diffed.
    """
    ca, cb = ma.get("code") or {}, mb.get("code") or {}
    keys = ("commit", "patch", "entry_point_object", "entry_point", "modules")
    if all(ca.get(k) == cb.get(k) for k in keys):
        return {"how": "same", "commits": [], "unified_diff": ""}
    commit_a, commit_b = ca.get("commit"), cb.get("commit")
    note = None
    if commit_a and commit_b:
        root, looked = find_repo(commit_a, repo, ca)
        if root is None or not has_commit(root, commit_b):
            root, looked = find_repo(commit_b, repo, cb)
            if root is not None and not has_commit(root, commit_a):
                root = None
        if root is not None:
            try:
                return _git_changes(root, ca, cb, store)
            except MlreproError as exc:
                note = f"git could not rebuild both trees ({exc}); showing the stored sources"
        else:
            note = (f"no repository holds both commits (looked in {', '.join(looked) or 'none'}; "
                    "pass --repo PATH): showing the stored sources")
    if ca.get("modules") and cb.get("modules"):
        return _module_changes(ca, cb, store, note)
    return _entry_point_changes(ca, cb, store, note)


def _read_text(store, digest: str | None) -> str:
    try:
        return store.read_object(digest).decode("utf-8", "replace") if digest else ""
    except Exception:  # noqa: BLE001 - a missing object leaves that side empty
        return ""


def _unified(text_a: str, text_b: str, name_a: str, name_b: str) -> str:
    lines = difflib.unified_diff(text_a.splitlines(keepends=True),
                                 text_b.splitlines(keepends=True),
                                 fromfile=name_a, tofile=name_b)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _module_changes(ca: dict, cb: dict, store, note: str | None) -> dict:
    """Every stored user module of the two runs, diffed file by file (`a/model.py` ...)."""
    mods_a, mods_b = dict(ca.get("modules") or {}), dict(cb.get("modules") or {})
    text = ""
    for path in sorted(set(mods_a) | set(mods_b)):
        da, db = mods_a.get(path), mods_b.get(path)
        if da == db:
            continue
        text += _unified(_read_text(store, da), _read_text(store, db),
                         f"a/{path}" if da else "/dev/null", f"b/{path}" if db else "/dev/null")
    out = {"how": "stored modules", "commits": [], "unified_diff": _cap(text.rstrip("\n"))}
    if note:
        out["note"] = note
    return out


def _git_changes(root: str, ca: dict, cb: dict, store) -> dict:
    patch_a = store.read_object(ca["patch"]) if ca.get("patch") else None
    patch_b = store.read_object(cb["patch"]) if cb.get("patch") else None
    with tempfile.TemporaryDirectory(prefix="mlrepro-diff-") as tmp:
        clone = os.path.join(tmp, "src")
        scratch_clone(root, clone)
        tree_a = tree_of(clone, ca["commit"], patch_a)
        tree_b = tree_of(clone, cb["commit"], patch_b)
        text = git(["diff", "--no-color", "--no-ext-diff", tree_a, tree_b], clone)
        commits = _commit_range(clone, ca["commit"], cb["commit"])
    return {"how": "git", "repo": root, "commits": commits, "unified_diff": _cap(text)}


def _commit_range(clone: str, a: str, b: str) -> list[dict]:
    """Commits in b not in a (`+`) and in a not in b (`-`), newest first."""
    if a == b:
        return []
    out = []
    for line in git(["log", "--left-right", "--format=%m%H%x09%s", f"{a}...{b}"],
                    clone).splitlines():
        mark, rest = line[:1], line[1:]
        commit, _, subject = rest.partition("\t")
        out.append({"side": "b" if mark == ">" else "a", "commit": commit, "subject": subject})
    return out


def _entry_point_changes(ca: dict, cb: dict, store, note: str | None) -> dict:
    texts = []
    for code in (ca, cb):
        digest = code.get("entry_point_object")
        try:
            texts.append(store.read_object(digest).decode("utf-8", "replace") if digest else "")
        except Exception:  # noqa: BLE001 - a missing object leaves that side empty
            texts.append("")
    name_a = ca.get("entry_point") or "entry point"
    name_b = cb.get("entry_point") or "entry point"
    lines = difflib.unified_diff(texts[0].splitlines(keepends=True),
                                 texts[1].splitlines(keepends=True),
                                 fromfile=f"a/{name_a}", tofile=f"b/{name_b}")
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    out = {"how": "entry point", "commits": [], "unified_diff": _cap(text.rstrip("\n"))}
    if note:
        out["note"] = note
    return out


def _cap(text: str) -> str:
    lines = text.splitlines()
    if len(lines) <= MAX_DIFF_LINES:
        return text
    return "\n".join(lines[:MAX_DIFF_LINES] + [f"... {len(lines) - MAX_DIFF_LINES} more lines"])


# -- text ---------------------------------------------------------------------------

def _v(value) -> str:
    return exact(value)


def _mapping_lines(diff: dict, indent: str = "  ") -> list[str]:
    lines = []
    for key, pair in diff["changed"].items():
        lines.append(f"{indent}changed  {_k(key)}: {_v(pair['a'])} -> {_v(pair['b'])}")
    for key, value in diff["added"].items():
        lines.append(f"{indent}added    {_k(key)}: {_v(value)}")
    for key, value in diff["removed"].items():
        lines.append(f"{indent}removed  {_k(key)} (was {_v(value)})")
    return lines


def _k(key) -> str:
    return short(str(key), KEY_WIDTH)


def _code_lines(code: dict) -> list[str]:
    src = code.get("source") or {}
    lines = []
    commit = code["commit"]
    if commit["same"]:
        lines.append(f"  commit     {(commit['a'] or 'none')[:12]} (both)")
    else:
        lines.append(f"  commit     {(commit['a'] or 'none')[:12]} -> "
                     f"{(commit['b'] or 'none')[:12]}")
        for c in src.get("commits") or []:
            lines.append(f"    {'+' if c['side'] == 'b' else '-'} {c['commit'][:12]} "
                         f"{c['subject']}")
    patch, size = code["patch"], code["patch_size"]
    if not patch["same"]:
        def p(d, s):
            return f"{d[:12]} ({s} bytes)" if d else "none"
        lines.append(f"  patch      {p(patch['a'], size['a'])} -> {p(patch['b'], size['b'])}")
    elif patch["a"]:
        lines.append(f"  patch      {patch['a'][:12]} (both)")
    if not code["entry_point"]["same"]:
        lines.append(f"  entry      {code['entry_point']['a']} -> {code['entry_point']['b']}")
    modules = code.get("modules") or {}
    for kind in ("changed", "added", "removed"):
        if modules.get(kind):
            lines.append(f"  {kind:<10} {', '.join(modules[kind][:10])}")
    args = code["arguments"]
    if not args["same"] and args.get("changes"):
        lines.append(f"  arguments  {'; '.join(args['changes'])}")
    elif not args["same"]:
        lines.append(f"  arguments  {' '.join(args['a'])} -> {' '.join(args['b'])}")
    if src.get("note"):
        lines.append(f"  note: {src['note']}")
    if src.get("unified_diff"):
        lines += ["    " + line for line in src["unified_diff"].splitlines()]
    elif code["same"]:
        lines.append("  same code")
    return lines


def _data_lines(data: dict, show_all: bool = True) -> list[str]:
    """One line per input that differs; identical ones on one `same:` line unless `show_all`."""
    lines, same = [], []
    for name, entry in data["inputs"].items():
        a, b = entry.get("a") or {}, entry.get("b") or {}
        if entry["status"] == "same" and not show_all:
            same.append(name)
        elif entry["status"] == "same":
            lines.append(f"  {name}: same ({a.get('kind')} {a.get('source')}, digest "
                         f"{(a.get('digest') or '-')[:12]})")
        elif entry["status"] in ("added", "removed"):
            side = b if entry["status"] == "added" else a
            lines.append(f"  {name}: {entry['status']} ({side.get('kind')} {side.get('source')})")
        else:
            lines.append(f"  {name}: changed, digest {(a.get('digest') or '-')[:12]} -> "
                         f"{(b.get('digest') or '-')[:12]}, size {a.get('size')} -> "
                         f"{b.get('size')}")
            for kind, paths in (entry.get("files") or {}).items():
                if paths:
                    lines.append(f"    files {kind}: {', '.join(paths[:10])}")
    if same:
        lines.append(f"  same: {', '.join(same)}")
    return lines or ["  no data recorded"]


def _metric_lines(metrics: dict, show_all: bool = True, hidden: dict | None = None,
                  width: int = 100) -> list[str]:
    """One line per metric (`name: A | B (where)`), or three where that is wider than `width`."""
    lines, same = [], []
    for name, m in metrics["metrics"].items():
        a, b = m["a"], m["b"]
        if not show_all and is_timing_metric(name):
            _count(hidden, "timing metric", 1)
            continue
        if not show_all and m["same_curve"]:
            same.append(name)
            continue

        def fmt(s):
            if not s["points"]:
                return "-"
            return f"final {number(s['final'])} @{s['final_step']}, {s['mode']} " \
                   f"{number(s['best'])} @{s['best_step']}"
        if m["same_curve"]:
            where = "same curve"
        elif m["first_difference"]:
            where = f"curves differ from step {m['first_difference']['step']}"
        else:
            where = "only in one run"
        line = f"  {name}: {fmt(a)}  |  {fmt(b)}  ({where})"
        if len(line) <= width:
            lines.append(line)
        else:
            lines += [f"  {name}: {where}", f"    A  {fmt(a)}", f"    B  {fmt(b)}"]
    if same:
        lines.append(f"  same curves: {', '.join(same[:8])}"
                     + (f" and {len(same) - 8} more" if len(same) > 8 else ""))
    if not lines and metrics["metrics"]:
        return ["  only timing metrics (not shown)"]
    return lines or ["  no metrics recorded"]


def diff_text(d: dict, *, show_all: bool = False, width: int = 100) -> str:
    """The comparison as text, one block per section.

    Identical params, inputs and metric curves and timing-only metrics (`epoch_time_s`,
    `examples_per_s`: they differ on every run) are counted, not printed, unless
    `show_all`; a last line says how many were left out and that `--all` shows them.
    """
    a, b = d["a"], d["b"]
    hidden: dict[str, int] = {}
    out = header_lines([a, b], d.get("labels") or run_labels([a, b]), width) + [
        "same fingerprint (the same experiment)" if d["same_fingerprint"] else "", "params:"]
    params = d["params"]
    unchanged = params.get("unchanged") or {}
    user = _mapping_lines(params["params"])
    auto = _mapping_lines(params["auto_params"], indent="    ")
    if show_all:
        user += [f"  same     {_k(k)}: {_v(v)}"
                 for k, v in (unchanged.get("params") or {}).items()]
        auto += [f"    same     {_k(k)}: {_v(v)}"
                 for k, v in (unchanged.get("auto_params") or {}).items()]
    else:
        _count(hidden, "identical param", len(unchanged.get("params") or {})
               + len(unchanged.get("auto_params") or {}))
    out += user or ["  same"]
    if auto:
        out += ["  auto-captured:"] + auto
    out += ["code:"] + _code_lines(d["code"])
    out += ["data:"] + _data_lines(d["data"], show_all)
    out += ["environment:"] + (["  " + line for line in environment_drift(d["environment"])]
                               or ["  same"])
    det = d["determinism"]
    if det["same"]:
        out += ["determinism:", f"  same (seed {det['a']['seed']}, deterministic "
                                f"{det['a']['deterministic']})"]
    else:
        out += ["determinism:"] + [f"  {k}: {_v(v['a'])} -> {_v(v['b'])}"
                                   for k, v in det["changed"].items()]
    out += ["metrics (A | B):"] + _metric_lines(d["metrics"], show_all, hidden, width)
    if hidden:
        parts = ", ".join(f"{n} {what}{'s' if n != 1 else ''}" for what, n in hidden.items())
        out.append(f"({parts} not shown; --all shows them)")
    return "\n".join(line for line in out if line != "")


def header_lines(briefs: list[dict], labels: list[str], width: int) -> list[str]:
    """`A  lr=0.01   <id>  <name>`: each run by what differs, then the id to pass to `show`
    (a label that is only the short id, where nothing differs, is not repeated)."""
    labels = ["" if label == short_id(brief["id"]) else label
              for brief, label in zip(briefs, labels)]
    room = max(len(label) for label in labels)
    lines = []
    for side, brief, label in zip("AB", briefs, labels):
        name = brief.get("name")
        name = "" if name in (None, "", brief["id"]) else short(str(name), 24)
        if name and (label == name or label.endswith(f"· {name}")):
            name = ""  # the label already is the name
        line = "  ".join(p for p in (side, label.ljust(room), brief["id"], name) if p).rstrip()
        lines.append(line if len(line) <= width else line[: max(width - 1, 1)] + "…")
    return lines


def _count(hidden: dict, what: str, n: int) -> None:
    if n:
        hidden[what] = hidden.get(what, 0) + n
