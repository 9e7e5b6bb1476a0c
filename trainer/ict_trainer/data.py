"""The dataset: folder layout, file checks, the validation split, and the tf.data pipelines."""

from __future__ import annotations

import logging
import os
import random
import re
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from ict_trainer.errors import DataError

log = logging.getLogger(__name__)

# Files are recognised by content (a PNG named .jpg is a PNG). Names matter only for a bucket
# listed before its files are downloaded, and to tell a broken image (skipped and named) from
# a file that is no image at all (ignored and counted): class folders often carry a Thumbs.db
# or a README.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"})
# What tf.io.decode_image reads (GIF: first frame; WebP since TensorFlow 2.18).
PIL_FORMATS = frozenset({"JPEG", "PNG", "BMP", "GIF", "MPO", "WEBP"})
# Folders that archivers and systems leave beside the real ones; never classes. Hidden
# folders (.git, .ipynb_checkpoints...) and hidden files are left out as well.
LEFTOVER_FOLDERS = frozenset({"__MACOSX", "@eaDir", "$RECYCLE.BIN", "System Volume Information"})
# Larger images are skipped unread: decoding one takes gigabytes (30,000 x 30,000 pixels fit
# in a PNG of under 1 MB). Pillow's own decompression-bomb threshold, about 89 megapixels.
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
DEFAULT_VALIDATION_SPLIT = 0.2
SPLITS = ("train", "validation")
VALIDATION_FOLDERS = ("validation/", "val/")


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
    ignored: dict[str, int] = field(default_factory=dict)  # extension -> files of no image type

    def counts(self) -> dict[str, dict[str, int]]:
        counts = {}
        for split, samples in (("train", self.train), ("validation", self.validation)):
            per_class = dict.fromkeys(self.class_names, 0)
            for sample in samples:
                per_class[self.class_names[sample.label]] += 1
            counts[split] = per_class
        return counts


