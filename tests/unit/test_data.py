"""Dataset layout, file checks and the stratified split."""

import pytest

from ict_trainer.data import Sample, check_image, load_dataset, plan_dataset, stratified_split
from ict_trainer.errors import DataError
from tests.helpers import image_tree, write_huge_png, write_image


def test_train_validation_layout(tmp_path):
    image_tree(
        tmp_path, {"train/dogs": 3, "train/cats": 4, "validation/cats": 2, "validation/dogs": 2}
    )
    dataset = load_dataset(tmp_path, None, seed=1)
    assert dataset.class_names == ["cats", "dogs"]
    assert dataset.layout == "folders"
    assert dataset.counts() == {
        "train": {"cats": 4, "dogs": 3},
        "validation": {"cats": 2, "dogs": 2},
    }


def test_flat_layout_is_split_per_class_with_default_fraction(tmp_path):
    image_tree(tmp_path, {"a": 10, "b": 20, "c": 5})
    dataset = load_dataset(tmp_path, None, seed=1)
    assert dataset.layout == "split"
    assert dataset.validation_split == 0.2
    assert dataset.counts()["validation"] == {"a": 2, "b": 4, "c": 1}
    assert dataset.counts()["train"] == {"a": 8, "b": 16, "c": 4}


def test_split_is_seeded_and_disjoint(tmp_path):
    samples = [Sample(tmp_path / f"{label}-{n}.jpg", label) for label in (0, 1) for n in range(10)]
    train_a, val_a = stratified_split(samples, 2, 0.3, seed=7)
    train_b, val_b = stratified_split(list(reversed(samples)), 2, 0.3, seed=7)
    assert (train_a, val_a) == (train_b, val_b)
    assert not set(train_a) & set(val_a)
    assert len(val_a) == 6 and len(train_a) == 14
    _, val_c = stratified_split(samples, 2, 0.3, seed=8)
    assert val_c != val_a


def test_split_keeps_a_training_image_per_class(tmp_path):
    samples = [
        Sample(tmp_path / "a.jpg", 0),
        Sample(tmp_path / "b.jpg", 1),
        Sample(tmp_path / "c.jpg", 1),
    ]
    train, _ = stratified_split(samples, 2, 0.9, seed=0)
    assert {s.label for s in train} == {0, 1}


@pytest.mark.parametrize(
    ("layout", "split", "message"),
    [
        ({}, None, "no class folders in"),
        ({"only": 3}, None, "only one class folder ('only')"),
        ({"train/a": 2, "train/b": 2}, None, "has train/ but no validation/ folder"),
        (
            {"train/a": 2, "train/b": 2, "validation/a": 1, "validation/c": 1},
            None,
            "train and validation classes differ",
        ),
        (
            {"train/a": 2, "train/b": 2, "validation/a": 1, "validation/b": 1},
            0.2,
            "use either validation/ or a split",
        ),
        ({"a": 1, "b": 5}, 0.2, "class 'a' has too few images"),
    ],
)
def test_bad_layouts_name_the_problem_and_fix(tmp_path, layout, split, message):
    image_tree(tmp_path, layout)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(tmp_path, split, seed=0)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match=r"does not exist or is not a folder.*--data"):
        load_dataset(tmp_path / "nope", None, seed=0)


def test_bad_files_are_skipped_with_their_reason(tmp_path, caplog):
    image_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "empty.jpg").write_bytes(b"")
    (tmp_path / "a" / "notes.png").write_text("not an image")
    good = write_image(tmp_path / "b" / "cut.jpg", size=64).read_bytes()
    (tmp_path / "b" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "b" / "readme.txt").write_text("ignored, not an image suffix")
    dataset = load_dataset(tmp_path, 0.3, seed=0)
    reasons = {path.name: why for path, why in dataset.skipped}
    assert reasons["empty.jpg"] == "empty file (0 bytes)"
    assert reasons["notes.png"] == "not an image"
    assert "truncated" in reasons["cut.jpg"]
    assert "readme.txt" not in reasons
    assert sum(sum(c.values()) for c in dataset.counts().values()) == 6
    assert "skipping" in caplog.text and "empty.jpg" in caplog.text


