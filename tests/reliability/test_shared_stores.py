"""Stores other users read or write: a read-only store, file modes, two users on one directory.

The other user is `nobody`, reached with `setpriv` (needs root, as here and in CI; the
tests skip otherwise). Its commands run as real subprocesses of this checkout.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

import mlrepro
from mlrepro import record
from mlrepro.store.local import LocalStore

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from conftest import ROOT  # noqa: E402

WRITE_RUN = """
import os, sys
os.umask(int(sys.argv[3], 8))
import mlrepro
with mlrepro.start_run(project="team", store=sys.argv[1], name=sys.argv[2]) as run:
    for step in range(5):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
print(run.id)
"""


@pytest.fixture
def shared(tmp_path):
    """A directory under /tmp that `nobody` can reach, and the environment it runs with."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to act as another user (CI runs as root)")
    try:
        nobody = pwd.getpwnam("nobody")
        nogroup = grp.getgrnam("nogroup")
    except KeyError:
        pytest.skip("no user nobody / group nogroup here")
    base = tempfile.mkdtemp(prefix="mlrepro-shared-", dir="/tmp")
    os.chmod(base, 0o755)
    home = os.path.join(base, "home-nobody")
    os.mkdir(home)
    os.chown(home, nobody.pw_uid, nogroup.gr_gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLREPRO_")}
    env.update(PYTHONPATH=ROOT, HOME=home, MLREPRO_SPOOL=os.path.join(home, "spool"),
               MLREPRO_CACHE=os.path.join(home, "cache"), MLREPRO_FLUSH_SECONDS="0.2",
               TF_CPP_MIN_LOG_LEVEL="2", PYTHONDONTWRITEBYTECODE="1")
    probe = _as_nobody(["-c", "import mlrepro"], env)
    if probe.returncode != 0:
        pytest.skip(f"nobody cannot run this checkout's python: {probe.stderr.strip()}")
    yield base, env, nogroup.gr_gid
    shutil.rmtree(base, ignore_errors=True)


def _as_nobody(args, env, *, cwd="/"):
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _as_root(args, env):
    return subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=300)


