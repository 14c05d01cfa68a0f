"""Fixtures for the tf.estimator lane (TensorFlow 2.15): tiny data, tiny models, one store per test.

Run with `.venv-estimator/bin/python -m pytest -q tests/estimator` (`make test-estimator`).
"""

from __future__ import annotations

import importlib.util
import os

import pytest

if importlib.util.find_spec("tensorflow_estimator") is None:  # the main lane (TF >= 2.16)
    collect_ignore_glob = ["test_*.py"]
else:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from tiny_models import make_data

    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)

    @pytest.fixture(autouse=True)
    def isolated_env(tmp_path, monkeypatch):
        """Each test: its own store, spool and cache; no run left open afterwards."""
        monkeypatch.setenv("MLREPRO_STORE", str(tmp_path / "store"))
        monkeypatch.setenv("MLREPRO_SPOOL", str(tmp_path / "spool"))
        monkeypatch.setenv("MLREPRO_CACHE", str(tmp_path / "cache"))
        monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
        monkeypatch.chdir(tmp_path)
        yield
        from mlrepro._estimator import binding
        from mlrepro.core import registry

        for run in registry.active_runs():
            run.finish()
        binding._live.clear()
        binding._pointer_written.clear()

    @pytest.fixture
    def store(tmp_path):
        import mlrepro

        return mlrepro.open_store(str(tmp_path / "store"))

    @pytest.fixture
    def data():
        return make_data()


def pytest_configure(config):
    # Keras 2.15 draws initializer seeds with randint(1, 1e9): its own deprecation, not ours.
    config.addinivalue_line("filterwarnings",
                            "ignore:non-integer arguments to randrange:DeprecationWarning")
    config.addinivalue_line("filterwarnings",
                            "ignore:To make it possible to preserve tf.data options:UserWarning")
