"""Which weights a run publishes: the best epoch restored by early stopping, and the head when
fine-tuning makes things worse. Checked on model.keras itself, not only on metrics.json."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from ict_trainer.pipeline import load_image
from tests.helpers import MOBILENET, MOBILENET_V2, cats_dogs_subset, events, train

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("private_cache")]


def validation_loss(output, data) -> float:
    """Binary cross-entropy of the published model.keras on the validation images, computed
    as training computed it (Keras takes a sigmoid output's logits: no clipping)."""
    model = keras.saving.load_model(output / "model.keras")
    size = model.input_shape[1]
    classes = json.loads((output / "metrics.json").read_text())["classNames"]
    paths = [
        (p, k) for k, name in enumerate(classes) for p in (data / "validation" / name).iterdir()
    ]
    images = np.stack([load_image(path, size) for path, _ in paths])
    labels = np.array([[label] for _, label in paths], dtype=np.float32)
    model.compile(loss=keras.losses.BinaryCrossentropy())
    scores = model.evaluate(images, labels, batch_size=len(images), verbose=0, return_dict=True)
    return float(scores["loss"])


def test_early_stopping_publishes_the_best_epoch_not_the_last(tmp_path, capsys):
    # A head on the features of 24 images overfits within a few epochs at this learning rate.
    data = cats_dogs_subset(tmp_path / "cats-dogs", train=12, validation=6)
    output = tmp_path / "out"
    code, lines, err = train(
        capsys,
        "--data", str(data), "--strategy", "bottleneck", "--backbone", "mobilenet_v2",
        "--weights", str(MOBILENET_V2), "--image-size", "64", "--epochs", "40",
        "--output", str(output),
        "--set", "model.alpha=0.35",
        "--set", "training.earlyStopping.patience=2",
        "--set", "training.optimizer=adam",
        "--set", "training.learningRate=0.01",
        "--set", "training.labelSmoothing=0",  # validation_loss is the plain cross-entropy
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((output / "metrics.json").read_text())
    epochs_run = len(metrics["history"]["loss"])
    assert epochs_run < 40  # it stopped early...
    assert metrics["final"]["epoch"] == epochs_run
    assert metrics["best"]["epoch"] < metrics["final"]["epoch"]  # ...after its best epoch
    assert metrics["best"]["monitor"] == "val_loss"
    assert metrics["saved"]["epoch"] == metrics["best"]["epoch"]
    assert metrics["saved"]["why"] == "best val_loss of the stage, restored"
    assert metrics["selection"]["usesValidation"] is True
    best_loss = metrics["history"]["val_loss"][metrics["best"]["epoch"] - 1]
    assert metrics["final"]["val_loss"] - best_loss > 1e-3  # the two epochs can be told apart
    assert validation_loss(output, data) == pytest.approx(best_loss, abs=1e-4)
    (summary,) = events(lines, "summary")
    assert summary["saved"]["epoch"] == metrics["best"]["epoch"]


def test_finetuning_that_hurts_keeps_the_head(tmp_path, capsys, caplog):
    data = cats_dogs_subset(tmp_path / "cats-dogs", train=12, validation=6)
    output = tmp_path / "out"
    code, lines, err = train(
        capsys,
        "--data", str(data), "--strategy", "finetune", "--backbone", "mobilenet",
        "--weights", str(MOBILENET), "--image-size", "64", "--epochs", "3",
        "--output", str(output),
        "--set", "model.alpha=0.25",
        "--set", "fineTune.epochs=2",
        "--set", "fineTune.learningRate=1.0",  # ruins the backbone on purpose...
        "--set", "fineTune.schedule=constant",  # ...from the first step, without warm-up
        "--set", "training.labelSmoothing=0",  # validation_loss is the plain cross-entropy
        "--set", "fineTune.layers=conv_dw_13,conv_pw_13,conv_dw_12,conv_pw_12",
    )  # fmt: skip
    assert code == 0, err
    metrics = json.loads((output / "metrics.json").read_text())
    assert [s["stage"] for s in metrics["stages"]] == ["head", "finetune"]
    assert metrics["selection"]["keptHead"] is True
    assert metrics["saved"]["stage"] == "head"
    assert metrics["final"]["stage"] == "finetune"
    # The reason names the metric that decided, and the fine-tuned model was worse on it.
    history, head_epoch = metrics["history"], metrics["saved"]["epoch"]
    decided_by = metrics["saved"]["why"].removeprefix("head kept: the fine-tuned model's ")
    decided_by = decided_by.removesuffix(" was worse")
    assert decided_by in ("val_accuracy", "val_loss")
    first_tuned = next(s["firstEpoch"] for s in metrics["stages"] if s["stage"] == "finetune")
    tuned_losses = history["val_loss"][first_tuned - 1 :]
    tuned_epoch = first_tuned + tuned_losses.index(min(tuned_losses))  # the stage's restored
    tuned, head = history[decided_by][tuned_epoch - 1], history[decided_by][head_epoch - 1]
    assert tuned < head if decided_by == "val_accuracy" else tuned > head
    head_loss = metrics["history"]["val_loss"][metrics["saved"]["epoch"] - 1]
    assert validation_loss(output, data) == pytest.approx(head_loss, abs=1e-4)
    (summary,) = events(lines, "summary")
    assert summary["keptHead"] is True and summary["saved"]["stage"] == "head"
    assert "publishing the head's model" in caplog.text
