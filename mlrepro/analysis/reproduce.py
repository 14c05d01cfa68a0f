"""`mlrepro reproduce RUN`: rebuild a run's code, check environment and data, re-run it, judge.

The code is rebuilt in a scratch clone (commit + stored patch, or the stored
script), and the recorded working directory's other files are copied in beside it
(`mlrepro.analysis.workdir`), so relative data paths work and no write of the
re-run reaches the original's files; the environment and data are compared with
the record (drift is listed; `--strict` refuses on environment drift, data drift
refuses unless `--allow-data-drift`); the recorded command is re-run with the current Python,
recording a new run whose parent is `reproduction-of` the old one; and the two
runs' metrics and artifacts decide the verdict. Exit 0: bit-identical or within
tolerance; 1: diverged; 2: refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from mlrepro import env
from mlrepro.analysis.artifacts import compare_run_artifacts
from mlrepro.analysis.rebuild import Rebuilt, rebuild_code
from mlrepro.analysis.recheck import CHANGED, MISSING, recheck_data, recorded_paths
from mlrepro.analysis.workdir import DEFAULT_LIMIT_MB, populate, redirect_state_dirs
from mlrepro.capture.environment import capture_environment
from mlrepro.capture.redact import REDACTED
from mlrepro.compare import (compare_curves, diff_data, diff_environment, diff_mapping,
                             environment_drift, judge)
from mlrepro.compare.artifacts import ADDED
from mlrepro.compare.curves import DEFAULT_IGNORED
from mlrepro.compare.sections import is_empty
from mlrepro.core.run import REPRODUCTION_OF
from mlrepro.errors import MlreproError
from mlrepro.record import FINISHED, RUNNING
from mlrepro.store import ManifestWrite

DEFAULT_RTOL = 1e-6
DEFAULT_ATOL = 1e-9


@dataclass(frozen=True)
class ReproduceOptions:
    """How `reproduce_run` checks and re-runs (the `mlrepro reproduce` flags).

    Args:
        repo: the git repository holding the run's commit (default: found from the record).
        check_only: rebuild and check, but do not re-run.
        strict: refuse when the environment differs from the recorded one.
        allow_data_drift: re-run even when recorded data changed.
        rtol, atol: tolerances for metric values.
        ignore: metric name globs not compared (timings by default).
        python: the interpreter for the re-run (default: this one).
        stored_source: if the commit cannot be found, re-run the stored entry point alone.
        keep: keep the scratch tree.
        timeout: give up on the re-run after this many seconds.
        copy_limit_mb: refuse to copy more than this many megabytes of the recorded
            working directory into the re-run's.
    """

    repo: str | None = None
    check_only: bool = False
    strict: bool = False
    allow_data_drift: bool = False
    rtol: float = DEFAULT_RTOL
    atol: float = DEFAULT_ATOL
    ignore: tuple = DEFAULT_IGNORED
    python: str | None = None
    stored_source: bool = False
    keep: bool = False
    timeout: float | None = None
    copy_limit_mb: float = DEFAULT_LIMIT_MB


@dataclass
class Reproduction:
    """Everything one `reproduce` found, for printing and for `--json`."""

    run_id: str
    environment_drift: list[str] = field(default_factory=list)
    data: list = field(default_factory=list)
    code: dict = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    cwd: str = ""
    workdir: dict = field(default_factory=dict)
    new_run: str | None = None
    after: list[str] = field(default_factory=list)
    verdict: dict | None = None

    def to_json(self) -> dict:
        out = dict(self.__dict__)
        out["data"] = [d.to_json() for d in self.data]
        return out


def current_environment(python: str | None = None) -> dict:
    """The environment a re-run will have: this interpreter's, or `python`'s."""
    if not python or os.path.realpath(python) == os.path.realpath(sys.executable):
        return capture_environment()
    code = ("import json; from mlrepro.capture.environment import capture_environment as c; "
            "print(json.dumps(c(), default=str))")
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120)
    except OSError as exc:
        raise MlreproError(f"--python {python} cannot be run ({exc}): give the path of a Python "
                           "interpreter")
    if proc.returncode != 0:
        raise MlreproError(f"--python {python} cannot import mlrepro ({proc.stderr.strip()[-200:]})"
                           ": install mlrepro into that environment")
    return json.loads(proc.stdout)


def _input_paths(manifest: dict) -> set[str]:
    out = set()
    for fp in (manifest.get("data") or {}).values():
        for part in [fp, *((fp or {}).get("parts") or {}).values()]:
            out.update(os.path.normpath(p) for p in recorded_paths(part or {}) or [])
    return out


def command_for(manifest: dict, rebuilt: Rebuilt, python: str, notes: list[str]) -> list[str]:
    """The recorded command line, pointed at the rebuilt entry point.

    A relative argument that named one of the run's recorded data inputs (seen
    from the recorded working directory) becomes absolute, since the re-run starts
    in the scratch tree; every other argument is passed as recorded.
    """
    code = manifest.get("code") or {}
    argv = list(code.get("argv") or [])
    if not argv:
        raise MlreproError(f"run {manifest['id']} recorded no command line: re-run its script "
                           "by hand with MLREPRO_PARENT set")
    args = argv[1:]
    for i, arg in enumerate(args):
        if REDACTED in arg:
            raise MlreproError(f"argument {i + 1} of run {manifest['id']}'s command was redacted "
                               f"as a secret ({arg!r}), so it cannot be re-run as recorded: run "
                               f"the script by hand with MLREPRO_PARENT='{{\"kind\": "
                               f"\"{REPRODUCTION_OF}\", \"run\": \"{manifest['id']}\"}}'")
    inputs = _input_paths(manifest)
    recorded_cwd = code.get("cwd")
    if inputs and recorded_cwd:
        for i, arg in enumerate(args):
            prefix, sep, value = arg.partition("=") if arg.startswith("-") else ("", "", arg)
            if not value or os.path.isabs(value):
                continue
            full = os.path.normpath(os.path.join(recorded_cwd, value))
            if full in inputs and not os.path.exists(os.path.join(rebuilt.cwd, value)):
                args[i] = prefix + sep + full
                notes.append(f"data argument {value!r} resolved against the recorded working "
                             f"directory: {full}")
    return [python, rebuilt.entry, *args]


def _child_env(manifest: dict, store_uri: str, scratch: str) -> dict:
    out = dict(os.environ)
    out["TMPDIR"] = os.path.join(scratch, "tmp")  # the re-run's temporary files go with it
    os.makedirs(out["TMPDIR"], exist_ok=True)
    out[env.STORE.name] = store_uri
    out[env.PARENT.name] = json.dumps({"kind": REPRODUCTION_OF, "run": manifest["id"]})
    out.pop(env.DISABLE.name, None)  # the re-run must be recorded
    det = manifest.get("determinism") or {}
    if det.get("seed_generated") and manifest.get("seed") is not None:
        out[env.SEED.name] = str(manifest["seed"])
    if det.get("python_hash_seed") is not None:
        out["PYTHONHASHSEED"] = str(det["python_hash_seed"])
    return out


def _find_new_run(store, before: set, run_id: str) -> dict | None:
    found = []
    for new_id in set(store.run_ids()) - before:
        try:
            m = store.read_manifest(new_id)
        except MlreproError:
            continue
        parent = m.get("parent") or {}
        if parent.get("run") == run_id and parent.get("kind") == REPRODUCTION_OF:
            found.append(m)
    found.sort(key=lambda m: m.get("start_time") or 0)
    return found[0] if found else None


def _code_after(old: dict, new: dict) -> str:
    ca, cb = old.get("code") or {}, new.get("code") or {}
    keys = ("commit", "patch", "entry_point_object")
    differing = [k for k in keys if ca.get(k) != cb.get(k)]
    if not differing:
        return "same commit, patch and entry point as recorded"
    return "differs from the record in " + ", ".join(differing)


def reproduce_run(store, ref: str, options: ReproduceOptions | None = None, *, say=print,
                  child_stdout=None) -> Reproduction:
    """Rebuild, check and re-run one recorded run; see the module docstring.

    `say` prints each finding as it is made; `child_stdout` is where the re-run's
    output goes (default: this process's stdout).

    Raises `MlreproError` (exit 2) when it refuses: data drift without
    `allow_data_drift`, environment drift with `strict`, code that cannot be rebuilt.

    Example:
        >>> result = reproduce_run(mlrepro.open_store("runs"), "20261128")  # doctest: +SKIP
        >>> result.verdict["kind"]                                          # doctest: +SKIP
        'bit-identical'
    """
    options = options or ReproduceOptions()
    run_id = store.resolve(ref)
    m = store.read_manifest(run_id)
    out = Reproduction(run_id=run_id)
    python = options.python or sys.executable
    say(f"reproducing {run_id} (project {m.get('project')}, name {m.get('name')})")
    tmp = tempfile.mkdtemp(prefix="mlrepro-reproduce-")
    try:
        rebuilt = rebuild_code(m, store, os.path.join(tmp, "src"), repo=options.repo,
                               stored_source=options.stored_source)
        out.code = {"how": rebuilt.how, "notes": rebuilt.notes, "root": rebuilt.root}
        say(f"code         {rebuilt.how}")
        for note in rebuilt.notes:
            say(f"             {note}")
        _check_environment(m, python, options, out, say)
        _check_data(m, options, out, say)
        _populate_workdir(store, m, rebuilt, tmp, options, out, say)
        notes: list[str] = []
        out.command = command_for(m, rebuilt, python, notes)
        out.command[2:] = redirect_state_dirs(m, out.command[2:], tmp, notes)
        out.cwd = rebuilt.cwd
        for note in notes:
            say(f"             {note}")
        say(f"command      {' '.join(out.command)}")
        if options.check_only:
            say("check only   every check passed; the run was not re-run")
            return out
        new = _rerun(store, m, out, options, say, child_stdout, tmp)
        if new is not None:
            _judge(store, m, new, out, options, say)
        return out
    finally:
        if options.keep:
            say(f"scratch tree kept at {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _populate_workdir(store, m: dict, rebuilt: Rebuilt, scratch: str,
                      options: ReproduceOptions, out: Reproduction, say) -> None:
    """The recorded working directory's files, copied beside the rebuilt code."""
    recorded_cwd = (m.get("code") or {}).get("cwd")
    done = populate(recorded_cwd, rebuilt.cwd, m["id"],
                    skip=[getattr(store, "root", None), scratch],
                    limit_mb=options.copy_limit_mb, dry_run=options.check_only)
    out.workdir = {"source": done.source, "files": done.files, "bytes": done.bytes,
                   "skipped": done.skipped}
    for note in done.notes:
        say(f"             {note}")


def _check_environment(m: dict, python: str, options: ReproduceOptions, out: Reproduction,
                       say) -> None:
    """The re-run's environment against the record; refuses on drift with `strict`."""
    env_now = current_environment(python)
    # Variables are compared after the re-run, from what the new run records: a
    # script (and mlrepro's own determinism switches) may set variables itself.
    out.environment_drift = environment_drift(
        diff_environment(m.get("environment") or {}, env_now, variables=False))
    if out.environment_drift:
        n = len(out.environment_drift)
        say(f"environment  {n} difference{'' if n == 1 else 's'} from the record:")
        for line in out.environment_drift:
            say(f"             {line}")
    else:
        say("environment  same as recorded")
    if out.environment_drift and options.strict:
        raise MlreproError(f"the environment differs from run {m['id']}'s "
                           f"({out.environment_drift[0]}"
                           + (f" and {len(out.environment_drift) - 1} more"
                              if len(out.environment_drift) > 1 else "")
                           + "): recreate the recorded environment, or drop --strict")


def _check_data(m: dict, options: ReproduceOptions, out: Reproduction, say) -> None:
    """The recorded data inputs fingerprinted again; refuses on drift unless allowed."""
    out.data = recheck_data(m.get("data") or {})
    for check in out.data:
        say(f"data         {check.name}: {check.status} ({check.detail})")
    if not out.data:
        say("data         none recorded")
    drifted = [c for c in out.data if c.status in (CHANGED, MISSING)]
    if drifted and not options.allow_data_drift:
        c = drifted[0]
        raise MlreproError(f"data {c.name!r} {c.status} since run {m['id']} was recorded "
                           f"({c.detail}): restore the recorded data, or pass "
                           "--allow-data-drift to re-run on the current data")


def _rerun(store, m: dict, out: Reproduction, options: ReproduceOptions, say,
           child_stdout, scratch: str) -> dict | None:
    """Run the command; the new run's manifest, or None (with a `failed` verdict) if it failed."""
    before = set(store.run_ids())
    started = time.time()
    try:
        proc = subprocess.run(out.command, cwd=out.cwd, env=_child_env(m, store.uri, scratch),
                              timeout=options.timeout, stdout=child_stdout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
    new = _find_new_run(store, before, m["id"])
    if code != 0 and new is not None and store.effective_status(m) not in (FINISHED, RUNNING):
        say(f"re-run       stopped too (exit {code}, run {new['id']} {new.get('status')}): "
            "judged on the steps the original reached")
        code = 0  # the original stopped as well: what both reached is compared
    if code != 0:
        status = f"exit {code}" if code is not None else f"timed out after {options.timeout:g}s"
        message = f"the re-run failed ({status}" + (
            f"; run {new['id']} is {new.get('status')})" if new else ")")
        out.new_run = new["id"] if new else None
        out.verdict = {"kind": "failed", "message": message, "details": [], "exit_code": 1}
        say(f"verdict      {message}")
        return None
    if new is None:
        raise MlreproError(f"the re-run finished in {time.time() - started:.0f}s but recorded "
                           f"no run in {store.uri} with parent {m['id']}: does the script call "
                           "mlrepro.start_run (or use ReproCallback)?")
    out.new_run = new["id"]
    say(f"new run      {new['id']} ({REPRODUCTION_OF} {m['id']})")
    return new


def _judge(store, m: dict, new: dict, out: Reproduction, options: ReproduceOptions,
           say) -> None:
    """Compare the two runs' records, curves and artifacts; file the verdict in the new run."""
    _after_checks(m, new, out, say)
    old_series = store.read_points(m["id"]).series
    new_series = store.read_points(new["id"]).series
    status = store.effective_status(m)
    stopped = _stopped_at(status, old_series)
    if stopped is not None:
        new_series = {name: [p for p in points if int(p[0]) <= stopped]
                      for name, points in new_series.items()}
        new_series = {name: points for name, points in new_series.items() if points}
    curves = compare_curves(old_series, new_series,
                            rtol=options.rtol, atol=options.atol, ignore=options.ignore)
    artifacts = compare_run_artifacts(store, m, new)
    if stopped is not None:  # what the original never got to write is not a difference
        artifacts = [a for a in artifacts if a["status"] != ADDED]
    verdict = judge(curves, artifacts)
    verdict.details += _initial_state_lines(m, new)
    if stopped is not None and verdict.exit_code == 0:
        verdict.message = (f"identical up to step {stopped} where the original stopped "
                           f"({status}): {verdict.message}")
    out.verdict = dict(verdict.to_json(), curves=curves.to_json())
    if stopped is not None:
        out.verdict["partial"] = {"original_status": status, "up_to_step": stopped}
    say(f"verdict      {verdict.message}")
    for line in verdict.details:
        say(f"             {line}")
    _record_verdict(store, new["id"], m["id"], out.verdict, options.rtol, options.atol)


def _initial_state_lines(old: dict, new: dict) -> list[str]:
    """What the verdict owes to a model built before seeding (see mlrepro._keras.initial_state)."""
    det_old, det_new = old.get("determinism") or {}, new.get("determinism") or {}
    if not det_old.get("model_built_before_seed"):
        return []
    if det_new.get("initial_state_restored_from") == old["id"]:
        return ["the original's model was built before seeding: the re-run started from its "
                "recorded initial state (artifact initial_state), not from seeded weights"]
    return ["the original's model was built before seeding and no initial state was restored, "
            "so the runs started from different weights: create ReproCallback before the model"]


def _stopped_at(status: str, series: dict) -> int | None:
    """The last step a crashed or killed original reached (None: it finished or runs)."""
    if status in (FINISHED, RUNNING):
        return None
    steps = [int(p[0]) for points in series.values() for p in points]
    return max(steps) if steps else None


def _after_checks(old: dict, new: dict, out: Reproduction, say) -> None:
    """What the new run itself recorded, against the old record."""
    lines = [f"code         {_code_after(old, new)}"]
    params = diff_mapping(old.get("params"), new.get("params"))
    if not is_empty(params):
        changed = list(params["changed"]) + list(params["added"]) + list(params["removed"])
        lines.append(f"params       differ from the record: {', '.join(changed)}")
    data = diff_data(old.get("data") or {}, new.get("data") or {})
    if not data["same"]:
        names = [n for n, e in data["inputs"].items() if e["status"] != "same"]
        lines.append(f"data         the new run read different data: {', '.join(names)}")
    drift = environment_drift(diff_environment(old.get("environment") or {},
                                               new.get("environment") or {}))
    drift = [line for line in drift if line not in out.environment_drift]
    if drift:
        lines.append(f"environment  the new run recorded {len(drift)} more difference"
                     f"{'' if len(drift) == 1 else 's'}: " + "; ".join(drift[:5])
                     + (" ..." if len(drift) > 5 else ""))
    out.after = lines
    for line in lines:
        say(line)


def _record_verdict(store, new_id: str, old_id: str, verdict: dict, rtol, atol) -> None:
    """File the verdict in the new run's record, so `mlrepro show` tells it later."""
    try:
        manifest = store.read_manifest(new_id)
        manifest["reproduction"] = {"of": old_id, "verdict": verdict["kind"],
                                    "message": verdict["message"], "rtol": rtol, "atol": atol,
                                    "checked_at": time.time()}
        store.write_batch([ManifestWrite(new_id, manifest)])
    except Exception as exc:  # noqa: BLE001 - the verdict stands even if it cannot be filed
        print(f"mlrepro: could not file the verdict in run {new_id} ({exc})", file=sys.stderr)
