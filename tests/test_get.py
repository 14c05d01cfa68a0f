"""`mlrepro get RUN [ARTIFACT] [-o PATH]`: artifacts copied out of a local or S3 store."""

from __future__ import annotations

import os

import pytest

import mlrepro
from mlrepro.aws.remote import push
from mlrepro.cli import main
from mlrepro.store.local import LocalStore

from s3_moto import moto, s3_env  # noqa: F401


@pytest.fixture
def run_id(store_dir, tmp_path):
    """A finished run that logged a file and a directory artifact."""
    src = tmp_path / "src"
    (src / "export" / "variables").mkdir(parents=True)
    (src / "export" / "saved_model.pb").write_bytes(b"graph" * 100)
    (src / "export" / "variables" / "variables.index").write_bytes(b"\x00\x01index")
    (src / "weights.h5").write_bytes(os.urandom(3000))
    with mlrepro.start_run(project="p", store=store_dir, capture=False) as run:
        run.log_artifact(str(src / "weights.h5"), "model/weights.h5", wait=True)
        run.log_artifact(str(src / "export"), "saved_model", wait=True)
    return run.id


def test_get_copies_a_file_and_a_directory_byte_for_byte(run_id, store_dir, tmp_path, capsys):
    src = tmp_path / "src"
    out = tmp_path / "out"
    assert main(["get", run_id[:12], "model/weights.h5", "-o", str(out / "w.h5"),
                 "--store", store_dir]) == 0
    assert (out / "w.h5").read_bytes() == (src / "weights.h5").read_bytes()
    assert main(["get", run_id, "saved_model", "-o", str(out / "sm"), "--store", store_dir]) == 0
    assert (out / "sm" / "saved_model.pb").read_bytes() == b"graph" * 100
    assert (out / "sm" / "variables" / "variables.index").read_bytes() == b"\x00\x01index"
    assert "saved_model -> " in capsys.readouterr().out


def test_get_without_an_artifact_copies_every_one_under_its_name(run_id, store_dir, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["get", run_id, "--store", store_dir]) == 0
    assert (tmp_path / run_id / "model" / "weights.h5").read_bytes() == \
        (tmp_path / "src" / "weights.h5").read_bytes()
    assert (tmp_path / run_id / "saved_model" / "saved_model.pb").is_file()


def test_get_refuses_bad_input_in_one_line_with_exit_2(run_id, store_dir, tmp_path, capsys):
    target = tmp_path / "w.h5"
    target.write_bytes(b"mine")
    cases = [
        (["get", run_id, "nope"], "has no artifact 'nope': choose one of model/weights.h5, "
                                  "saved_model"),
        (["get", "zzzz"], "no run matches 'zzzz'"),
        (["get", run_id, "model/weights.h5", "-o", str(target)], "exists: pass -o"),
    ]
    for argv, message in cases:
        assert main([*argv, "--store", store_dir]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert target.read_bytes() == b"mine"  # nothing was overwritten
    assert main(["get", run_id, "model/weights.h5", "-o", str(target), "--force",
                 "--store", store_dir]) == 0
    assert target.read_bytes() != b"mine"


def test_a_damaged_object_is_refused_not_written(run_id, store_dir, tmp_path, capsys):
    store = LocalStore(store_dir)
    digest = store.read_manifest(run_id)["artifacts"]["model/weights.h5"]["digest"]
    path = store.object_path(digest)
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.write(b"X")
    out = tmp_path / "w.h5"
    assert main(["get", run_id, "model/weights.h5", "-o", str(out), "--store", store_dir]) == 2
    assert "does not match its digest" in capsys.readouterr().err
    assert not out.exists()
    assert not [n for n in os.listdir(tmp_path) if "mlrepro-get" in n]  # no torn file left


def test_get_copies_out_of_an_s3_store(s3_env, run_id, store_dir, tmp_path):
    uri = f"s3://{s3_env}/team"
    push(LocalStore(store_dir), mlrepro.open_store(uri), [run_id])
    out = tmp_path / "from-s3"
    assert main(["get", run_id, "saved_model", "-o", str(out), "--store", uri]) == 0
    assert (out / "saved_model.pb").read_bytes() == b"graph" * 100
    assert main(["get", run_id, "model/weights.h5", "-o", str(out / "w.h5"), "--store", uri]) == 0
    assert (out / "w.h5").read_bytes() == (tmp_path / "src" / "weights.h5").read_bytes()
