"""`ict predict` on folders, on s3:// models and images, in batches; `ict --version`."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ict_trainer import __version__, predict
from ict_trainer.cli import main
from tests.conftest import S3Server
from tests.helpers import image_tree

pytestmark = pytest.mark.usefixtures("private_cache")


@pytest.fixture
def run(tmp_path):
    """What a run leaves that predict reads: model.keras (32 px, one sigmoid) and metrics.json."""
    folder = tmp_path / "run"
    folder.mkdir()
    inputs = keras.Input((32, 32, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(pooled))
    model.save(folder / "model.keras")
    (folder / "metrics.json").write_text(json.dumps({"classNames": ["cats", "dogs"]}))
    return folder


def rows(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_predict_searches_folders_recursively(run, tmp_path, capsys):
    pictures = image_tree(tmp_path / "pictures", {"2024": 2, "2024/june": 2, ".hidden": 1})
    (pictures / "notes.txt").write_text("not an image")
    single = image_tree(tmp_path / "single", {"": 1}, suffix=".png") / "img0.png"
    assert main(["predict", str(run / "model.keras"), str(pictures), str(single), "--json"]) == 0
    found = rows(capsys)
    assert [row["image"] for row in found] == [
        str(pictures / "2024" / "img0.jpg"),
        str(pictures / "2024" / "img1.jpg"),
        str(pictures / "2024" / "june" / "img0.jpg"),
        str(pictures / "2024" / "june" / "img1.jpg"),
        str(single),
    ]
    assert {row["class"] for row in found} <= {"cats", "dogs"}


def test_predict_calls_the_model_batch_by_batch_as_rows_are_taken(run, tmp_path, monkeypatch):
    pictures = image_tree(tmp_path / "pictures", {"a": 5})
    seen = []
    real_load = predict.load_model

    def recording_load(path):
        model = real_load(path)
        original = model.predict_on_batch
        model.predict_on_batch = lambda batch: seen.append(len(batch)) or original(batch)
        return model

    monkeypatch.setattr(predict, "load_model", recording_load)
    found = predict.predict_files(str(run / "model.keras"), [str(pictures)], batch_size=2)
    next(found)
    assert seen == [2]  # the first rows come before the other images are looked at
    assert len(list(found)) == 4 and seen == [2, 2, 1]


@pytest.mark.s3
def test_predict_takes_s3_models_and_images(
    moto_s3: S3Server, aws_env, make_bucket, run, tmp_path, capsys
):
    aws_env(moto_s3.endpoint, moto_s3.credentials)
    bucket = make_bucket(moto_s3)
    client = moto_s3.client()
    for name in ("model.keras", "metrics.json"):
        client.upload_file(str(run / name), bucket, f"runs/a/{name}")
    pictures = image_tree(tmp_path / "pictures", {"x": 2, "x/y": 1})
    for path in sorted(pictures.rglob("*.jpg")):
        client.upload_file(str(path), bucket, f"photos/{path.relative_to(pictures).as_posix()}")
    model = f"s3://{bucket}/runs/a/model.keras"
    assert (
        main(
            [
                "predict",
                model,
                f"s3://{bucket}/photos",
                f"s3://{bucket}/photos/x/img0.jpg",
                "--json",
            ]
        )
        == 0
    )
    assert [row["image"] for row in rows(capsys)] == [
        f"s3://{bucket}/photos/x/img0.jpg",
        f"s3://{bucket}/photos/x/img1.jpg",
        f"s3://{bucket}/photos/x/y/img0.jpg",
        f"s3://{bucket}/photos/x/img0.jpg",
    ]
    missing = f"s3://{bucket}/runs/missing/model.keras"
    assert main(["predict", missing, f"s3://{bucket}/photos/x/img0.jpg"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"ict {__version__}"


def test_the_sigmoid_probability_is_the_second_class(run, tmp_path, capsys):
    image = image_tree(tmp_path / "one", {"": 1}) / "img0.jpg"
    model = keras.saving.load_model(run / "model.keras")
    expected = float(model.predict(predict.load_image(image, 32)[None], verbose=0)[0, 0])
    assert main(["predict", str(run / "model.keras"), str(image), "--json"]) == 0
    (row,) = rows(capsys)
    assert row["probabilities"]["dogs"] == pytest.approx(expected, abs=1e-5)
    assert np.isclose(sum(row["probabilities"].values()), 1.0)
