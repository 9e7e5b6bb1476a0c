"""Small builders of image folders for tests."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
from PIL import Image

# ../shared beside the repository (CI, the main checkout); ICT_SHARED_DIR for other checkouts.
SHARED = Path(os.environ.get("ICT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
CATS_DOGS = SHARED / "datasets" / "cats-dogs"
MOBILENET_V2 = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.h5"
MOBILENET = SHARED / "weights" / "mobilenet_2_5_224_tf_no_top.h5"
# What every finished run leaves in its output (issue 2's list, plus the report).
ARTIFACTS = {
    "model.keras",
    "model.weights.h5",
    "metrics.json",
    "history.csv",
    "training-curves.png",
    "confusion-matrix.png",
    "index.html",
}


def write_image(path: Path, seed: int = 0, size: int = 24, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format=fmt)
    return path


def image_tree(root: Path, layout: dict[str, int], suffix: str = ".jpg") -> Path:
    """layout maps 'train/cats' (or 'cats') to a number of images."""
    for index, (folder, count) in enumerate(layout.items()):
        for n in range(count):
            write_image(root / folder / f"img{n}{suffix}", seed=index * 1000 + n)
    return root


def cats_dogs_subset(root: Path, train: int, validation: int) -> Path:
    """The first images of each class of the shared cats-dogs set (never committed)."""
    for split, count in (("train", train), ("validation", validation)):
        for cls in ("cats", "dogs"):
            source = CATS_DOGS / split / cls
            target = root / split / cls
            target.mkdir(parents=True)
            for path in sorted(source.iterdir())[:count]:
                shutil.copy(path, target / path.name)
    return root


def train(capsys, *args: str) -> tuple[int, list[dict], str]:
    """`ict train ARGS` in this process: exit code, JSON progress lines, stderr."""
    from ict_trainer.cli import main

    code = main(["train", *args])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines() if line.strip()], err


def events(lines: list[dict], kind: str) -> list[dict]:
    return [line for line in lines if line["event"] == kind]