def load_dataset(root: Path, validation_split: float | None, seed: int) -> Dataset:
    """Reads a local folder's layout, checks every file, and splits if asked."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset folder {str(root)!r} does not exist or is not a folder. Point "
            "dataset.uri (or --data) at a folder of class folders, or at one holding "
            "train/ and validation/."
        )
    return plan_dataset(scan(root), root, validation_split, seed, str(root), check=check_image)


def scan(root: Path) -> list[str]:
    """Names below root, relative, folders ending in '/'; dot-names left out.

    Follows symlinked folders (a train/ linked from elsewhere; Path.rglob does not on Python
    3.11) but never into a folder that is its own ancestor, so a link loop ends.
    """
    keys = []
    for folder, folders, files in os.walk(root, followlinks=True):
        here = Path(folder)
        relative = here.relative_to(root)
        if any((root / up).resolve() == here.resolve() for up in relative.parents):
            folders[:] = []  # a link loop: this folder was entered higher up
            continue
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        keys += [(relative / name).as_posix() + "/" for name in folders]
        keys += [(relative / name).as_posix() for name in files if not name.startswith(".")]
    return keys


def is_leftover(key: str) -> bool:
    """Whether a relative name lies in (or is) a hidden or archiver-made file or folder."""
    parts = PurePosixPath(key).parts
    return any(part.startswith(".") or part in LEFTOVER_FOLDERS for part in parts)


def plan_dataset(
    keys: list[str],
    root: Path,
    validation_split: float | None,
    seed: int,
    where: str,
    check: Callable[[Path], str | None] | None = None,
) -> Dataset:
    """Classes and splits from relative file names (a bucket listing or a folder scan).

    Keys ending in '/' are folders: they make a class exist even when it holds no image.
    Samples point below root, where the files are or will be once downloaded; `check` (run
    before the split) drops the files that are not usable images.
    """
    skipped: list[tuple[Path, str]] = []
    ignored: Counter[str] = Counter()
    keys = [key for key in keys if not is_leftover(key)]
    if _holds_folders(keys, "train/"):
        validation = next((f for f in VALIDATION_FOLDERS if _holds_folders(keys, f)), None)
        top = {key.split("/", 1)[0] for key in keys if "/" in key}
        if validation or top <= {"train", *(f.rstrip("/") for f in VALIDATION_FOLDERS)}:
            dataset = _plan_folders(
                keys, root, validation_split, where, check, skipped, ignored, validation
            )
            _warn_ignored(dataset, ignored)
            return dataset
        # else train/ is a class (cars and trains) that happens to hold sub-folders
    classes = _classes(keys, "", where)
    samples = _samples(keys, root, "", classes, where, check, skipped, ignored)
    fraction = validation_split or DEFAULT_VALIDATION_SPLIT
    train, validation = stratified_split(samples, len(classes), fraction, seed)
    for label, name in enumerate(classes):
        if not any(s.label == label for s in validation):
            raise DataError(
                f"class {name!r} has too few images for validationSplit {fraction!r}: "
                "no validation image is left. Add images or raise validationSplit."
            )
    dataset = Dataset(root, classes, train, validation, "split", fraction, skipped)
    _warn_ignored(dataset, ignored)
    return dataset


def _warn_ignored(dataset: Dataset, ignored: Counter[str]) -> None:
    """One warning for every file ignored for its type, counted by extension."""
    dataset.ignored = dict(sorted(ignored.items()))
    if ignored:
        log.warning(
            "ignored %d file(s) that are no images ict reads (%s); images are recognised by "
            "content: JPEG, PNG, BMP, GIF, WebP",
            sum(ignored.values()),
            ", ".join(f"{suffix} {count}" for suffix, count in dataset.ignored.items()),
        )


def _holds_folders(keys: list[str], prefix: str) -> bool:
    """Whether prefix holds sub-folders (class folders) rather than only files."""
    return any(key.startswith(prefix) and "/" in key[len(prefix) :] for key in keys)


def _plan_folders(
    keys, root, validation_split, where, check, skipped, ignored, validation
) -> Dataset:
    if validation_split is not None:
        raise DataError(
            f"dataset {where!r} has a train/ folder and validationSplit is "
            f"{validation_split!r}: use either validation/ or a split. Remove validationSplit, "
            "or give a folder of class folders."
        )
    if validation is None:
        raise DataError(
            f"dataset {where!r} has train/ but no validation/ folder. Add "
            "validation/<class>/ images, or point at train/ itself with a validationSplit."
        )
    train_classes = _classes(keys, "train/", where)
    validation_classes = _classes(keys, validation, where)
    if train_classes != validation_classes:
        only_train = sorted(set(train_classes) - set(validation_classes))
        only_val = sorted(set(validation_classes) - set(train_classes))
        raise DataError(
            f"train and validation classes differ in {where!r}: only in train: "
            f"{only_train}, only in validation: {only_val}. Give both splits the same class "
            "folders."
        )
    train = _samples(keys, root, "train/", train_classes, where, check, skipped, ignored)
    held_out = _samples(keys, root, validation, train_classes, where, check, skipped, ignored)
    return Dataset(root, train_classes, train, held_out, "folders", skipped=skipped)


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


def _classes(keys: list[str], prefix: str, where: str) -> list[str]:
    folder = f"{where.rstrip('/')}/{prefix}"
    classes = sorted(
        {
            key[len(prefix) :].split("/", 1)[0]
            for key in keys
            if key.startswith(prefix) and "/" in key[len(prefix) :]
        }
    )
    if not classes:
        raise DataError(
            f"no class folders in {folder!r}. Put each class's images in its own "
            "sub-folder, e.g. cats/ and dogs/."
        )
    if len(classes) == 1:
        raise DataError(
            f"only one class folder ({classes[0]!r}) in {folder!r}: a classifier needs "
            "at least two. Add a folder per class."
        )
    return classes


def _samples(keys, root: Path, prefix: str, classes, where: str, check, skipped, ignored):
    """The usable images of each class folder. With `check` (the files are at hand) every
    file is judged by its content; without it (a bucket's listing) by its name."""
    samples = []
    for label, name in enumerate(classes):
        inside = f"{prefix}{name}/"
        files = sorted(key for key in keys if key.startswith(inside) and not key.endswith("/"))
        good, bad = [], 0
        for key in files:
            problem = check(root / key) if check else None
            if check is None and _suffix(key) not in IMAGE_SUFFIXES:
                problem = NotAnImage("not an image file name")
            if isinstance(problem, NotAnImage):
                ignored[_suffix(key) or "(no extension)"] += 1
            elif problem:
                log.warning("skipping %s: %s", root / key, problem)
                skipped.append((root / key, problem))
                bad += 1
            else:
                good.append(Sample(root / key, label))
        if not good:
            raise DataError(
                f"class {name!r} has no usable images in {where.rstrip('/') + '/' + inside!r} "
                f"({bad} file(s) skipped as unreadable, {len(files) - bad} of no image type; "
                "accepted by content: JPEG, PNG, BMP, GIF, WebP). Add images or remove the "
                "folder."
            )
        samples.extend(good)
    return samples


def _suffix(key: str) -> str:
    return PurePosixPath(key).suffix.lower()


class NotAnImage(str):
    """Why a file is ignored rather than skipped: it is no image of a type ict reads (and its
    name does not claim one), so it is counted, not named."""


def check_image(path: Path) -> str | None:
    """Why path cannot be used as an image, or None. By content, cheaply: headers only (no
    pixel is decoded, so memory stays small whatever the image claims to be)."""
    claims_image = path.suffix.lower() in IMAGE_SUFFIXES
    try:
        if path.stat().st_size == 0:
            return "empty file (0 bytes)" if claims_image else NotAnImage("empty file")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                kind = image.format
                if kind not in PIL_FORMATS:
                    return NotAnImage(f"{kind} images are not supported")
                image.verify()
        if kind in ("JPEG", "MPO") and not _jpeg_is_complete(path):
            return "truncated JPEG (no end-of-image marker)"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        return _too_large(exc)
    except UnidentifiedImageError:
        return "not an image" if claims_image else NotAnImage("not an image")
    except (OSError, SyntaxError, ValueError) as exc:
        return f"corrupt image ({exc})"
    return None


def _too_large(exc: Exception) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1)) / 1e6:,.0f} megapixels" if found else "too many pixels"
    return (
        f"image too large to decode safely ({size}; the limit is {MAX_PIXELS / 1e6:.0f} "
        "megapixels). Downscale it."
    )


def _jpeg_is_complete(path: Path) -> bool:
    # verify() reads only the headers of a JPEG; a cut-off download still passes it but
    # breaks decoding mid-epoch. Writers may pad after the EOI marker, so look at the tail.
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 1024))
        return b"\xff\xd9" in handle.read()