def _files(store_dir):
    out = {}
    for root, dirs, files in os.walk(store_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            out[os.path.relpath(path, store_dir)] = os.lstat(path)
    return out


def _two_runs(store_dir, tmp_path):
    artifact = tmp_path / "weights.bin"
    artifact.write_bytes(b"w" * 100)
    runs = []
    for lr in (0.1, 0.01):
        # capture=False: inside a pytest process that has imported every test module, the
        # code capture stores them all, and a writer still at it after finish's timeout
        # would change the store under the read-only comparison below
        with mlrepro.start_run(project="p", store=store_dir, params={"lr": lr},
                               capture=False) as run:
            for step in range(5):
                run.log_metrics({"loss": lr / (step + 1)}, step=step)
            run.log_artifact(str(artifact), "weights.bin")
        runs.append(run.id)
    return runs


def test_a_read_only_store_serves_every_read_command_to_another_user(shared, tmp_path):
    base, env, _gid = shared
    store_dir = os.path.join(base, "store")
    old = os.umask(0o022)
    try:
        a, b = _two_runs(store_dir, tmp_path)
    finally:
        os.umask(old)
    LocalStore(store_dir).close()
    weights = os.path.join(base, "weights.bin")
    shutil.copy(str(tmp_path / "weights.bin"), weights)
    os.chmod(weights, 0o644)
    report = os.path.join(env["HOME"], "report.html")
    before = {k: (v.st_mode, v.st_size, v.st_mtime_ns) for k, v in _files(store_dir).items()}
    commands = [["runs"], ["runs", "--json"], ["runs", "--sort", "loss", "--limit", "1"],
                ["runs", "--param", "lr=0.1"], ["show", a], ["show", a, "--metrics"],
                ["show", a, "--json", "--metrics"], ["diff", a, b],
                ["report", a, b, "-o", report], ["trace", weights]]
    for args in commands:
        proc = _as_nobody(["-m", "mlrepro", *args, "--store", store_dir], env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "error" not in proc.stderr, (args, proc.stderr)
        assert "MlreproWarning" not in proc.stderr, (args, proc.stderr)  # its index served
    proc = _as_nobody(["-m", "mlrepro", "runs", "--json", "--store", store_dir], env)
    assert {r["id"] for r in json.loads(proc.stdout)} == {a, b}
    assert os.path.getsize(report) > 0
    # `index --rebuild` writes: refused in one line naming why, exit 2
    proc = _as_nobody(["-m", "mlrepro", "index", "--rebuild", "--store", store_dir], env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "may not write" in proc.stderr
    # nobody changed nothing in the store
    after = {k: (v.st_mode, v.st_size, v.st_mtime_ns) for k, v in _files(store_dir).items()}
    assert after == before


def test_a_run_json_another_user_cannot_read_is_one_unreadable_run(shared, tmp_path):
    """Runs written before modes followed the umask have a run.json of mode 0600."""
    base, env, _gid = shared
    store_dir = os.path.join(base, "store")
    a, b = _two_runs(store_dir, tmp_path)
    LocalStore(store_dir).close()
    os.chmod(os.path.join(store_dir, record.RUNS_DIR, b, record.MANIFEST_FILE), 0o600)
    proc = _as_nobody(["-m", "mlrepro", "show", b, "--store", store_dir], env)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "Permission denied" in proc.stderr and "chmod -R a+rX" in proc.stderr
    assert _as_nobody(["-m", "mlrepro", "show", a, "--store", store_dir], env).returncode == 0
    for name in os.listdir(store_dir):  # listing from the manifests skips just that run
        if name.startswith(record.INDEX_FILE):
            os.remove(os.path.join(store_dir, name))
    proc = _as_nobody(["-m", "mlrepro", "runs", "--json", "--store", store_dir], env)
    assert proc.returncode == 0, proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == [a]
    assert "1 runs are unreadable" in proc.stderr and "chmod -R a+rX" in proc.stderr


def test_a_read_only_store_without_an_index_lists_from_its_manifests(shared, tmp_path):
    base, env, _gid = shared
    store_dir = os.path.join(base, "store")
    a, b = _two_runs(store_dir, tmp_path)
    LocalStore(store_dir).close()
    for name in os.listdir(store_dir):
        if name.startswith(record.INDEX_FILE):
            os.remove(os.path.join(store_dir, name))
    proc = _as_nobody(["-m", "mlrepro", "runs", "--json", "--store", store_dir], env)
    assert proc.returncode == 0, proc.stderr
    assert {r["id"] for r in json.loads(proc.stdout)} == {a, b}
    notes = [line for line in proc.stderr.splitlines() if "MlreproWarning" in line]
    assert len(notes) == 1 and "from its run manifests" in notes[0]
    assert "this user cannot write the store, and its index does not exist" in notes[0]
    assert not os.path.exists(os.path.join(store_dir, record.INDEX_FILE))


@pytest.mark.parametrize("umask, file_mode, dir_mode", [(0o022, 0o644, 0o755),
                                                         (0o002, 0o664, 0o775),
                                                         (0o077, 0o600, 0o700)])
def test_every_file_of_a_store_follows_the_umask(tmp_path, umask, file_mode, dir_mode):
    store_dir = str(tmp_path / "store")
    old = os.umask(umask)
    try:
        _two_runs(store_dir, tmp_path)
        LocalStore(store_dir).list_runs()
    finally:
        os.umask(old)
    objects = os.path.join(record.OBJECTS_DIR, "")
    modes = {}
    for rel, st in _files(store_dir).items():
        if stat.S_ISDIR(st.st_mode):
            want = dir_mode
        elif rel.startswith(objects):
            want = 0o444 & ~umask  # objects never change
        else:
            want = file_mode
        modes[rel] = (oct(stat.S_IMODE(st.st_mode)), oct(want))
    assert any(rel.endswith(record.MANIFEST_FILE) for rel in modes)
    assert record.INDEX_FILE in modes
    assert {rel: m for rel, m in modes.items() if m[0] != m[1]} == {}


def test_two_users_share_one_store_directory(shared):
    """A team directory (group nogroup, setgid, umask 002): root and nobody each write runs,
    and each lists and shows the other's, through one index and without spooling."""
    base, env, gid = shared
    team = os.path.join(base, "team")
    os.mkdir(team)
    os.chown(team, 0, gid)
    os.chmod(team, 0o2775)
    ids = {}
    for who, name in (("root", "r1"), ("nobody", "n1"), ("root", "r2"), ("nobody", "n2")):
        run = _as_nobody if who == "nobody" else _as_root
        proc = run(["-c", WRITE_RUN, team, name, "002"], env)
        assert proc.returncode == 0, proc.stderr
        assert "MlreproWarning" not in proc.stderr, proc.stderr  # nothing spooled or dropped
        ids[name] = proc.stdout.split()[-1]
    index = os.stat(os.path.join(team, record.INDEX_FILE))
    assert stat.S_IMODE(index.st_mode) & 0o060 == 0o060 and index.st_gid == gid
    for run in (_as_root, _as_nobody):
        proc = run(["-m", "mlrepro", "runs", "--json", "--store", team], env)
        assert proc.returncode == 0 and "MlreproWarning" not in proc.stderr, proc.stderr
        assert {r["name"] for r in json.loads(proc.stdout)} == set(ids)
        for name in ("r1", "n1"):
            proc = run(["-m", "mlrepro", "show", ids[name], "--metrics", "--store", team], env)
            assert proc.returncode == 0, proc.stderr
            assert "loss (5 points)" in proc.stdout


def test_a_user_who_cannot_write_the_index_still_records_runs_into_the_store(shared):
    """An index left 0644 by an older mlrepro or another umask: the run is recorded in the
    store (not spooled) with one warning naming the fix, and everyone lists it."""
    base, env, gid = shared
    team = os.path.join(base, "team")
    os.mkdir(team)
    os.chown(team, 0, gid)
    os.chmod(team, 0o2775)
    first = _as_root(["-c", WRITE_RUN, team, "r1", "002"], env)
    assert first.returncode == 0, first.stderr
    os.chmod(os.path.join(team, record.INDEX_FILE), 0o644)
    proc = _as_nobody(["-c", WRITE_RUN, team, "n1", "002"], env)
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if "MlreproWarning" in line]
    assert len(notes) == 1 and "cannot write the index" in notes[0] and "g+w" in notes[0]
    run_id = proc.stdout.split()[-1]
    assert os.path.exists(os.path.join(team, record.RUNS_DIR, run_id, record.MANIFEST_FILE))
    for run in (_as_nobody, _as_root):
        proc = run(["-m", "mlrepro", "runs", "--json", "--store", team], env)
        assert proc.returncode == 0, proc.stderr
        assert {r["name"] for r in json.loads(proc.stdout)} == {"r1", "n1"}