def test_a_class_left_empty_by_bad_files_fails(tmp_path):
    image_tree(tmp_path, {"train/a": 2, "train/b": 2, "validation/a": 1, "validation/b": 1})
    for path in (tmp_path / "train" / "b").iterdir():
        path.write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"class 'b' has no usable images .*2 file\(s\) skipped"):
        load_dataset(tmp_path, None, seed=0)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "BMP", "GIF"])
def test_accepted_formats(tmp_path, fmt):
    path = write_image(tmp_path / f"x.{fmt.lower()}", fmt=fmt)
    assert check_image(path) is None


def test_unsupported_format_is_named(tmp_path):
    path = write_image(tmp_path / "x.png", fmt="TIFF")
    assert check_image(path) == "TIFF images are not supported"


def test_files_are_recognised_by_content_not_name(tmp_path):
    image_tree(tmp_path, {"a": 3, "b": 3})
    write_image(tmp_path / "a" / "really-a-png.jpg", fmt="PNG")
    write_image(tmp_path / "b" / "no-extension", fmt="JPEG")
    write_image(tmp_path / "b" / "photo.webp", fmt="WEBP")
    dataset = load_dataset(tmp_path, 0.3, seed=0)
    assert dataset.skipped == []
    names = {s.path.name for s in dataset.train + dataset.validation}
    assert {"really-a-png.jpg", "no-extension", "photo.webp"} <= names
    assert check_image(tmp_path / "a" / "really-a-png.jpg") is None


def test_leftover_and_hidden_folders_are_never_classes(tmp_path):
    image_tree(tmp_path, {"cats": 3, "dogs": 3})
    write_image(tmp_path / "__MACOSX" / "cats" / "._img0.jpg")
    write_image(tmp_path / ".thumbnails" / "img.jpg")
    write_image(tmp_path / "cats" / ".hidden.jpg")
    dataset = load_dataset(tmp_path, 0.3, seed=0)
    assert dataset.class_names == ["cats", "dogs"]
    assert sum(sum(c.values()) for c in dataset.counts().values()) == 6
    # The same rule for a bucket's listing.
    keys = ["__MACOSX/dogs/._a.jpg", "cats/a.jpg", "dogs/b.jpg", "cats/c.jpg", "dogs/d.jpg"]
    assert plan_dataset(keys, tmp_path, 0.5, 0, "s3://b/x").class_names == ["cats", "dogs"]


def test_files_of_no_image_type_are_counted_by_extension_in_one_warning(tmp_path, caplog):
    image_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "README.txt").write_text("about cats")
    (tmp_path / "b" / "notes.txt").write_text("")
    (tmp_path / "b" / "Thumbs.db").write_bytes(b"\x01\x02")
    write_image(tmp_path / "a" / "scan.tif", fmt="TIFF")
    dataset = load_dataset(tmp_path, 0.3, seed=0)
    assert dataset.ignored == {".db": 1, ".tif": 1, ".txt": 2}
    assert dataset.skipped == []
    warnings = [r.getMessage() for r in caplog.records if "ignored" in r.getMessage()]
    assert warnings == [
        "ignored 4 file(s) that are no images ict reads (.db 1, .tif 1, .txt 2); images are "
        "recognised by content: JPEG, PNG, BMP, GIF, WebP"
    ]


def test_an_image_too_large_to_decode_is_skipped_and_named(tmp_path):
    image_tree(tmp_path, {"a": 3, "b": 3})
    huge = write_huge_png(tmp_path / "a" / "huge.png")
    assert huge.stat().st_size < 1_000_000
    dataset = load_dataset(tmp_path, 0.3, seed=0)
    ((path, reason),) = dataset.skipped
    assert path == huge
    assert reason == (
        "image too large to decode safely (900 megapixels; the limit is 89 megapixels). "
        "Downscale it."
    )
