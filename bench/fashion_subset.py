"""A five-class small set for `make bench`: Fashion-MNIST from Debian's `dataset-fashion-mnist`.

The package (MIT-licensed data, Zalando Research) installs the IDX files under
/usr/share/datasets/fashion-mnist; without root, `apt-get download dataset-fashion-mnist` and
this script's --deb extract them. Writes the first --train images of classes 0-4 (t-shirt,
trouser, pullover, dress, coat) from the training file and the first --validation from the test
file, as PNGs in train/<class>/ and validation/<class>/ under the output folder (keep it out of
the repository: .work/ is ignored). 28x28 grey images, squashed to the backbone's size by ict.

    python bench/fashion_subset.py .work/fashion5
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

INSTALLED = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("tshirt", "trouser", "pullover", "dress", "coat")


def idx(path: Path) -> np.ndarray:
    """An IDX file (the MNIST format): big-endian dimensions after a 4-byte magic number."""
    data = gzip.decompress(path.read_bytes())
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def write_split(folder: Path, images: np.ndarray, labels: np.ndarray, per_class: int) -> None:
    for label, name in enumerate(CLASSES):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for index in np.flatnonzero(labels == label)[:per_class]:
            Image.fromarray(images[index]).save(folder / name / f"{name}.{index}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--deb", type=Path, help="dataset-fashion-mnist_*.deb to extract")
    parser.add_argument("--train", type=int, default=200, help="training images per class")
    parser.add_argument("--validation", type=int, default=100, help="validation images per class")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as unpacked:
        source = INSTALLED
        if args.deb:
            subprocess.run(["dpkg-deb", "-x", str(args.deb), unpacked], check=True)
            source = Path(unpacked) / INSTALLED.relative_to("/")
        if not source.is_dir():
            raise SystemExit(
                f"no Fashion-MNIST at {str(source)!r}: apt-get install dataset-fashion-mnist, "
                "or apt-get download it and pass --deb FILE"
            )
        for split, prefix, count in (
            ("train", "train", args.train),
            ("validation", "t10k", args.validation),
        ):
            images = idx(source / f"{prefix}-images-idx3-ubyte.gz")
            labels = idx(source / f"{prefix}-labels-idx1-ubyte.gz")
            write_split(args.output / split, images, labels, count)
    print(f"wrote {len(CLASSES)} classes to {args.output}")


if __name__ == "__main__":
    main()
