"""`mlrepro trace` of archives matched by their members: a plain `model.save` of the trained
model (other save metadata than the run's `model.keras`, the same weights), alone and inside a
SageMaker `model.tar.gz`, names the run; a model with other weights does not."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from mlrepro.cli import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Keras model trained under ReproCallback (which exports model.keras), saved plainly."""
    import keras

    import mlrepro.keras

    base = tmp_path_factory.mktemp("trace-archives")
    store = str(base / "store")
    cb = mlrepro.keras.ReproCallback(project="arch", store=store, seed=2, checkpoint=False,
                                     export=("keras",), tensorboard=False)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    model.fit(x, x[:, :1], epochs=1, batch_size=8, verbose=0, callbacks=[cb])
    plain = base / "model" / "plain.keras"
    plain.parent.mkdir()
    model.save(str(plain))
    other = keras.models.clone_model(model)  # same architecture, fresh weights
    other.save(str(base / "other.keras"))
    return {"store": store, "run": cb.run.id, "plain": plain, "other": base / "other.keras",
            "base": base}


def _trace(capsys, store, path):
    code = main(["trace", str(path), "--store", store, "--json"])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out.strip() else None)


def test_a_plain_model_save_is_traced_by_its_weights_member(trained, capsys):
    code, result = _trace(capsys, trained["store"], trained["plain"])
    assert code == 0 and [r["id"] for r in result["runs"]] == [trained["run"]]
    [match] = result["runs"][0]["matches"]
    assert match["how"] == "member"
    assert match["detail"] == ("'plain.keras:model.weights.h5' is member 'model.weights.h5' of "
                               "artifact 'model.keras'")


def test_a_model_tar_gz_holding_a_keras_file_names_the_run(trained, capsys, tmp_path):
    archive = tmp_path / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(trained["plain"], arcname="resnet.keras")
    code, result = _trace(capsys, trained["store"], archive)
    assert code == 0 and result["runs"][0]["id"] == trained["run"]
    assert "model.tar.gz:resnet.keras:model.weights.h5" in result["runs"][0]["matches"][0][
        "detail"]


def test_a_model_with_other_weights_is_not_tied_to_the_run(trained, capsys):
    # Same architecture, so config.json is the same: descriptive members tie nothing.
    code, result = _trace(capsys, trained["store"], trained["other"])
    assert code == 1 and result["runs"] == []
