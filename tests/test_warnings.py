"""mlrepro's warnings name the user's line (`train.py:7: MlreproWarning: ...`), not its own."""

from __future__ import annotations

import re
import textwrap

from conftest import child_env, run_py

WARNING_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+): MlreproWarning: ", re.M)


def _warnings_of(script, tmp_path, body: str) -> list[tuple[str, int]]:
    script.write_text(textwrap.dedent(body))
    proc = run_py([str(script)], cwd=str(tmp_path),
                  env=child_env(MLREPRO_SPOOL=str(tmp_path / "spool"), TF_CPP_MIN_LOG_LEVEL=3))
    assert proc.returncode == 0, proc.stderr[-3000:]
    found = [(m["file"], int(m["line"])) for m in WARNING_LINE.finditer(proc.stderr)]
    assert found, proc.stderr[-3000:]
    return found


def test_a_plain_api_warning_names_the_users_call(tmp_path):
    script = tmp_path / "user_script.py"
    found = _warnings_of(script, tmp_path, """\
        import mlrepro

        with mlrepro.start_run(project="w", store="store") as run:
            run.log_metrics({"loss": 0.5}, step=0)
            run.log_metrics({"loss": "not a number"}, step=1)
    """)
    assert found == [(str(script), 5)]


def test_a_warning_inside_fit_names_the_users_fit_line(tmp_path):
    """Raised in ReproCallback's on_train_begin, below Keras's fit: the user's `model.fit` line."""
    (tmp_path / "notadir").write_text("a file where the store directory should be")
    script = tmp_path / "train.py"
    found = _warnings_of(script, tmp_path, """\
        import numpy as np
        import keras
        import mlrepro.keras

        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
        model.compile(optimizer="sgd", loss="mse")
        x, y = np.zeros((8, 4), "float32"), np.zeros((8, 1), "float32")
        callback = mlrepro.keras.ReproCallback(project="w", store="notadir")
        model.fit(x, y, epochs=1, verbose=0,
                  callbacks=[callback])
    """)
    assert found and all(where == (str(script), 9) for where in found), found


def test_a_warning_in_python_dash_m_mlrepro_is_printed_not_an_internal_error(tmp_path):
    """`python -m mlrepro` runs mlrepro's __main__ as `__main__`: a warning there must not ask
    that module's loader for `__main__`'s source (it refuses: the command ended in an error)."""
    store = tmp_path / "store"
    assert run_py(["-c", "import mlrepro\nwith mlrepro.start_run(project='w', store=%r) as r:\n"
                   "    r.log_metrics({'loss': 0.5}, step=0)" % str(store)]).returncode == 0
    (store / "index.sqlite").write_bytes(b"not a database" * 64)  # rebuilt, with a warning
    proc = run_py(["-m", "mlrepro", "runs", "--store", str(store)])
    assert proc.returncode == 0, proc.stderr
    assert "MlreproWarning" in proc.stderr and "internal error" not in proc.stderr
