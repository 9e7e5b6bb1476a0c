"""Every bad input ends with exit code 2, one message naming problem and fix, no output."""

from __future__ import annotations

import json

import pytest

from ict_trainer.cli import main
from tests.helpers import MOBILENET, MOBILENET_V2, image_tree, write_huge_png, write_image

GOOD = {"train/cats": 4, "train/dogs": 4, "validation/cats": 2, "validation/dogs": 2}


def run_train(capsys, data, output, *extra: str) -> tuple[int, str, str]:
    code = main(
        [
            "train",
            "--data",
            str(data),
            "--output",
            str(output),
            "--epochs",
            "1",
            "--image-size",
            "48",
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    for fragment in fragments:
        assert fragment in err
    (event,) = [
        json.loads(line) for line in out.splitlines() if json.loads(line)["event"] == "error"
    ]
    assert fragments[0] in event["message"]


@pytest.mark.parametrize(
    ("layout", "fragments"),
    [
        (None, ("does not exist or is not a folder", "--data")),
        ({}, ("no class folders in", "own sub-folder")),
        ({"cats": 3}, ("only one class folder ('cats')", "Add a folder per class")),
        (
            {"train/cats": 2, "train/dogs": 2, "validation/cats": 1, "validation/birds": 1},
            ("train and validation classes differ", "only in train: ['dogs']"),
        ),
    ],
)
def test_bad_dataset_layouts(tmp_path, capsys, layout, fragments):
    data = tmp_path / "data"
    if layout is not None:
        data.mkdir()
        image_tree(data, layout)
    code, out, err = run_train(capsys, data, tmp_path / "out", "--strategy", "scratch")
    assert_refused(code, out, err, *fragments)
    assert not (tmp_path / "out").exists()


def test_class_with_no_usable_images(tmp_path, capsys, caplog):
    data = image_tree(tmp_path / "data", GOOD)
    for path in (data / "train" / "dogs").iterdir():
        path.write_bytes(b"")
    code, out, err = run_train(capsys, data, tmp_path / "out", "--strategy", "scratch")
    assert_refused(code, out, err, "class 'dogs' has no usable images", "4 file(s) skipped")
    assert "empty file (0 bytes)" in caplog.text  # each skipped file is named in a warning
    assert not (tmp_path / "out").exists()


def test_corrupt_files_are_skipped_with_a_warning_and_training_goes_on(tmp_path, capsys, caplog):
    data = image_tree(tmp_path / "data", GOOD)
    (data / "train" / "cats" / "zero.jpg").write_bytes(b"")
    (data / "train" / "dogs" / "text.png").write_text("hello")
    whole = write_image(data / "validation" / "cats" / "cut.jpg", size=64).read_bytes()
    (data / "validation" / "cats" / "cut.jpg").write_bytes(whole[:200])
    code, _, err = run_train(capsys, data, tmp_path / "out", "--strategy", "scratch")
    assert code == 0, err
    for name in ("zero.jpg", "text.png", "cut.jpg"):
        assert f"{name}: " in caplog.text
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert {item["path"].rsplit("/", 1)[1] for item in metrics["skippedFiles"]} == {
        "zero.jpg",
        "text.png",
        "cut.jpg",
    }
    assert metrics["counts"]["train"] == {"cats": 4, "dogs": 4}


@pytest.mark.parametrize(
    ("weights", "backbone", "fragments"),
    [
        ("missing.h5", "mobilenet_v2", ("does not exist", "--weights")),
        ("garbage.h5", "mobilenet_v2", ("is unreadable", "not a Keras weights file")),
        (
            str(MOBILENET),
            "mobilenet_v2",
            ("does not fit backbone 'mobilenet_v2'", "model.backbone and model.alpha"),
        ),
    ],
)
def test_bad_weights(tmp_path, capsys, weights, backbone, fragments):
    data = image_tree(tmp_path / "data", GOOD)
    (tmp_path / "garbage.h5").write_bytes(b"\x00" * 64)
    weights = weights if "/" in weights else str(tmp_path / weights)
    code, out, err = run_train(
        capsys,
        data,
        tmp_path / "out",
        "--strategy",
        "bottleneck",
        "--backbone",
        backbone,
        "--weights",
        weights,
    )
    assert_refused(code, out, err, *fragments)
    assert not (tmp_path / "out").exists()


def test_unknown_backbone_in_a_spec_file(tmp_path, capsys):
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"dataset: {{uri: {tmp_path}}}\nmodel: {{backbone: inception}}\n")
    assert main(["train", "-f", str(spec)]) == 2
    err = capsys.readouterr().err
    assert "spec.model.backbone: got 'inception'; allowed values: 'vgg16', 'mobilenet'" in err


def test_unknown_backbone_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--data", "x", "--backbone", "inception"])
    assert exit_.value.code == 2
    assert "invalid choice: 'inception'" in capsys.readouterr().err


def test_output_with_a_different_training_is_refused_unless_overwrite(tmp_path, capsys):
    data = image_tree(tmp_path / "data", GOOD)
    output = tmp_path / "out"
    assert run_train(capsys, data, output, "--strategy", "scratch")[0] == 0
    before = (output / "metrics.json").read_bytes()
    model_before = (output / "model.keras").read_bytes()

    code, out, err = run_train(
        capsys,
        data,
        output,
        "--strategy",
        "bottleneck",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(MOBILENET_V2),
    )
    assert_refused(code, out, err, "already holds a different training", "--overwrite")
    assert (output / "metrics.json").read_bytes() == before
    assert (output / "model.keras").read_bytes() == model_before

    code, _, err = run_train(
        capsys,
        data,
        output,
        "--strategy",
        "scratch",
        "--overwrite",
        "--epochs",
        "1",
        "--image-size",
        "56",
    )
    assert code == 0, err
    assert json.loads((output / "metrics.json").read_text())["imageSize"] == 56


def test_output_holding_other_files_is_refused(tmp_path, capsys):
    data = image_tree(tmp_path / "data", GOOD)
    output = tmp_path / "out"
    output.mkdir()
    (output / "thesis.pdf").write_bytes(b"precious")
    code, out, err = run_train(capsys, data, output, "--strategy", "scratch")
    assert_refused(code, out, err, "is not empty and holds no ict training", "thesis.pdf")
    assert sorted(p.name for p in output.iterdir()) == ["thesis.pdf"]


def test_no_spec_at_all(capsys):
    assert main(["train"]) == 2
    assert "give -f FILE.yaml, or --data FOLDER" in capsys.readouterr().err


def test_predict_with_missing_model_or_image(tmp_path, capsys):
    image = write_image(tmp_path / "cat.jpg")
    assert main(["predict", str(tmp_path / "model.keras"), str(image)]) == 2
    assert "model.keras' does not exist" in capsys.readouterr().err
    # The images are checked first: a missing one is named before any model is loaded.
    assert main(["predict", str(tmp_path / "model.keras"), "x.jpg"]) == 2
    assert "cannot classify 'x.jpg': no such file" in capsys.readouterr().err


def test_sample_data_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["sample-data", str(tmp_path)]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_unknown_finetune_layers_are_refused_before_any_training(tmp_path, capsys):
    data = image_tree(tmp_path / "data", GOOD)
    spec = tmp_path / "spec.yaml"
    spec.write_text("model: {alpha: 0.35}\nfineTune: {layers: [block_99_]}\n")
    code, out, err = run_train(
        capsys,
        data,
        tmp_path / "out",
        "-f",
        str(spec),
        "--strategy",
        "finetune",
        "--backbone",
        "mobilenet_v2",
        "--weights",
        str(MOBILENET_V2),
    )
    assert_refused(code, out, err, "no trainable layer matches", "Layer names start with")
    assert '"event": "epoch"' not in out and '"event": "features"' not in out


def test_input_the_way_people_have_it(tmp_path, capsys, caplog):
    """Odd but usable input trains: files judged by content, leftovers ignored, bombs skipped."""
    data = image_tree(tmp_path / "data", GOOD)
    write_image(data / "train" / "cats" / "saved-as-png.jpg", seed=5, fmt="PNG")
    write_image(data / "train" / "dogs" / "photo.webp", seed=6, fmt="WEBP")
    write_image(data / "train" / "dogs" / "IMG_0001", seed=7, fmt="JPEG")
    write_image(data / "__MACOSX" / "train" / "cats" / "._img0.jpg", seed=8)
    (data / "train" / "cats" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (data / "train" / "cats" / "notes.txt").write_text("a cat")
    huge = write_huge_png(data / "validation" / "cats" / "huge.png")
    code, _, err = run_train(capsys, data, tmp_path / "out", "--strategy", "scratch")
    assert code == 0, err
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["counts"]["train"] == {"cats": 5, "dogs": 6}
    assert metrics["skippedFiles"] == [
        {"path": str(huge), "reason": metrics["skippedFiles"][0]["reason"]}
    ]
    assert "too large to decode safely" in metrics["skippedFiles"][0]["reason"]
    assert metrics["ignoredFiles"] == {".txt": 1}
    assert f"skipping {huge}: image too large" in caplog.text


def test_set_with_a_bad_path_or_value_exits_2_naming_the_field(tmp_path, capsys):
    data = image_tree(tmp_path / "data", GOOD)
    for assignment, fragment in [
        ("model.alpah=0.35", "spec.model.alpah: unknown field; allowed fields here: alpha"),
        ("training.epochs=many", "spec.training.epochs: got 'many'"),
    ]:
        code, out, err = run_train(
            capsys, data, tmp_path / "out", "--strategy", "scratch", "--set", assignment
        )
        assert_refused(code, out, err, fragment)
    assert not (tmp_path / "out").exists()
