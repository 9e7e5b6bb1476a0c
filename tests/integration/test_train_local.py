"""`ict train` end to end on local folders: each strategy, the artifacts, predict, preview.

Real training on a few dozen shared cats-dogs images at a tiny size for one or two epochs.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from ict_trainer.cli import main
from tests.helpers import (
    ARTIFACTS,
    MOBILENET,
    MOBILENET_V2,
    events,
    image_tree,
    train,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_cache")]


@pytest.mark.parametrize(
    ("architecture", "convolutions", "norms"), [("wide", 4, 3), ("blog", 3, 0)]
)
def test_scratch_writes_every_artifact_and_predicts(
    cats_dogs, tmp_path, capsys, architecture, convolutions, norms
):
    output = tmp_path / "out"
    code, lines, _ = train(
        capsys,
        "--set",
        f"model.architecture={architecture}",
        "--data",
        str(cats_dogs),
        "--strategy",
        "scratch",
        "--epochs",
        "2",
        "--image-size",
        "48",
        "--output",
        str(output),
    )
    assert code == 0
    assert {p.name for p in output.iterdir()} == ARTIFACTS
    epochs = events(lines, "epoch")
    assert [(e["stage"], e["epoch"], e["epochs"]) for e in epochs] == [
        ("train", 1, 2),
        ("train", 2, 2),
    ]
    assert set(epochs[0]["metrics"]) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    (summary,) = events(lines, "summary")
    assert summary["status"] == "succeeded"
    assert summary["artifacts"]["model.keras"] == str(output / "model.keras")

    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["classNames"] == ["cats", "dogs"]
    assert metrics["counts"] == {
        "train": {"cats": 12, "dogs": 12},
        "validation": {"cats": 6, "dogs": 6},
    }
    assert len(metrics["history"]["val_accuracy"]) == 2
    assert metrics["final"]["val_accuracy"] == metrics["history"]["val_accuracy"][-1]
    assert metrics["best"]["epoch"] in (1, 2)
    evaluation = metrics["evaluation"]
    assert set(evaluation["perClass"]) == {"cats", "dogs"}
    assert set(evaluation["perClass"]["cats"]) == {"precision", "recall", "f1", "support"}
    assert np.array(evaluation["confusionMatrix"]).sum() == 12
    assert metrics["cacheHit"] is None and metrics["seed"] == 1337
    assert {"tensorflow", "keras", "numpy", "python", "ict"} <= set(metrics["versions"])
    assert metrics["durations"]["total"] > 0

    with (output / "history.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["epoch"], r["stage"]) for r in rows] == [("1", "train"), ("2", "train")]
    for picture in ("training-curves.png", "confusion-matrix.png"):
        assert Image.open(output / picture).size[0] > 200
    assert "cats" in (output / "index.html").read_text()

    model = keras.saving.load_model(output / "model.keras")
    assert model.input_shape == (None, 48, 48, 3)
    kinds = [type(layer) for layer in model.layers]
    assert kinds.count(keras.layers.Conv2D) == convolutions
    assert kinds.count(keras.layers.BatchNormalization) == norms
    assert metrics["spec"]["model"]["architecture"] == architecture
    image = next((cats_dogs / "validation" / "dogs").iterdir())
    assert main(["predict", str(output / "model.keras"), str(image), "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["class"] in ("cats", "dogs")
    assert sum(row["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    assert row["probability"] == max(row["probabilities"].values())


def test_bottleneck_caches_features_and_the_second_run_computes_none(
    cats_dogs, tmp_path, capsys, private_cache
):
    args = [
        "--data",
        str(cats_dogs),
        "--strategy",
        "bottleneck",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(MOBILENET_V2),
        "--image-size",
        "64",
        "--epochs",
        "2",
    ]
    spec = tmp_path / "spec.yaml"
    spec.write_text("model:\n  alpha: 0.35\ntraining:\n  optimizer: adam\n")
    code, first, _ = train(capsys, "-f", str(spec), *args, "--output", str(tmp_path / "a"))
    assert code == 0
    assert events(first, "features")[0]["cacheHit"] is False
    entries = list((private_cache / "bottleneck").iterdir())
    assert len(entries) == 1 and (entries[0] / "manifest.json").is_file()
    # The default augmented passes of the 24 training images are cached with them.
    augmented = np.load(entries[0] / "train_augmented_features.npy")
    assert augmented.shape == (4 * 24, *np.load(entries[0] / "train_features.npy").shape[1:])

    code, second, _ = train(capsys, "-f", str(spec), *args, "--output", str(tmp_path / "b"))
    assert code == 0
    assert events(second, "features")[0]["cacheHit"] is True
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["cacheHit"] is True
    assert "features" not in metrics["durations"]
    # The hit builds the backbone after the head, the miss before: same weights, same numbers.
    first_metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["history"].keys() == first_metrics["history"].keys()
    for name, values in first_metrics["history"].items():
        assert metrics["history"][name] == pytest.approx(values, rel=1e-5), name
    assert {p.name for p in (tmp_path / "b").iterdir()} >= ARTIFACTS
    assert metrics["backbone"] == "mobilenet_v2"
    # The default featureScales add 80 px (9/7 of 64, to a multiple of 8): the model's input.
    assert keras.saving.load_model(tmp_path / "b" / "model.keras").input_shape[1:] == (80, 80, 3)

    (cats_dogs / "train" / "cats" / "extra.jpg").write_bytes(
        next((cats_dogs / "train" / "dogs").iterdir()).read_bytes()
    )
    try:
        code, third, _ = train(capsys, "-f", str(spec), *args, "--output", str(tmp_path / "c"))
    finally:
        (cats_dogs / "train" / "cats" / "extra.jpg").unlink()
    assert events(third, "features")[0]["cacheHit"] is False

    # Another number of passes is another entry.
    code, fourth, _ = train(
        capsys,
        "-f",
        str(spec),
        *args,
        "--output",
        str(tmp_path / "d"),
        "--set",
        "augmentation.featurePasses=1",
    )
    assert code == 0
    assert events(fourth, "features")[0]["cacheHit"] is False
    assert len(list((private_cache / "bottleneck").iterdir())) == 3


def test_finetune_trains_head_then_top_block(cats_dogs, tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "apiVersion: littledata.dev/v1alpha1\nkind: ImageClassifierTraining\n"
        "metadata: {name: ft}\n"
        f"spec:\n  dataset: {{uri: {cats_dogs}}}\n  strategy: finetune\n"
        f"  model: {{backbone: mobilenet, alpha: 0.25, weights: {MOBILENET}, imageSize: 64}}\n"
        "  training: {epochs: 1, batchSize: 8}\n  fineTune: {epochs: 1}\n"
    )
    code, lines, _ = train(capsys, "-f", str(spec), "--output", str(tmp_path / "out"))
    assert code == 0
    # The start event says how many GPUs TensorFlow sees (none with tensorflow-cpu).
    assert events(lines, "start")[0]["gpus"] == len(tf.config.list_physical_devices("GPU"))
    assert [(e["stage"], e["epoch"]) for e in events(lines, "epoch")] == [
        ("head", 1),
        ("finetune", 1),
    ]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["name"] == "ft"
    assert metrics["stages"] == [
        {"stage": "head", "firstEpoch": 1},
        {"stage": "finetune", "firstEpoch": 2},
    ]
    assert metrics["unfrozenLayers"] == ["conv_dw_13", "conv_pw_13"]


def test_many_classes_use_softmax(tmp_path, capsys):
    data = image_tree(tmp_path / "data", {"red": 8, "green": 8, "blue": 8}, suffix=".png")
    output = tmp_path / "out"
    code, _, _ = train(
        capsys,
        "--data",
        str(data),
        "--strategy",
        "scratch",
        "--epochs",
        "1",
        "--image-size",
        "48",
        "--output",
        str(output),
    )
    assert code == 0
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["layout"] == "split" and metrics["validationSplit"] == 0.2
    assert metrics["counts"]["validation"] == {"blue": 2, "green": 2, "red": 2}
    model = keras.saving.load_model(output / "model.keras")
    assert model.output_shape == (None, 3)
    image = next((data / "red").iterdir())
    assert main(["predict", str(output / "model.keras"), str(image)]) == 0
    assert capsys.readouterr().out.split("\t")[1] in ("red", "green", "blue")


def test_preview_writes_a_grid_of_augmented_images(cats_dogs, tmp_path, capsys):
    target = tmp_path / "preview.png"
    assert (
        main(
            [
                "preview",
                "--data",
                str(cats_dogs),
                "--strategy",
                "scratch",
                "--image-size",
                "64",
                "--output",
                str(target),
                "--images",
                "2",
                "--variants",
                "3",
            ]
        )
        == 0
    )
    with Image.open(target) as grid:
        assert grid.size == (4 * 160, 2 * (160 + 20))


def test_sample_data_then_console_script(tmp_path):
    """The README's first command, through the installed `ict` script."""
    data, output = tmp_path / "sample", tmp_path / "out"
    ict = [sys.executable, "-m", "ict_trainer.cli"]
    subprocess.run(
        [*ict, "sample-data", str(data), "--train", "8", "--validation", "4"], check=True
    )
    assert "synthetic" in (data / "README.md").read_text()
    run = subprocess.run(
        [
            *ict,
            "train",
            "--data",
            str(data),
            "--strategy",
            "scratch",
            "--epochs",
            "1",
            "--image-size",
            "48",
            "--output",
            str(output),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1])["event"] == "summary"
    assert (output / "metrics.json").is_file()
