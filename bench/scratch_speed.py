"""A scratch epoch against its compute floor and the blog's pipeline, measured in one run; where the
epoch's time goes; how the data phase grows; the trainer's peak memory by image cache.

Not a test: it prints figures (JSON). On 2 shared cores each mode takes a few minutes.

    python bench/scratch_speed.py                 # floor (float32, bf16), blog, ict, profile
    python bench/scratch_speed.py --growth        # data phase and features at 280 and 2,800
    python bench/scratch_speed.py --memory 2800 20000   # peak RSS, memory vs disk image cache
    python bench/scratch_speed.py --precision     # accuracy float32 vs bf16, small subset

The floor is the same model and batch fitted on in-memory float32 tensors (no decode, no
augmentation), with the same validation pass, so ict's epoch / floor is the cost of its input
pipeline, augmentation and callbacks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent))

SHARED = Path(os.environ.get("ICT_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
DATA = SHARED / "datasets" / "cats-dogs"
WEIGHTS = SHARED / "weights" / "mobilenet_v2_0.35_224_no_top.h5"
SIZE, BATCH = 150, 32
# The blog's convnet, Adam at a constant rate, batch 32, 150 px: the model the blog's pipeline
# trains, so that the epochs compare (the default `wide` convnet costs about twice as much).
SCRATCH = {
    "model.architecture": "blog",
    "training.schedule": "constant",
    "training.weightDecay": 0.0,
    "model.pooling": "flatten",
    "model.denseUnits": 64,
    "model.imageSize": SIZE,
    "training.optimizer": "adam",
    "training.batchSize": BATCH,
}


def load() -> str:
    return os.getloadavg().__repr__()


class EpochClock:
    """Seconds of each epoch, end to end (what a user waits), from Keras' callback hooks."""

    def __init__(self):
        import keras

        marks: list[float] = []

        class Clock(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                marks.append(time.monotonic())

            def on_epoch_end(self, epoch, logs=None):
                marks.append(time.monotonic())

        self.marks, self.callback = marks, Clock()

    def steady(self) -> float:
        """Mean of the epochs after the first (which traces functions and fills caches)."""
        spans = [b - a for a, b in zip(self.marks, self.marks[1:], strict=False)]
        later = spans[1:] or spans
        return round(sum(later) / len(later), 2)


def in_memory(samples, size: int):
    import numpy as np

    from ict_trainer.pipeline import encode_labels, image_dataset

    images = np.concatenate(
        list(image_dataset(samples, 2, size, 64, with_labels=False).as_numpy_iterator())
    )
    return images, encode_labels([s.label for s in samples], 2)


def scratch_model(policy: str):
    import keras

    from ict_api.spec import Optimizer
    from ict_trainer import models

    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(1)
    model = models.build_scratch_model((SIZE, SIZE, 3), 2, filters=[32, 32, 64], dense_units=64)
    models.compile_model(model, 2, optimizer=Optimizer.ADAM, learning_rate=1e-3)
    return model


def floor(dataset, policy: str, epochs: int) -> dict:
    """The same model and batch on in-memory tensors, with and without the validation pass."""
    x, y = in_memory(dataset.train, SIZE)
    xv, yv = in_memory(dataset.validation, SIZE)
    model = scratch_model(policy)
    clock = EpochClock()
    model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        validation_data=(xv, yv),
        verbose=0,
        callbacks=[clock.callback],
    )
    started = time.monotonic()
    model.evaluate(xv, yv, batch_size=BATCH, verbose=0)
    validation = round(time.monotonic() - started, 2)
    return {"epochWithValidation": clock.steady(), "validationPass": validation}


