"""One module owns every MLREPRO_* variable: one reader each, one reading of a flag."""

from __future__ import annotations

import ast
import os
import re

import pytest

import mlrepro
from mlrepro import env

from conftest import ROOT

PACKAGE = os.path.join(ROOT, "mlrepro")
NAME = re.compile(r"^MLREPRO_[A-Z0-9_]+$")


def _literals(path: str):
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                NAME.match(node.value):
            yield node.lineno, node.value


def test_no_module_but_env_names_an_mlrepro_variable():
    found = []
    for base, _dirs, files in os.walk(PACKAGE):
        for name in files:
            path = os.path.join(base, name)
            if name.endswith(".py") and path != os.path.join(PACKAGE, "env.py"):
                found += [f"{os.path.relpath(path, ROOT)}:{line} {value}"
                          for line, value in _literals(path)]
    assert found == []


def test_every_variable_is_declared_once_and_listed_in_the_docs():
    names = [v.name for v in env.ALL]
    assert len(names) == len(set(names))
    declared = {v.name for v in vars(env).values() if isinstance(v, env.Variable)}
    assert declared == set(names)
    table = open(os.path.join(ROOT, "docs", "development.md"), encoding="utf-8").read()
    assert [n for n in names if f"`{n}`" not in table] == []


@pytest.mark.parametrize("text,on", [("1", True), ("true", True), ("TRUE", True), (" yes ", True),
                                     ("on", True), ("0", False), ("false", False), ("no", False),
                                     ("", False), ("maybe", False)])
def test_a_flag_reads_the_same_everywhere(text, on):
    assert env.DISABLE.get({"MLREPRO_DISABLE": text}) is on
    assert env.SPOT.get({"MLREPRO_SPOT": text}) is on
    assert env.truthy(text) is on


def test_numbers_that_do_not_parse_or_are_too_small_read_as_the_default():
    assert env.PUSH_SECONDS.get({"MLREPRO_PUSH_SECONDS": "soon"}) == 300.0
    assert env.PUSH_SECONDS.get({"MLREPRO_PUSH_SECONDS": "0"}) == 300.0
    assert env.PUSH_SECONDS.get({"MLREPRO_PUSH_SECONDS": "2.5"}) == 2.5
    assert env.S3_RETRIES.get({"MLREPRO_S3_RETRIES": "0"}) == 3
    assert env.SEED.get({"MLREPRO_SEED": "-1"}) is None
    with pytest.raises(ValueError, match="MLREPRO_TF_PORT='http' is not a whole number"):
        env.TF_PORT.get({"MLREPRO_TF_PORT": "http"}, strict=True)


def test_disable_in_any_spelling_records_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("MLREPRO_DISABLE", "Yes")
    store = str(tmp_path / "disabled")
    with mlrepro.start_run(project="off", store=store) as run:
        run.log_metrics({"loss": 1.0}, step=0)
    assert run.writes is False and not os.path.exists(store)
