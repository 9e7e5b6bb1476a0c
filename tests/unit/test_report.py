"""Evaluation numbers, pictures and the HTML report, on hand-computed small cases."""

import io
import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ict_trainer.evaluation import classification_summary, worst_predictions
from ict_trainer.report import (
    image_grid,
    plot_confusion_matrix,
    plot_training_curves,
    thumbnail,
    write_html_report,
)

# ---------------------------------------------------------------- summary


def test_binary_sigmoid_summary_matches_hand_computation():
    y_true = np.array([0, 0, 1, 1, 1])
    # Predicted (threshold 0.5): 0, 1, 1, 0, 1.
    y_prob = np.array([0.2, 0.7, 0.9, 0.4, 0.6])

    summary = classification_summary(y_true, y_prob, ["cat", "dog"])

    assert summary["confusionMatrix"] == [[1, 1], [1, 2]]
    assert summary["accuracy"] == pytest.approx(0.6)
    assert summary["perClass"]["cat"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert summary["perClass"]["dog"] == pytest.approx(
        {"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3, "support": 3}
    )
    assert summary["macroF1"] == pytest.approx(7 / 12)
    column = classification_summary(y_true, y_prob[:, None], ["cat", "dog"])
    assert column == summary


def test_three_class_softmax_summary():
    y_true = np.array([0, 1, 2, 2, 1, 0])
    y_prob = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.1, 0.3, 0.6],
            [0.2, 0.2, 0.6],
            [0.1, 0.5, 0.4],
            [0.0, 0.9, 0.1],
            [0.5, 0.25, 0.25],
        ]
    )

    summary = classification_summary(y_true, y_prob, ["a", "b", "c"])

    assert summary["confusionMatrix"] == [[2, 0, 0], [0, 1, 1], [0, 1, 1]]
    assert summary["accuracy"] == pytest.approx(4 / 6)
    assert summary["perClass"]["a"]["f1"] == pytest.approx(1.0)
    assert summary["perClass"]["b"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert summary["macroF1"] == pytest.approx(2 / 3)


def test_never_predicted_and_empty_classes_score_zero_without_warnings():
    y_true = np.array([0, 1, 2])
    y_prob = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.7, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1]]
    )  # class 2 is never predicted, class 3 has no samples at all

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        summary = classification_summary(y_true, y_prob, ["a", "b", "c", "d"])

    assert summary["perClass"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert summary["perClass"]["d"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert summary["perClass"]["b"]["precision"] == pytest.approx(0.5)
    assert summary["macroF1"] == pytest.approx((1 + 2 / 3) / 4)
    json.dumps(summary, allow_nan=False)  # plain Python numbers, no NaN


def test_summary_rejects_mismatched_shapes():
    with pytest.raises(ValueError):
        classification_summary(np.array([0, 1]), np.array([0.1, 0.9]), ["a", "b", "c"])
    with pytest.raises(ValueError):
        classification_summary(np.array([0, 3]), np.eye(2), ["a", "b"])


def test_worst_predictions_lists_only_mistakes_lowest_true_probability_first():
    y_true = np.array([0, 1, 0, 1, 0])
    y_prob = np.array([[0.9, 0.1], [0.7, 0.3], [0.1, 0.9], [0.2, 0.8], [0.45, 0.55]])

    worst = worst_predictions(y_true, y_prob)

    assert [w["index"] for w in worst] == [2, 1, 4]
    assert worst[0] == pytest.approx(
        {
            "index": 2,
            "trueIndex": 0,
            "predictedIndex": 1,
            "trueProbability": 0.1,
            "predictedProbability": 0.9,
        }
    )
    assert [w["index"] for w in worst_predictions(y_true, y_prob, limit=2)] == [2, 1]
    sigmoid = worst_predictions(np.array([1, 0, 1]), np.array([0.2, 0.4, 0.45]))
    assert [w["index"] for w in sigmoid] == [0, 2]


# ---------------------------------------------------------------- pictures


def _png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


HISTORY = {
    "loss": [0.9, 0.6, 0.5, 0.4, 0.3],
    "val_loss": [0.8, 0.7, 0.6, 0.55, 0.5],
    "accuracy": [0.5, 0.6, 0.7, 0.8, 0.85],
    "val_accuracy": [0.55, 0.6, 0.65, 0.7, 0.72],
}


@pytest.mark.parametrize(
    "stages", [[("head", 0), ("finetune", 3)], [("finetune", 0)], []], ids=["two", "one", "none"]
)
def test_training_curves_png(tmp_path, stages):
    path = plot_training_curves(HISTORY, tmp_path / "curves.png", stages)

    width, height = _png_size(path)
    assert width > 500 and height > 250


def test_training_curves_survive_missing_series(tmp_path):
    path = plot_training_curves({"loss": [1.0]}, tmp_path / "partial.png", [("head", 0)])
    assert _png_size(path)[0] > 500


@pytest.mark.parametrize("k", [2, 30])
def test_confusion_matrix_png(tmp_path, k):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 200, size=(k, k))
    names = [f"class number {i}" for i in range(k)]

    path = plot_confusion_matrix(matrix, names, tmp_path / "confusion.png")

    width, height = _png_size(path)
    assert width >= 400 and height >= 400


def test_thumbnail_is_a_small_jpeg(tmp_path):
    array = np.zeros((200, 300, 3), dtype=np.uint8)
    source = tmp_path / "source.png"
    Image.fromarray(array).save(source)

    for data in (thumbnail(array), thumbnail(source, size=64)):
        assert data.startswith(b"\xff\xd8")
    with Image.open(io.BytesIO(thumbnail(array))) as image:
        assert image.size == (128, 85)


def test_image_grid_dimensions(tmp_path):
    images = [
        np.full((40, 60, 3), 200, dtype=np.uint8),
        np.zeros((80, 30, 3), dtype=np.uint8),
        np.random.default_rng(1).random((50, 50, 3)),  # rescaled floats in [0, 1]
        np.zeros((10, 10, 3), dtype=np.uint8),
        np.zeros((10, 10, 3), dtype=np.uint8),
    ]

    plain = image_grid(images, tmp_path / "plain.png", columns=3, cell=50)
    captioned = image_grid(
        images, tmp_path / "captioned.png", columns=3, captions=["a very long caption"] * 5, cell=50
    )

    assert _png_size(plain) == (150, 100)
    assert _png_size(captioned) == (150, 140)
    with pytest.raises(ValueError):
        image_grid(images, tmp_path / "bad.png", columns=3, captions=["only one"])


# ---------------------------------------------------------------- HTML


def test_html_report_is_self_contained_and_escaped(tmp_path):
    names = ["<script>", "cat & dog"]
    y_true = np.array([0, 0, 1, 1])
    y_prob = np.array([0.1, 0.8, 0.9, 0.3])
    evaluation = classification_summary(y_true, y_prob, names)
    curves = plot_training_curves(HISTORY, tmp_path / "curves.png", [("head", 0)])
    confusion = plot_confusion_matrix(
        evaluation["confusionMatrix"], names, tmp_path / "confusion.png"
    )
    image_file = tmp_path / "bad<name>.png"
    Image.fromarray(np.zeros((20, 20, 3), dtype=np.uint8)).save(image_file)
    worst = [
        {
            **w,
            "trueClass": names[w["trueIndex"]],
            "predictedClass": names[w["predictedIndex"]],
            "file": f"validation/{names[w['trueIndex']]}/{w['index']}.jpg",
            "thumbnail": thumbnail(np.zeros((30, 30, 3), dtype=np.uint8)),
        }
        for w in worst_predictions(y_true, y_prob)
    ]
    worst.append({"trueClass": names[0], "predictedClass": names[1], "thumbnail": image_file})
    metrics = {
        "name": "run <1>",
        "strategy": "finetune",
        "backbone": "vgg16",
        "imageSize": 150,
        "classNames": names,
        "counts": {"train": {names[0]: 10, names[1]: 12}, "validation": {names[0]: 2}},
        "final": {"val_accuracy": 0.5, "val_loss": 0.7, "accuracy": 0.9, "loss": 0.2},
        "best": {"val_accuracy": 0.75, "val_loss": 0.6, "epoch": 3},
        "evaluation": evaluation,
        "durations": {"total": 4000.0, "head": 65.2, "finetune": 12.0},
        "cacheHit": True,
        "seed": 7,
        "versions": {"ict": "0.1.0"},
    }

    path = write_html_report(
        tmp_path / "out" / "index.html",
        metrics,
        {"Training curves": curves, "Confusion matrix": confusion},
        worst,
    )

    page = path.read_text(encoding="utf-8")
    assert "<script>" not in page
    assert "&lt;script&gt;" in page and "cat &amp; dog" in page
    assert "run &lt;1&gt;" in page
    assert page.count('<img src="data:image/') == 2 + len(worst)
    assert not re.search(r"https?://", page)
    assert "75.0 %" in page and "finetune" in page and "vgg16" in page
    assert "hit" in page


def test_html_report_tolerates_missing_metrics(tmp_path):
    page = write_html_report(tmp_path / "index.html", {}, {}, []).read_text(encoding="utf-8")
    assert "<h1>" in page and "data:image/" not in page