def ict_epoch(epochs: int, precision: str, output: Path, cache: str = "memory") -> dict:
    """`ict train --strategy scratch` as users run it (checkpoints, callbacks, validation)."""
    from ict_api import load_document
    from ict_trainer.progress import Reporter
    from ict_trainer.train import run_training

    overrides = {
        **SCRATCH,
        "strategy": "scratch",
        "dataset.uri": str(DATA),
        "output.uri": str(output),
        "training.epochs": epochs,
        "training.mixedPrecision": precision,
        "cache.images": cache,
    }
    _, spec = load_document({}, overrides)

    class Timed:
        marks: list[float] = []

        def write(self, line: str) -> None:
            if '"event": "epoch"' in line or '"event": "start"' in line:
                self.marks.append(time.monotonic())

        def flush(self) -> None:
            pass

        def isatty(self) -> bool:
            return False

    sink = Timed()
    sink.marks = []
    summary = run_training(spec, "bench", Reporter(sink, json_lines=True))
    spans = [b - a for a, b in zip(sink.marks[1:], sink.marks[2:], strict=False)]
    first = sink.marks[1] - sink.marks[0]
    return {
        "firstEpochWithDataPhase": round(first, 2),
        "epoch": round(sum(spans) / len(spans), 2) if spans else None,
        "valAccuracy": round(summary["final"]["val_accuracy"], 4),
        "totalSeconds": summary["seconds"],
    }


def profile(dataset, policy: str) -> dict:
    """Each stage of an ict scratch epoch alone, on the same cores."""
    import keras
    import numpy as np

    from ict_api.spec import AugmentationSpec, ImageCache
    from ict_trainer.augment import build_augmenter
    from ict_trainer.pipeline import image_dataset, steps_per_epoch
    from ict_trainer.strategies import EpochSeeds

    steps = steps_per_epoch(len(dataset.train), BATCH)
    out = {}
    for name, augmentation in (("augmented", AugmentationSpec()), ("plain", None)):
        stream = iter(
            image_dataset(
                dataset.train,
                2,
                SIZE,
                BATCH,
                shuffle_seed=1,
                cache=ImageCache.MEMORY,
                augmenter=build_augmenter(augmentation, 1) if augmentation else None,
            )
        )
        for label in ("decodePass", "cachedPass"):
            started = time.monotonic()
            for _ in range(steps):
                next(stream)
            out[f"pipeline.{name}.{label}"] = round(time.monotonic() - started, 2)
    validation = image_dataset(dataset.validation, 2, SIZE, BATCH)
    model = scratch_model(policy)
    model.evaluate(validation, verbose=0)  # trace + fill the cache
    started = time.monotonic()
    model.evaluate(validation, verbose=0)
    out["validationPass.cachedPipeline"] = round(time.monotonic() - started, 2)
    model.fit(np.zeros((BATCH, SIZE, SIZE, 3)), np.zeros((BATCH, 1)), verbose=0)
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        for _ in range(5):
            model.save_weights(Path(folder) / "w.weights.h5")
        out["checkpointSaveWeights"] = round((time.monotonic() - started) / 5, 3)
    seeds = EpochSeeds(1)
    seeds.set_model(model)
    started = time.monotonic()
    for epoch in range(20):
        seeds.on_epoch_begin(epoch)
    out["epochSeeds"] = round((time.monotonic() - started) / 20, 4)
    keras.mixed_precision.set_global_policy("float32")
    return out


def main_speed(args) -> dict:
    from blog_table import blog_generator_baseline

    from ict_trainer.data import load_dataset

    dataset = load_dataset(DATA, None, seed=1)
    results = {"load": {"start": load()}}
    for policy in ("float32", "mixed_bfloat16"):
        results[f"floor.{policy}"] = floor(dataset, policy, args.epochs)
        print(policy, results[f"floor.{policy}"], flush=True)
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ICT_CACHE_DIR"] = str(Path(folder) / "cache")
        for precision in args.ict_precision:
            key = f"ict.{precision}"
            results[key] = ict_epoch(args.epochs, precision, Path(folder) / precision)
            print(key, results[key], flush=True)
    if not args.skip_blog:
        results["blog"] = blog_generator_baseline(DATA, SIZE, 16, args.blog_epochs)
        print("blog", results["blog"], flush=True)
    if not args.skip_profile:
        results["profile.mixed_bfloat16"] = profile(dataset, "mixed_bfloat16")
    results["load"]["end"] = load()
    ours = results[f"ict.{args.ict_precision[0]}"]["epoch"]
    floor_bf16 = results["floor.mixed_bfloat16"]["epochWithValidation"]
    results["ratios"] = {"ict / floor bf16": round(ours / floor_bf16, 2)}
    if "blog" in results:
        results["ratios"]["ict / blog"] = round(ours / results["blog"]["secondsPerEpoch"], 2)
    return results


