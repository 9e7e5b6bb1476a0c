"""The dataset: folder layout, file checks, the validation split, and the tf.data pipelines."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ict_trainer.errors import DataError

log = logging.getLogger(__name__)

# What tf.io.decode_image reads (gif: first frame). Other suffixes are ignored, not errors:
# class folders often carry a Thumbs.db or a README.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif"})
PIL_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF", "MPO"})
DEFAULT_VALIDATION_SPLIT = 0.2
SPLITS = ("train", "validation")


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    """Every usable image of both splits, with the class names that index labels."""

    root: Path
    class_names: list[str]
    train: list[Sample]
    validation: list[Sample]
    layout: str  # "folders" (train/ + validation/) or "split"
    validation_split: float | None = None
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        counts = {}
        for split, samples in (("train", self.train), ("validation", self.validation)):
            per_class = dict.fromkeys(self.class_names, 0)
            for sample in samples:
                per_class[self.class_names[sample.label]] += 1
            counts[split] = per_class
        return counts


def load_dataset(root: Path, validation_split: float | None, seed: int) -> Dataset:
    """Reads the layout under root, checks every file, and splits if asked."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset folder {str(root)!r} does not exist or is not a folder. Point "
            "dataset.uri (or --data) at a folder of class folders, or at one holding "
            "train/ and validation/."
        )
    if (root / "train").is_dir():
        return _load_folders(root, validation_split)
    return _load_split(root, validation_split or DEFAULT_VALIDATION_SPLIT, seed)


def _load_folders(root: Path, validation_split: float | None) -> Dataset:
    if validation_split is not None:
        raise DataError(
            f"dataset {str(root)!r} has a train/ folder and validationSplit is "
            f"{validation_split!r}: use either validation/ or a split. Remove validationSplit, "
            "or give a folder of class folders."
        )
    if not (root / "validation").is_dir():
        raise DataError(
            f"dataset {str(root)!r} has train/ but no validation/ folder. Add "
            "validation/<class>/ images, or point at train/ itself with a validationSplit."
        )
    train_classes = _class_folders(root / "train")
    validation_classes = _class_folders(root / "validation")
    if train_classes != validation_classes:
        only_train = sorted(set(train_classes) - set(validation_classes))
        only_val = sorted(set(validation_classes) - set(train_classes))
        raise DataError(
            f"train and validation classes differ in {str(root)!r}: only in train: "
            f"{only_train}, only in validation: {only_val}. Give both splits the same class "
            "folders."
        )
    skipped: list[tuple[Path, str]] = []
    splits = {}
    for split in SPLITS:
        splits[split] = _samples(root / split, train_classes, skipped)
    return Dataset(
        root, train_classes, splits["train"], splits["validation"], "folders", skipped=skipped
    )


def _load_split(root: Path, validation_split: float, seed: int) -> Dataset:
    classes = _class_folders(root)
    skipped: list[tuple[Path, str]] = []
    samples = _samples(root, classes, skipped)
    train, validation = stratified_split(samples, len(classes), validation_split, seed)
    for label, name in enumerate(classes):
        if not any(s.label == label for s in validation):
            raise DataError(
                f"class {name!r} has too few images for validationSplit {validation_split!r}: "
                "no validation image is left. Add images or raise validationSplit."
            )
    return Dataset(root, classes, train, validation, "split", validation_split, skipped)


def stratified_split(
    samples: list[Sample], num_classes: int, fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Holds out round(fraction * n) images of each class, chosen by a seeded shuffle.

    Each class keeps at least one training image; the order inside each split is by path,
    so the split depends only on the file names and the seed, not on listing order.
    """
    rng = random.Random(seed)
    train, validation = [], []
    for label in range(num_classes):
        members = sorted((s for s in samples if s.label == label), key=lambda s: s.path)
        rng.shuffle(members)
        held_out = min(round(fraction * len(members)), len(members) - 1)
        validation.extend(members[:held_out])
        train.extend(members[held_out:])
    return sorted(train, key=lambda s: s.path), sorted(validation, key=lambda s: s.path)


def _class_folders(folder: Path) -> list[str]:
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise DataError(
            f"no class folders in {str(folder)!r}. Put each class's images in its own "
            "sub-folder, e.g. cats/ and dogs/."
        )
    if len(classes) == 1:
        raise DataError(
            f"only one class folder ({classes[0]!r}) in {str(folder)!r}: a classifier needs "
            "at least two. Add a folder per class."
        )
    return classes


def _samples(folder: Path, classes: list[str], skipped: list[tuple[Path, str]]) -> list[Sample]:
    samples = []
    for label, name in enumerate(classes):
        files = sorted(
            p
            for p in (folder / name).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        good = []
        for path in files:
            problem = check_image(path)
            if problem:
                log.warning("skipping %s: %s", path, problem)
                skipped.append((path, problem))
            else:
                good.append(Sample(path, label))
        if not good:
            raise DataError(
                f"class {name!r} has no usable images in {str(folder / name)!r} "
                f"({len(files)} file(s) skipped as unreadable; accepted: "
                f"{', '.join(sorted(IMAGE_SUFFIXES))}). Add images or remove the folder."
            )
        samples.extend(good)
    return samples


def check_image(path: Path) -> str | None:
    """Why path cannot be used as an image, or None. Cheap: no full decode."""
    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file (0 bytes)"
        with Image.open(path) as image:
            if image.format not in PIL_FORMATS:
                return f"{image.format} images are not supported"
            image.verify()
        if path.suffix.lower() in {".jpg", ".jpeg"} and not _jpeg_is_complete(path):
            return "truncated JPEG (no end-of-image marker)"
    except UnidentifiedImageError:
        return "not an image"
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt image ({exc})"
    return None


def _jpeg_is_complete(path: Path) -> bool:
    # verify() reads only the headers of a JPEG; a cut-off download still passes it but
    # breaks decoding mid-epoch. Writers may pad after the EOI marker, so look at the tail.
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()