def subset(root: Path, per_split: dict[str, int]) -> Path:
    """The first images of each class of cats-dogs, linked, per split."""
    for split, count in per_split.items():
        for label in ("cats", "dogs"):
            target = root / split / label
            target.mkdir(parents=True, exist_ok=True)
            for source in sorted((DATA / split / label).iterdir())[: count // 2]:
                (target / source.name).symlink_to(source)
    return root


def main_growth(args) -> dict:
    """Data phase (file checks + first decode pass into the cache) and bottleneck features
    (MobileNetV2 0.35, 224 px), at 280 and 2,800 images."""
    import numpy as np

    from ict_api.spec import Backbone, Pooling
    from ict_trainer import backbones, models
    from ict_trainer.data import load_dataset
    from ict_trainer.pipeline import image_dataset

    base = backbones.build_base(Backbone.MOBILENET_V2, 224, str(WEIGHTS), 0.35)
    extractor = models.build_feature_extractor(
        base, backbones.preprocessing_layer(Backbone.MOBILENET_V2), Pooling.AVG
    )
    extractor.predict(np.zeros((8, 224, 224, 3), "float32"), verbose=0)  # trace once
    results = {"load": {"start": load()}}
    with tempfile.TemporaryDirectory() as folder:
        for total in (280, 2800):
            splits = {"train": total * 5 // 7, "validation": total * 2 // 7}
            root = subset(Path(folder) / str(total), splits)
            started = time.monotonic()
            dataset = load_dataset(root, None, seed=1)
            checked = time.monotonic()
            for split in (dataset.train, dataset.validation):
                for _ in image_dataset(split, 2, SIZE, BATCH):
                    pass
            decoded = time.monotonic()
            for split in (dataset.train, dataset.validation):
                extractor.predict(image_dataset(split, 2, 224, BATCH, with_labels=False), verbose=0)
            results[str(total)] = {
                "fileChecks": round(checked - started, 2),
                "decodePass": round(decoded - checked, 2),
                "dataPhase": round(decoded - started, 2),
                "features": round(time.monotonic() - decoded, 2),
            }
            print(total, results[str(total)], flush=True)
    small, large = results["280"], results["2800"]
    results["ratios 2800/280"] = {k: round(large[k] / small[k], 2) for k in small}
    results["load"]["end"] = load()
    return results


def synthetic(root: Path, count: int, side: int = 300) -> Path:
    """count JPEGs (80 % train, 20 % validation, two classes) of random shapes, side px."""
    import numpy as np
    from PIL import Image, ImageDraw

    done = root / f".done-{count}"
    if done.exists():
        return root
    rng = np.random.default_rng(0)
    for index in range(count):
        split = "validation" if index % 5 == 0 else "train"
        label = ("circles", "squares")[index % 2]
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(rng.integers(0, 255, (side // 8, side // 8, 3), "uint8"))
        image = image.resize((side, side))
        draw = ImageDraw.Draw(image)
        x, y, r = (int(v) for v in rng.integers(40, side - 40, 3) // 2 + 20)
        shape = draw.ellipse if label == "circles" else draw.rectangle
        shape((x, y, x + r, y + r), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        image.save(folder / f"{index:06d}.jpg", quality=85)
    done.touch()
    return root


def peak_rss_child(data: str, cache: str, mode: str) -> dict:
    """In a fresh process: the data phase and one pass over the training stream and the
    validation set (mode 'pipeline'), or a one-epoch scratch run (mode 'train'); VmHWM."""
    from ict_api.spec import AugmentationSpec, ImageCache
    from ict_trainer.augment import build_augmenter
    from ict_trainer.data import load_dataset
    from ict_trainer.pipeline import image_dataset, steps_per_epoch

    started = time.monotonic()
    if mode == "train":
        from ict_api import load_document
        from ict_trainer.progress import Reporter
        from ict_trainer.train import run_training

        output = Path(tempfile.mkdtemp())
        overrides = {
            **SCRATCH,
            "strategy": "scratch",
            "dataset.uri": data,
            "output.uri": str(output),
            "training.epochs": 1,
            "cache.images": cache,
        }
        _, spec = load_document({}, overrides)
        with open(os.devnull, "w") as sink:
            run_training(spec, "bench", Reporter(sink, json_lines=True))
    else:
        dataset = load_dataset(Path(data), None, seed=1)
        stream = image_dataset(
            dataset.train,
            2,
            SIZE,
            BATCH,
            shuffle_seed=1,
            cache=ImageCache(cache),
            augmenter=build_augmenter(AugmentationSpec(), 1),
        )
        batches = iter(stream)
        for _ in range(steps_per_epoch(len(dataset.train), BATCH)):
            next(batches)
        for _ in image_dataset(dataset.validation, 2, SIZE, BATCH, cache=ImageCache(cache)):
            pass
    status = Path("/proc/self/status").read_text()
    peak_kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    return {
        "peakRssMiB": round(peak_kb / 1024),
        "seconds": round(time.monotonic() - started, 1),
        "maxrssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main_memory(args) -> dict:
    results = {"load": {"start": load()}, "mode": args.rss_mode}
    root = Path(args.synthetic_root)
    for count in args.memory:
        data = synthetic(root / str(count), count)
        for cache in ("memory", "disk"):
            with tempfile.TemporaryDirectory() as folder:
                env = {**os.environ, "ICT_CACHE_DIR": folder}
                out = subprocess.run(
                    [sys.executable, __file__, "--rss-child", str(data), cache, args.rss_mode],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
            results[f"{count} {cache}"] = json.loads(out.stdout.strip().splitlines()[-1])
            print(count, cache, results[f"{count} {cache}"], flush=True)
    results["load"]["end"] = load()
    return results


def main_precision(args) -> dict:
    """Validation accuracy, float32 vs mixed_bfloat16, same seeds, on a subset of cats-dogs."""
    from ict_api import load_document
    from ict_trainer.progress import Reporter
    from ict_trainer.train import run_training

    results = {"load": {"start": load()}}
    with tempfile.TemporaryDirectory() as folder:
        os.environ["ICT_CACHE_DIR"] = str(Path(folder) / "cache")
        data = subset(Path(folder) / "data", {"train": args.subset, "validation": 400})
        for seed in args.seeds:
            for precision in ("off", "on"):
                overrides = {
                    **SCRATCH,
                    "strategy": "scratch",
                    "dataset.uri": str(data),
                    "output.uri": str(Path(folder) / f"{precision}-{seed}"),
                    "training.epochs": args.epochs,
                    "training.seed": seed,
                    "training.mixedPrecision": precision,
                }
                _, spec = load_document({}, overrides)
                with open(os.devnull, "w") as sink:
                    summary = run_training(spec, "bench", Reporter(sink, json_lines=True))
                key = f"seed {seed} {precision}"
                results[key] = round(summary["final"]["val_accuracy"], 4)
                print(key, results[key], flush=True)
    results["load"]["end"] = load()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--blog-epochs", type=int, default=1)
    parser.add_argument("--ict-precision", nargs="+", default=["auto"])
    parser.add_argument("--skip-blog", action="store_true")
    parser.add_argument("--skip-profile", action="store_true")
    parser.add_argument("--growth", action="store_true")
    parser.add_argument("--memory", type=int, nargs="+")
    parser.add_argument("--rss-mode", choices=["pipeline", "train"], default="pipeline")
    parser.add_argument("--synthetic-root", default=str(Path(tempfile.gettempdir()) / "ict-synth"))
    parser.add_argument("--rss-child", nargs=3, metavar=("DATA", "CACHE", "MODE"))
    parser.add_argument("--precision", action="store_true")
    parser.add_argument("--subset", type=int, default=600)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(peak_rss_child(*args.rss_child)))
        return
    if args.growth:
        results = main_growth(args)
    elif args.memory:
        results = main_memory(args)
    elif args.precision:
        results = main_precision(args)
    else:
        results = main_speed(args)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
